package forward

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// accept loops, the relays, the channel opens and the in-process SSH
// server must all clean up.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
