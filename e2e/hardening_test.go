package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kq-dev/kq/e2e/sshdtest"
)

// secretsOnCommandLines lists every process whose command line holds one
// of the secrets: on this loopback "server", that is any process at all.
func secretsOnCommandLines(secrets ...string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		line := strings.ReplaceAll(string(b), "\x00", " ")
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				found = append(found, fmt.Sprintf("pid %d has %q: %s", pid, s, line))
			}
		}
	}
	return found
}

// remoteSecrets are what must never be on a command line: the key and the
// connection file's content (one line of it is enough to tell).
func remoteSecrets(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "kernel-kq-*.json"))
	if len(files) != 1 {
		t.Fatalf("remote connection files: %q", files)
	}
	data, err := os.ReadFile(files[0])
	must(t, err)
	var info struct {
		Key string `json:"key"`
	}
	must(t, json.Unmarshal(data, &info))
	if info.Key == "" {
		t.Fatalf("no key in %s", data)
	}
	return []string{info.Key, `"key": "` + info.Key + `"`}
}

// TestNoSecretsOnCommandLines: the profile's env: value, the HMAC key and
// the connection file never appear in any /proc/*/cmdline on the server,
// during a session and for a kept kernel, while the kernel does get the
// value in its environment.
func TestNoSecretsOnCommandLines(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	token := "hf_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	p := e.baseProfile()
	p["env"] = map[string]string{"HF_TOKEN": token}
	e.writeConfig(map[string]profile{"p": p})

	r := e.start([]string{"p"}, "KQ_TEST_WAIT=1",
		"KQ_TEST_CODE=import os; print(os.environ['HF_TOKEN'] == '"+token+"')")
	rep := r.report(t)
	if strings.TrimSpace(rep.Out) != "True" {
		t.Fatalf("the kernel did not get env: HF_TOKEN: %q", rep.Out)
	}
	secrets := append(remoteSecrets(t, e.remoteRT), token)
	for i := 0; i < 3; i++ { // a few looks, as the hold and watchdog loops go round
		if found := secretsOnCommandLines(secrets...); len(found) > 0 {
			t.Fatalf("secrets on command lines during the session:\n%s", strings.Join(found, "\n"))
		}
		time.Sleep(time.Second)
	}
	r.stdin.Close()
	if code := r.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	waitNoFiles(t, e.remoteRT, 10*time.Second)
	e.assertClean(nil, rep.Ports)

	// A kept kernel lives for days: nothing of it on a command line either.
	r, code := e.runToEnd([]string{"run", "--detach", "p"})
	if code != 0 {
		t.Fatalf("--detach: exit %d\n%s", code, r.stderr)
	}
	id := kqID(t, e.remoteRT)
	t.Cleanup(func() { e.runToEnd([]string{"stop", "p", id}) })
	secrets = append(remoteSecrets(t, e.remoteRT), token)
	time.Sleep(3 * time.Second) // the watchdog has been round at least once
	if found := secretsOnCommandLines(secrets...); len(found) > 0 {
		t.Fatalf("secrets on command lines with a kept kernel:\n%s", strings.Join(found, "\n"))
	}
	if r, code := e.runToEnd([]string{"stop", "p", id}); code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, r.stderr)
	}
	waitNoFiles(t, e.remoteRT, 10*time.Second)
}

// writeScript writes an executable helper for a kernel command.
func (e *env) writeScript(name, body string) string {
	path := filepath.Join(e.dir, name)
	must(e.t, os.WriteFile(path, []byte(body), 0o755))
	return path
}

// printingKernel starts ipykernel with its connection file elsewhere (as a
// kernel on another machine would) and prints that file on one line, as
// json.dumps does, instead of writing the file kq named.
const printingKernel = `import json, os, subprocess, sys, time
other = os.path.join(os.path.dirname(os.path.abspath(__file__)), "elsewhere.json")
p = subprocess.Popen([sys.executable, "-m", "ipykernel_launcher", "-f", other])
for _ in range(600):
    if os.path.exists(other) and os.path.getsize(other) > 0:
        break
    time.sleep(0.1)
time.sleep(0.2)
with open(other) as f:
    info = json.load(f)
os.remove(other)
print("kernel started; connection info follows")
print(json.dumps(info), flush=True)
sys.exit(p.wait())
`

