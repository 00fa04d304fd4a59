package launcher

import "time"

// SetReadyTimeout lets the external tests shorten the ready check; the
// returned func restores it.
func SetReadyTimeout(d time.Duration) (restore func()) {
	old := readyTimeout
	readyTimeout = d
	return func() { readyTimeout = old }
}
