//go:build linux

package launcher_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/profiles"
)

// TestDoctorRun: launcher.Doctor against the in-process server (real
// remote.sh, real ipykernel): each check passes in order on one line, the
// kernel it started is stopped, and the server is left with no
// connection, no command and no file.
func TestDoctorRun(t *testing.T) {
	e := newRunEnv(t)
	t.Setenv("JUPYTER_DATA_DIR", t.TempDir())
	t.Setenv("JUPYTER_PATH", "")
	var out bytes.Buffer
	r := &launcher.DoctorReport{W: &out, Verbose: true}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	launcher.Doctor(ctx, launcher.Options{Profile: e.profile(frontendSpec{}), Resolver: profiles.SSHResolver{},
		Stderr: &out, Warn: func(f string, a ...any) { t.Errorf("warning: "+f, a...) }}, r)
	r.Summary()
	t.Logf("\n%s", out.String())
	var names []string
	for _, l := range strings.Split(out.String(), "\n") {
		if status, rest, ok := strings.Cut(l, "  "); ok && len(status) == 4 && strings.TrimSpace(status) != "" {
			if status != "PASS" {
				t.Errorf("not a pass: %q", l)
			}
			names = append(names, strings.TrimSpace(rest[:14]))
		}
	}
	want := []string{"host kqunit", "python", "runtime dir", "kernel", "frontend", "kernelspecs"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("checks %q, want %q", names, want)
	}
	if r.Failed() || !strings.HasSuffix(out.String(), "6 passed, 0 failed, 0 skipped\n") {
		t.Errorf("summary:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "      kernel pid ") {
		t.Errorf("-v shows no kernel detail:\n%s", out.String())
	}
	e.assertClean(nil, nil)
	if _, err := os.Stat(e.remoteRT); err != nil {
		t.Errorf("the kernel never ran in the runtime dir: %v", err)
	}
}