// TestKernelCommandsAsWritten: kernel commands as users write them in
// their profiles work as they would in a shell: VAR=value before the
// program, a command that prints its JSON on one line, a kernel slower to
// start than linger.
func TestKernelCommandsAsWritten(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kernel func(e *env) string
		extra  profile
		code   string
		want   string
	}{
		{name: "assignment", kernel: func(*env) string { return "KQ_GPU=3 KQ_WORDS='two words' " + kernelCmd },
			code: "import os; print(os.environ['KQ_GPU'], os.environ['KQ_WORDS'])", want: "3 two words"},
		{name: "one-line-json", kernel: func(e *env) string {
			return sysPython + " " + e.writeScript("printing.py", printingKernel)
		}, code: "print(6 * 7)", want: "42"},
		{name: "slower-than-linger", kernel: func(*env) string {
			return `sh -c 'sleep 9; exec ` + kernelCmd + ` "$@"' kernel`
		}, extra: profile{"linger": "4s"}, code: "print('still here')", want: "still here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, sshdtest.Options{})
			p := e.baseProfile()
			p["kernel"] = tc.kernel(e)
			for k, v := range tc.extra {
				p[k] = v
			}
			e.writeConfig(map[string]profile{"p": p})
			r, code := e.runToEnd([]string{"p"}, "KQ_TEST_CODE="+tc.code)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, r.stderr)
			}
			if rep := r.report(t); strings.TrimSpace(rep.Out) != tc.want {
				t.Fatalf("out %q, want %q\n%s", rep.Out, tc.want, r.stderr)
			}
			waitNoFiles(t, e.remoteRT, 10*time.Second)
			e.assertClean(nil, nil)
		})
	}
}

// TestKernelCommandRefused: a trailing comment would swallow the -f FILE
// kq appends: refused as a config error before anything starts.
func TestKernelCommandRefused(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	p := e.baseProfile()
	p["kernel"] = kernelCmd + "  # my GPU kernel"
	e.writeConfig(map[string]profile{"p": p})
	r, code := e.runToEnd([]string{"p"})
	if code != 2 || !strings.Contains(r.stderr.String(), "kq: error: ") || !strings.Contains(r.stderr.String(), "# comment") {
		t.Fatalf("exit %d, want 2 naming the comment\n%s", code, r.stderr)
	}
	if strings.Contains(r.stderr.String(), "connected") {
		t.Fatalf("connected anyway:\n%s", r.stderr)
	}
	e.assertClean(nil, nil)
}

// TestHostileWorkdir: a workdir is a directory name, never shell: the
// command substitution in it does not run, the failure is one clear
// error line with nothing glued to it, and nothing is left behind.
func TestHostileWorkdir(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	marker := filepath.Join(e.dir, "pwned")
	p := e.baseProfile()
	p["workdir"] = "/nonexistent/$(touch " + marker + ")"
	e.writeConfig(map[string]profile{"p": p})
	r, code := e.runToEnd([]string{"p"})
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the workdir ran a command on the server")
	}
	stderr := r.stderr.String()
	if code != 7 || !strings.Contains(stderr, "cannot cd to workdir /nonexistent/$(touch "+marker+")") {
		t.Fatalf("exit %d, want 7 naming the workdir\n%s", code, stderr)
	}
	var errLines []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "kq: error: ") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 1 || strings.Contains(errLines[0], "half-started") || strings.Count(errLines[0], "kq:") != 1 {
		t.Errorf("want one plain error line:\n%s", stderr)
	}
	waitNoFiles(t, e.remoteRT, 10*time.Second)
	e.assertClean(nil, nil)
}

// TestKernelUmask: kq's own files are private, but a file the kernel
// writes gets the login umask, as it would in a shell on the server.
func TestKernelUmask(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	work := filepath.Join(e.dir, "project")
	must(t, os.Mkdir(work, 0o755))
	umask, err := strconv.ParseInt(strings.TrimSpace(e.srv.Run(t, "umask")), 8, 32)
	must(t, err)
	want := 0o666 &^ int(umask)
	if want == 0o600 {
		t.Skip("the login umask is 077: the test cannot tell")
	}
	p := e.baseProfile()
	p["workdir"] = work
	e.writeConfig(map[string]profile{"p": p})
	r := e.start([]string{"p"}, "KQ_TEST_WAIT=1",
		"KQ_TEST_CODE=import os; open('results.csv', 'w').close(); print(oct(os.stat('results.csv').st_mode & 0o777))")
	rep := r.report(t)
	if got := strings.TrimSpace(rep.Out); got != fmt.Sprintf("0o%o", want) {
		t.Errorf("a file the kernel wrote has mode %s, want 0o%o (login umask %04o)", got, want, umask)
	}
	files, _ := filepath.Glob(filepath.Join(e.remoteRT, "kernel-kq-*"))
	for _, f := range append(files, e.remoteRT) {
		st, err := os.Stat(f)
		must(t, err)
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("kq's file %s has mode %o", f, st.Mode().Perm())
		}
	}
	r.stdin.Close()
	if code := r.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	waitNoFiles(t, e.remoteRT, 10*time.Second)
	e.assertClean(nil, rep.Ports)
}

