//go:build unix

package launcher

import (
	"errors"
	"syscall"
)

// pidAlive says whether a process with this pid exists: signal 0 checks
// without sending anything, and EPERM means it exists but is not ours.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
