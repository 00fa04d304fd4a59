package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// doctorLine is one check line of kq doctor's output.
type doctorLine struct{ status, text, hint string }

// parseDoctor reads kq doctor's check lines by check name ("host kqtest",
// "python", ...), with the hint line that follows a failure.
func parseDoctor(t *testing.T, out string) map[string]doctorLine {
	t.Helper()
	checks := map[string]doctorLine{}
	last := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "      hint: ") && last != "" {
			c := checks[last]
			c.hint = strings.TrimPrefix(l, "      hint: ")
			checks[last] = c
			continue
		}
		status, rest, ok := strings.Cut(l, "  ")
		if !ok || (status != "PASS" && status != "FAIL" && status != "SKIP") {
			continue
		}
		name := strings.TrimSpace(rest[:min(len(rest), 14)])
		last = name
		checks[name] = doctorLine{status: status, text: strings.TrimSpace(rest[min(len(rest), 14):])}
	}
	return checks
}

// doctorEnv is one sshd with the profiles kq doctor is run on.
type doctorEnv struct {
	*env
	dataDir string // JUPYTER_DATA_DIR: where kq's kernelspecs are
}

func newDoctorEnv(t *testing.T) *doctorEnv {
	t.Helper()
	e := newEnv(t, sshdtest.Options{})
	d := &doctorEnv{env: e, dataDir: filepath.Join(e.dir, "jupyter-data")}
	must(t, os.MkdirAll(filepath.Join(d.dataDir, "kernels"), 0o700))
	return d
}

// doctor runs kq doctor on profile to its end.
func (d *doctorEnv) doctor(profile string, extraEnv ...string) (string, map[string]doctorLine, int) {
	d.t.Helper()
	env := append([]string{"JUPYTER_DATA_DIR=" + d.dataDir, "JUPYTER_PATH="}, extraEnv...)
	r, code := d.runToEnd([]string{"doctor", profile}, env...)
	out := r.stdout.String()
	d.t.Logf("kq doctor %s: exit %d\n%s%s", profile, code, out, r.stderr)
	if strings.Contains(out, "\x1b") {
		d.t.Errorf("escape codes in kq doctor's output:\n%q", out)
	}
	return out, parseDoctor(d.t, out), code
}

// spec writes a kq kernelspec whose argv[0] is program.
func (d *doctorEnv) spec(name, program string) {
	dir := filepath.Join(d.dataDir, "kernels", name)
	must(d.t, os.MkdirAll(dir, 0o700))
	data, err := json.Marshal(map[string]any{"argv": []string{program, "kernel", "p", "-f", "{connection_file}"},
		"display_name": name, "language": "python", "metadata": map[string]any{"kq": map[string]any{"profile": "p"}}})
	must(d.t, err)
	must(d.t, os.WriteFile(filepath.Join(dir, "kernel.json"), data, 0o600))
}

// wantChecks asserts each named check's status (and that its line says want).
func wantChecks(t *testing.T, got map[string]doctorLine, want map[string]string) {
	t.Helper()
	for name, status := range want {
		if got[name].status != status {
			t.Errorf("check %q: %q, want %s", name, got[name], status)
		}
	}
}

// TestDoctor: kq doctor against the real sshd and a real kernel: every
// check passes, the kernel it started is stopped, nothing is left on
// either side and known_hosts is unchanged.
func TestDoctor(t *testing.T) {
	d := newDoctorEnv(t)
	d.writeConfig(map[string]profile{"p": d.baseProfile()})
	d.spec("kq-p", kqBin)
	before, err := os.ReadFile(d.srv.KnownHosts)
	must(t, err)
	out, checks, code := d.doctor("p")
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	wantChecks(t, checks, map[string]string{"config": "PASS", "host kqtest": "PASS", "python": "PASS",
		"runtime dir": "PASS", "kernel": "PASS", "frontend": "PASS", "kernelspecs": "PASS"})
	if !strings.Contains(checks["python"].text, "ipykernel 6.") || !strings.Contains(checks["python"].text, "/usr/bin/python3: Python 3.") {
		t.Errorf("python line: %q", checks["python"].text)
	}
	if !strings.Contains(checks["kernel"].text, "answered kernel_info_request") || !strings.Contains(checks["kernelspecs"].text, "1 of kq's") {
		t.Errorf("kernel and kernelspecs lines: %q, %q", checks["kernel"].text, checks["kernelspecs"].text)
	}
	if !strings.HasSuffix(out, "7 passed, 0 failed, 0 skipped\n") {
		t.Errorf("summary: %q", out)
	}
	after, err := os.ReadFile(d.srv.KnownHosts)
	must(t, err)
	if string(before) != string(after) {
		t.Errorf("known_hosts changed")
	}
	d.assertClean(nil, nil)
}

