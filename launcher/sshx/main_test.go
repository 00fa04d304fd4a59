package sshx

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// dialer, the link watch's keepalives and the in-process SSH servers must
// all clean up.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
