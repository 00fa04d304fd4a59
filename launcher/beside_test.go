package launcher_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher"
)

// silentKernelPy writes its connection file with the ports of five
// listeners that accept and never answer, then waits: a kernel that
// starts but never answers kernel_info.
const silentKernelPy = `import json, os, socket, sys, time, uuid
f = sys.argv[sys.argv.index("-f") + 1]
info = {"ip": "127.0.0.1", "transport": "tcp", "signature_scheme": "hmac-sha256", "key": str(uuid.uuid4())}
socks = []
for name in ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"]:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8); socks.append(s)
    info[name] = s.getsockname()[1]
with open(f + ".tmp", "w") as out:
    json.dump(info, out)
os.rename(f + ".tmp", f)
time.sleep(120)
`

// TestRunReadyCheckBeside: the ready check runs beside the frontend. A
// kernel that never answers ends a frontend still running (sleep) with
// the check's error once the check gives up, and a frontend that ended
// before that (true) does not make the session a success: both are
// ErrKernel, the frontend ran, and nothing is left on either side.
func TestRunReadyCheckBeside(t *testing.T) {
	defer launcher.SetReadyTimeout(2 * time.Second)()
	for _, c := range []struct {
		name     string
		frontend []string
	}{
		{"frontend still running", []string{"sleep", "60"}},
		{"frontend ended first", []string{"true"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newRunEnv(t)
			fake := filepath.Join(e.dir, "silent.py")
			runMust(t, os.WriteFile(fake, []byte(silentKernelPy), 0o644))
			p := e.profile(frontendSpec{})
			p.Kernel, p.Frontend = runPython+" "+fake, c.frontend
			s := e.start(p)
			res, err := s.wait(40 * time.Second)
			if !errors.Is(err, launcher.ErrKernel) || !strings.Contains(err.Error(), "did not answer kernel_info_request") {
				t.Fatalf("Run: %v, want ErrKernel: did not answer\nstderr:\n%s", err, s.stderr)
			}
			if !res.FrontendRan {
				t.Errorf("Run = %+v: the frontend did not run beside the check", res)
			}
			if s.took > 20*time.Second {
				t.Errorf("Run took %s: the frontend was not ended with the check", s.took)
			}
			if strings.Contains(s.stderr.String(), "kq: ready in") {
				t.Errorf("ready said for a kernel that never answered:\n%s", s.stderr)
			}
			e.assertClean(nil, nil)
		})
	}
}
