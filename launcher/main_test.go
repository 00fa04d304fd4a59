package launcher

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// session's own goroutines and the remote protocol must all clean up.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