// TestDoctorFailures: each failure is named on its check's line with a
// hint, the checks that depend on it are skipped, the exit status is 1,
// and nothing is left on either side.
func TestDoctorFailures(t *testing.T) {
	d := newDoctorEnv(t)
	locked := filepath.Join(d.dir, "locked-runtime")
	must(t, os.Mkdir(locked, 0o700))
	makeUnwritable(t, locked)
	unknown := d.srv.EmptyKnownHosts(t)
	acceptNew := d.writeSSHConfig(unknown, d.srv.ClientKey)
	cfg, err := os.ReadFile(acceptNew)
	must(t, err)
	must(t, os.WriteFile(acceptNew, []byte(strings.ReplaceAll(string(cfg), "StrictHostKeyChecking yes", "StrictHostKeyChecking accept-new")), 0o600))
	stubs := filepath.Join(d.dir, "stubs") // jupyter without jupyter-qtconsole, and ssh
	must(t, os.Mkdir(stubs, 0o755))
	must(t, os.WriteFile(filepath.Join(stubs, "jupyter"), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	must(t, os.Symlink("/usr/bin/ssh", filepath.Join(stubs, "ssh")))
	d.writeConfig(map[string]profile{
		"nomodule":   d.profileFor("kqtest", d.sshConfig, profile{"kernel": sysPython + " -m no_such_module"}),
		"noipykern":  d.profileFor("kqtest", d.sshConfig, profile{"kernel": pythonWithoutIPyKernel(t) + " -m ipykernel_launcher"}),
		"lockedrt":   d.profileFor("kqtest", d.sshConfig, profile{"runtime_dir": locked}),
		"unknownkey": d.profileFor("kqtest", acceptNew),
		"nofrontend": d.profileFor("kqtest", d.sshConfig, profile{"frontend": "qtconsole"}),
	})
	for _, tc := range []struct {
		profile, check, text, hint string
		env                        []string
		want                       map[string]string
	}{
		{"nomodule", "python", "cannot import no_such_module", "-m no_such_module", nil,
			map[string]string{"host kqtest": "PASS", "runtime dir": "PASS", "kernel": "SKIP", "frontend": "PASS"}},
		{"noipykern", "python", "cannot import ipykernel", "pip install ipykernel", nil,
			map[string]string{"host kqtest": "PASS", "kernel": "SKIP"}},
		{"lockedrt", "runtime dir", "is not writable by", "that only you can write to", nil,
			map[string]string{"python": "PASS", "kernel": "SKIP"}},
		{"unknownkey", "host kqtest", "is unknown", "ssh-keyscan -p", nil,
			map[string]string{"config": "PASS", "python": "SKIP", "runtime dir": "SKIP", "kernel": "SKIP", "frontend": "PASS"}},
		{"nofrontend", "frontend", "jupyter-qtconsole is not", "apt install jupyter-qtconsole, or pip install qtconsole",
			[]string{"PATH=" + stubs}, map[string]string{"python": "PASS", "kernel": "PASS"}},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			_, checks, code := d.doctor(tc.profile, tc.env...)
			c := checks[tc.check]
			if c.status != "FAIL" || !strings.Contains(c.text, tc.text) || !strings.Contains(c.hint, tc.hint) {
				t.Errorf("check %q: %+v; want FAIL saying %q with a hint saying %q", tc.check, c, tc.text, tc.hint)
			}
			wantChecks(t, checks, tc.want)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			d.assertClean(nil, nil)
		})
	}
	if data, _ := os.ReadFile(unknown); len(data) != 0 {
		t.Errorf("kq doctor recorded a host key under accept-new: %q", data)
	}
	if strings.Contains(d.srv.Run(t, "ls -A "+locked), "kq") {
		t.Errorf("left in the locked runtime dir")
	}
}

// pythonWithoutIPyKernel is a Python that cannot import ipykernel: the
// python3 on PATH when it has none (a pyenv one), else Debian's python3
// without its site-packages (-S).
func pythonWithoutIPyKernel(t *testing.T) string {
	if p, err := exec.LookPath("python3"); err == nil && exec.Command(p, "-c", "import ipykernel").Run() != nil {
		// A pyenv shim needs pyenv's environment: ask for the interpreter.
		if out, err := exec.Command(p, "-c", "import sys; print(sys.executable)").Output(); err == nil {
			return strings.TrimSpace(string(out))
		}
	}
	return sysPython + " -S"
}

// makeUnwritable makes dir refuse new files even to root: the immutable
// attribute (removed at the test's end), else mode 0500.
func makeUnwritable(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		must(t, os.Chmod(dir, 0o500))
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
		return
	}
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		t.Skipf("root, and chattr +i fails (%v: %s)", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", dir).Run() })
}

// TestDoctorJump: one line per hop, jump hosts first; a hop that fails
// is named and the hops after it are skipped. The loopback sshd is its
// own jump host.
func TestDoctorJump(t *testing.T) {
	d := newDoctorEnv(t)
	d.writeConfig(map[string]profile{
		"via":     d.profileFor("kqtest", d.sshConfig, profile{"jump": "kqtest"}),
		"deadjmp": d.profileFor("kqtest", d.sshConfig, profile{"jump": "127.0.0.1:1"}),
	})
	out, checks, code := d.doctor("via")
	wantChecks(t, checks, map[string]string{"jump kqtest": "PASS", "host kqtest": "PASS", "kernel": "PASS"})
	if code != 0 || strings.Index(out, "jump kqtest") > strings.Index(out, "host kqtest") {
		t.Errorf("exit %d; want 0 with the jump host's line first", code)
	}
	d.assertClean(nil, nil)
	_, checks, code = d.doctor("deadjmp")
	wantChecks(t, checks, map[string]string{"jump 127.0.0.1": "FAIL", "host kqtest": "SKIP", "python": "SKIP"})
	if !strings.Contains(checks["jump 127.0.0.1"].text, "connection refused") || !strings.Contains(checks["host kqtest"].text, "needs jump 127.0.0.1") {
		t.Errorf("jump failure: %+v, host: %+v", checks["jump 127.0.0.1"], checks["host kqtest"])
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	d.assertClean(nil, nil)
}
