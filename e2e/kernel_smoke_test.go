package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// managerPy drives kq kernel through jupyter_client's own KernelManager,
// as JupyterLab and nbconvert do: execute, interrupt, restart, shutdown.
const managerPy = `
import json, sys, time
from jupyter_client.manager import KernelManager
km = KernelManager(kernel_name="kqsmoke")
km.start_kernel()
kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=60)
def run(code, timeout=60):
    r = kc.execute_interactive(code, timeout=timeout, output_hook=lambda m: out.append(m))
    return r["content"]
out = []
res = {"first": run("x = 6 * 7; print(x)")["status"]}
msg_id = kc.execute("import time; time.sleep(60)")
time.sleep(2)
t0 = time.time(); km.interrupt_kernel()
while True:
    m = kc.get_shell_msg(timeout=30)
    if m["parent_header"].get("msg_id") == msg_id:
        res["interrupt"] = m["content"].get("ename", m["content"]["status"]); res["interrupt_s"] = time.time() - t0; break
km.restart_kernel(); kc.wait_for_ready(timeout=60)
res["after_restart"] = run("print('x' in dir())")["status"]
kc.stop_channels()
t0 = time.time(); km.shutdown_kernel(); res["shutdown_s"] = time.time() - t0
print("RESULT " + json.dumps(res), flush=True)
`

// TestKernelSmoke: kq kernel, launched from a kernelspec by jupyter_client's
// KernelManager, runs, interrupts, restarts and shuts down its remote kernel.
func TestKernelSmoke(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	specs := filepath.Join(e.dir, "jupyter", "kernels", "kqsmoke")
	must(t, os.MkdirAll(specs, 0o755))
	spec, _ := json.Marshal(map[string]any{"argv": []string{kqBin, "--config", e.configFile, "kernel", "p", "-f", "{connection_file}"},
		"display_name": "p (remote)", "language": "python", "interrupt_mode": "signal"})
	must(t, os.WriteFile(filepath.Join(specs, "kernel.json"), spec, 0o644))
	script := filepath.Join(e.dir, "manager.py")
	must(t, os.WriteFile(script, []byte(managerPy), 0o644))
	cmd := exec.CommandContext(contextFor(t, 3*time.Minute), sysPython, script)
	cmd.Env = append(cleanEnv(), "JUPYTER_PATH="+filepath.Join(e.dir, "jupyter"), "JUPYTER_RUNTIME_DIR="+e.localRT)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "RESULT ") {
		t.Fatalf("manager: %v\n%s", err, out)
	}
	t.Logf("%s", out[strings.Index(string(out), "RESULT "):])
	waitNoFiles(t, e.remoteRT, 10*time.Second)
	e.assertClean(nil, nil)
}