// TestKeyNotRelayed: a kernel command that prints connection JSON with its
// key and then fails: the error shows the kernel's output, but not the key.
func TestKeyNotRelayed(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	secret := "a3f1c9e2-" + strings.ReplaceAll(uuid.NewString(), "-", "")
	script := e.writeScript("failing.sh", `echo 'starting'
echo 'bad settings: {"transport": "tcp", "key": "`+secret+`", "signature_scheme": "hmac-sha256"}'
exit 3
`)
	p := e.baseProfile()
	p["kernel"] = "/bin/sh " + script
	e.writeConfig(map[string]profile{"p": p})
	r, code := e.runToEnd([]string{"-v", "p"})
	stderr := r.stderr.String()
	if code != 7 || !strings.Contains(stderr, "bad settings:") {
		t.Fatalf("exit %d, want 7 with the kernel's output\n%s", code, stderr)
	}
	if strings.Contains(stderr, secret) {
		t.Fatalf("the key reached kq's output:\n%s", stderr)
	}
	if !strings.Contains(stderr, `"key": "<redacted>"`) {
		t.Errorf("no redacted key in:\n%s", stderr)
	}
	waitNoFiles(t, e.remoteRT, 10*time.Second)
	e.assertClean(nil, nil)
}

// TestRuntimeDirRefused: a runtime dir that other users can write to is
// refused before any kernel starts there.
func TestRuntimeDirRefused(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	must(t, os.Mkdir(e.remoteRT, 0o700))
	must(t, os.Chmod(e.remoteRT, 0o1777))
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	r, code := e.runToEnd([]string{"p"})
	stderr := r.stderr.String()
	if code != 7 || !strings.Contains(stderr, "is writable by other users") || !strings.Contains(stderr, "kq: hint: ") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if entries, _ := os.ReadDir(e.remoteRT); len(entries) != 0 {
		t.Fatalf("files written into a refused runtime dir: %v", entries)
	}
	if pids := sshdtest.ProcessesMatching("kernel-kq-"); len(pids) > 0 {
		for _, pid := range pids {
			if strings.Contains(cmdline(pid), e.dir) {
				t.Errorf("kernel started anyway: %d %s", pid, cmdline(pid))
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	must(t, os.Chmod(e.remoteRT, 0o700))
	e.assertClean(nil, nil)
}

// TestLoginShellTcsh: a user whose login shell is tcsh (which rejects a
// newline inside single quotes) gets a session like everyone else: kq's
// one command line is the same for every shell, and env: values with
// newlines arrive intact.
func TestLoginShellTcsh(t *testing.T) {
	const tcsh = "/usr/bin/tcsh"
	if _, err := os.Stat(tcsh); err != nil {
		t.Fatalf("%s is missing: install tcsh (.ci/run does)", tcsh)
	}
	name, home := throwawayUser(t, tcsh)
	e := newEnv(t, sshdtest.Options{ExtraConfig: []string{"AuthorizedKeysFile %h/authorized_keys"}})
	pub, err := os.ReadFile(e.srv.ClientKey + ".pub")
	must(t, err)
	keys := filepath.Join(home, "authorized_keys")
	must(t, os.WriteFile(keys, pub, 0o600))
	u, err := user.Lookup(name)
	must(t, err)
	uid, _ := strconv.Atoi(u.Uid)
	must(t, os.Chown(keys, uid, -1))
	e.remoteRT = filepath.Join(home, "runtime")
	p := e.baseProfile()
	p["host"] = name + "@kqtest"
	p["env"] = map[string]string{"KQ_MULTI": "line one\nline 'two'"}
	e.writeConfig(map[string]profile{"p": p})
	r, code := e.runToEnd([]string{"p"},
		"KQ_TEST_CODE=import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name, os.environ['KQ_MULTI'] == \"line one\\nline 'two'\")")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	if rep := r.report(t); strings.TrimSpace(rep.Out) != name+" True" {
		t.Fatalf("out %q, want %q", rep.Out, name+" True")
	}
	waitNoFiles(t, e.remoteRT, 10*time.Second)
	e.assertClean(nil, nil)
}
