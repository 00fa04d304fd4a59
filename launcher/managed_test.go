//go:build unix

package launcher

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TestRemoveStaleSpecs: a transient kernelspec dir of a kq session that is
// gone is removed; a live session's dir and a dir without a pid file stay.
func TestRemoveStaleSpecs(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil { // reaped: its pid names no process now
		t.Fatal(err)
	}
	mk := func(name, pid string) string {
		d := filepath.Join(tmp, transientPrefix+name)
		if err := os.MkdirAll(filepath.Join(d, "kernels", "k"), 0o700); err != nil {
			t.Fatal(err)
		}
		if pid != "" {
			if err := os.WriteFile(filepath.Join(d, sessionPIDFile), []byte(pid), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	stale := mk("stale", strconv.Itoa(gone.Process.Pid))
	live := mk("live", strconv.Itoa(os.Getpid()))
	unknown := mk("unknown", "")
	removeStaleSpecs()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a gone session's dir was kept: %v", err)
	}
	for _, d := range []string{live, unknown} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
}
