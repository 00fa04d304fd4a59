package launcher

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteLocalFile: the file is created 0600 in a 0700 dir, never over an
// existing file (a second one gets a numbered name), and a dir others can
// enter is warned about.
func TestWriteLocalFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "runtime")
	path, warning, err := writeLocalFile(dir, "k.json", []byte("{}"))
	if err != nil || warning != "" {
		t.Fatal(err, warning)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %o (%v)", p, st.Mode().Perm(), want, err)
		}
	}
	second, _, err := writeLocalFile(dir, "k.json", []byte(`{"second":1}`))
	if err != nil || second != filepath.Join(dir, "k-2.json") {
		t.Errorf("second file: %q %v, want k-2.json", second, err)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != "{}" {
		t.Errorf("an existing file was overwritten: %q %v", data, err)
	}
	open := t.TempDir()
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, warning, err := writeLocalFile(open, "k.json", []byte("{}")); err != nil || !strings.Contains(warning, "0755") {
		t.Errorf("no warning for a 0755 runtime dir: %q %v", warning, err)
	}
}

func TestForwardHost(t *testing.T) {
	tests := []struct{ kernelIP, fileIP, want string }{
		{"", "", "127.0.0.1"},
		{"", "10.0.0.7", "127.0.0.1"}, // default: the kernel is on the host's loopback
		{"auto", "10.0.0.7", "10.0.0.7"},
		{"auto", "0.0.0.0", "127.0.0.1"},
		{"auto", "", "127.0.0.1"},
		{"10.2.0.7", "127.0.0.1", "10.2.0.7"},
	}
	for _, tt := range tests {
		if got := forwardHost(tt.kernelIP, tt.fileIP); got != tt.want {
			t.Errorf("forwardHost(%q, %q) = %q, want %q", tt.kernelIP, tt.fileIP, got, tt.want)
		}
	}
}
