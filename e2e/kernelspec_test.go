package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// jupyterSpec is one entry of `jupyter kernelspec list --json`.
type jupyterSpec struct {
	ResourceDir string `json:"resource_dir"`
	Spec        struct {
		Argv        []string `json:"argv"`
		DisplayName string   `json:"display_name"`
		Language    string   `json:"language"`
	} `json:"spec"`
}

// jupyterKernelspecs is what Jupyter itself lists with JUPYTER_DATA_DIR
// set: `jupyter kernelspec list --json` where that subcommand exists, else
// jupyter_client's own app under Debian's Python (Debian ships no
// jupyter-kernelspec script).
func jupyterKernelspecs(t *testing.T, dataDir string) map[string]jupyterSpec {
	t.Helper()
	cmd := exec.Command(sysPython, "-m", "jupyter_client.kernelspecapp", "list", "--json")
	if _, err := exec.LookPath("jupyter-kernelspec"); err == nil {
		cmd = exec.Command("jupyter", "kernelspec", "list", "--json")
	}
	cmd.Env = append(cleanEnv(), "JUPYTER_DATA_DIR="+dataDir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	var list struct {
		Kernelspecs map[string]jupyterSpec `json:"kernelspecs"`
	}
	must(t, json.Unmarshal(out, &list))
	return list.Kernelspecs
}

// TestKernelspecInstall: install test-connects to the real sshd, takes the
// language and logos from the server's python3 kernelspec, writes a spec
// that records kq by absolute path with the config and nothing secret, and
// Jupyter itself lists it as written.
func TestKernelspecInstall(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"Lab.GPU": e.baseProfile()})
	dataDir := filepath.Join(e.dir, "jupyter-data")
	r, code := e.runToEnd([]string{"kernelspec", "install", "Lab.GPU"}, "JUPYTER_DATA_DIR="+dataDir)
	if code != 0 {
		t.Fatalf("install: exit %d\n%s", code, r.stderr)
	}
	if strings.Contains(r.stderr.String(), "warning") {
		t.Errorf("install warned:\n%s", r.stderr)
	}
	dir := filepath.Join(dataDir, "kernels", "lab.gpu")
	var spec map[string]any
	data, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	must(t, err)
	must(t, json.Unmarshal(data, &spec))
	wantArgv := []any{kqBin, "--config", e.configFile, "kernel", "Lab.GPU", "-f", "{connection_file}"}
	if !reflect.DeepEqual(spec["argv"], wantArgv) || spec["language"] != "python" || spec["interrupt_mode"] != "signal" {
		t.Errorf("kernel.json:\n%s", data)
	}
	checkNothingSecret(t, e, dir, data)
	for _, logo := range []string{"logo-32x32.png", "logo-64x64.png"} {
		got, err := os.ReadFile(filepath.Join(dir, logo))
		must(t, err)
		want, err := os.ReadFile(filepath.Join("/usr/share/jupyter/kernels/python3", logo))
		if err == nil && !bytes.Equal(got, want) {
			t.Errorf("%s differs from the server's", logo)
		}
	}
	js, ok := jupyterKernelspecs(t, dataDir)["lab.gpu"]
	if !ok || js.ResourceDir != dir || js.Spec.DisplayName != "Lab.GPU (remote)" || !reflect.DeepEqual(anySlice(js.Spec.Argv), wantArgv) {
		t.Errorf("Jupyter lists lab.gpu as %+v (present %v)", js, ok)
	}
}

// checkNothingSecret: the spec dir holds kernel.json and logos only, and
// kernel.json names no key, no env and nothing of the ssh config's.
func checkNothingSecret(t *testing.T, e *env, dir string, data []byte) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	must(t, err)
	for _, en := range entries {
		if n := en.Name(); n != "kernel.json" && !strings.HasPrefix(n, "logo-") {
			t.Errorf("unexpected file %s in the spec dir", n)
		}
	}
	key, err := os.ReadFile(e.srv.ClientKey)
	must(t, err)
	for _, secret := range []string{e.srv.ClientKey, string(bytes.TrimSpace(key)), `"env"`, "IdentityFile"} {
		if strings.Contains(string(data), secret) {
			t.Errorf("kernel.json contains %q", secret)
		}
	}
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// TestKernelspecInstallRecordsHostKey: under accept-new, the test
// connection of install records the unknown host key, so that the first
// launch from a GUI (which can never prompt) finds it known; -F is
// recorded in argv.
func TestKernelspecInstallRecordsHostKey(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	known := filepath.Join(e.dir, "known_hosts-empty")
	must(t, os.WriteFile(known, nil, 0o600))
	cfg, err := os.ReadFile(e.writeSSHConfig(known, e.srv.ClientKey))
	must(t, err)
	sshConfig := filepath.Join(e.dir, "ssh_config-accept-new")
	must(t, os.WriteFile(sshConfig, bytes.Replace(cfg, []byte("StrictHostKeyChecking yes"), []byte("StrictHostKeyChecking accept-new"), 1), 0o600))
	p := e.baseProfile()
	delete(p, "ssh_config")
	e.writeConfig(map[string]profile{"p": p})
	dataDir := filepath.Join(e.dir, "jupyter-data")
	r, code := e.runToEnd([]string{"-F", sshConfig, "kernelspec", "install", "p"}, "JUPYTER_DATA_DIR="+dataDir)
	if code != 0 {
		t.Fatalf("install: exit %d\n%s", code, r.stderr)
	}
	if k, _ := os.ReadFile(known); len(bytes.TrimSpace(k)) == 0 {
		t.Errorf("known_hosts after install: %q\n%s", k, r.stderr)
	}
	js := jupyterKernelspecs(t, dataDir)["p"]
	want := []string{kqBin, "--config", e.configFile, "-F", sshConfig, "kernel", "p", "-f", "{connection_file}"}
	if !reflect.DeepEqual(js.Spec.Argv, want) {
		t.Errorf("argv %q, want %q", js.Spec.Argv, want)
	}
}
