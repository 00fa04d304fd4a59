package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

func kernelPID(t *testing.T, rep report) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(rep.Out))
	if err != nil {
		t.Fatalf("kernel did not report its pid: %q", rep.Out)
	}
	return pid
}

// TestSession is the product: kq starts a kernel over real sshd, a real
// jupyter_client runs code on it through the forwarded ports, and when the
// frontend exits nothing is left anywhere.
func TestSession(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"loop.example.org": e.baseProfile()})
	r := e.start([]string{"-v", "loop.example.org"})
	r.stdin.Close()
	rep := r.report(t)
	pid := kernelPID(t, rep)
	if !sshdtest.ProcessAlive(pid) && r.code == 0 {
		select {
		case <-r.done:
		default:
			t.Errorf("kernel %d not running during the session", pid)
		}
	}
	if code := r.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	if rep.Mode != 0o600 {
		t.Errorf("local connection file mode %o, want 600", rep.Mode)
	}
	if rep.DirMode != 0o700 {
		t.Errorf("local runtime dir mode %o, want 700", rep.DirMode)
	}
	if rep.IP != "127.0.0.1" {
		t.Errorf("local file ip %q", rep.IP)
	}
	if filepath.Dir(rep.File) != e.localRT || !strings.HasPrefix(filepath.Base(rep.File), "kernel-kq-loop.example.org-") {
		t.Errorf("local file %s not named kernel-kq-PROFILE-ID.json in %s", rep.File, e.localRT)
	}
	stderr := r.stderr.String()
	for _, step := range []string{"connected to", "kernel started on kqtest", "forwarded 5 ports", "ready in"} {
		if !strings.Contains(stderr, "kq: "+step) {
			t.Errorf("stderr lacks step %q:\n%s", step, stderr)
		}
	}
	if rep.Key == "" || strings.Contains(stderr, rep.Key) {
		t.Errorf("the key leaked into kq's -v output")
	}
	e.assertClean([]int{pid}, rep.Ports)
}

// TestSessionDefaults: no runtime_dir (the server's `jupyter --runtime-dir`
// is used), a workdir, -q for silence, and `jupyter console` as the
// frontend, fed through kq's own stdin.
func TestSessionDefaults(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	workdir := filepath.Join(e.dir, "work")
	must(t, os.Mkdir(workdir, 0o755))
	p := e.baseProfile()
	delete(p, "runtime_dir")
	p["workdir"] = workdir
	p["frontend"] = "/usr/bin/jupyter console --existing {connection_file} --simple-prompt"
	e.writeConfig(map[string]profile{"srv": p})
	remoteRT := strings.TrimSpace(e.srv.Run(t, "jupyter --runtime-dir"))
	before := listKQFiles(remoteRT)
	r := e.start([]string{"-q", "run", "srv"})
	_, err := io.WriteString(r.stdin, "import os; print('KQRUN', os.getpid(), os.getcwd())\n")
	must(t, err)
	r.stdin.Close()
	if code := r.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, r.stdout, r.stderr)
	}
	var fields []string
	for _, l := range strings.Split(r.stdout.String(), "\n") {
		if i := strings.Index(l, "KQRUN "); i >= 0 {
			fields = strings.Fields(l[i:])
		}
	}
	if len(fields) != 3 || fields[2] != workdir {
		t.Fatalf("kernel output %q, want its pid and the workdir\n%s", fields, r.stdout)
	}
	if s := r.stderr.String(); s != "" {
		t.Errorf("-q printed:\n%s", s)
	}
	pid, _ := strconv.Atoi(fields[1])
	e.assertClean([]int{pid}, nil)
	if after := listKQFiles(remoteRT); len(after) != len(before) {
		t.Errorf("files left in the server's runtime dir %s: before %q after %q", remoteRT, before, after)
	}
}

func listKQFiles(dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "kernel-kq-*"))
	return m
}

// TestFrontendExitCode: kq exits with the frontend's code and still cleans
// up; words after "--" reach the frontend.
func TestFrontendExitCode(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	r, code := e.runToEnd([]string{"p", "--", "--extra", "two words"}, "KQ_TEST_EXIT=3")
	rep := r.report(t)
	if code != 3 {
		t.Fatalf("exit %d, want the frontend's 3\n%s", code, r.stderr)
	}
	if strings.Join(rep.Argv, "|") != "--extra|two words" {
		t.Errorf("frontend args after --: %q", rep.Argv)
	}
	e.assertClean([]int{kernelPID(t, rep)}, rep.Ports)
}

// TestSecondFrontend attaches `jupyter console --existing NAME` by file name
// while the session runs, and sees the state the first frontend made.
func TestSecondFrontend(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	r := e.start([]string{"p"}, "KQ_TEST_WAIT=1", "KQ_TEST_CODE=import os; kq_answer = 42; print(os.getpid())")
	rep := r.report(t)
	cmd := exec.CommandContext(contextFor(t, 90*time.Second), "/usr/bin/jupyter", "console", "--simple-prompt",
		"--existing", filepath.Base(rep.File))
	cmd.Env = append(cleanEnv(), "JUPYTER_RUNTIME_DIR="+e.localRT)
	cmd.Stdin = strings.NewReader("print('second sees', kq_answer)\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "second sees 42") {
		t.Fatalf("second frontend: %v\n%s", err, out)
	}
	// The key is on no command line, here or on the "server" (the same
	// machine), while the session runs.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), rep.Key) {
			t.Errorf("key on a command line: %s: %q", f, b)
		}
	}
	r.stdin.Close()
	if code := r.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	e.assertClean([]int{kernelPID(t, rep)}, rep.Ports)
}

// TestSignalMidSession: SIGTERM or SIGHUP to kq while the frontend runs
// stops the frontend and the kernel, removes everything, exits 130; so
// does a terminal's Ctrl-C (SIGINT to the whole process group), which ends
// the frontend and with it the session.
func TestSignalMidSession(t *testing.T) {
	cases := []struct {
		name  string
		sig   syscall.Signal
		group bool
	}{
		{"SIGTERM", syscall.SIGTERM, false},
		{"SIGHUP", syscall.SIGHUP, false},
		{"Ctrl-C", syscall.SIGINT, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, sshdtest.Options{})
			e.writeConfig(map[string]profile{"p": e.baseProfile()})
			r := e.start([]string{"p"}, "KQ_TEST_WAIT=1")
			rep := r.report(t)
			pid := r.cmd.Process.Pid
			if c.group {
				pid = -pid
			}
			must(t, syscall.Kill(pid, c.sig))
			if code := r.wait(t, time.Minute); code != 130 {
				t.Fatalf("exit %d, want 130\n%s", code, r.stderr)
			}
			sshdtest.WaitGone(t, rep.PID, 10*time.Second) // the frontend
			e.assertClean([]int{kernelPID(t, rep)}, rep.Ports)
		})
	}
}

// TestInterruptDuringStart: Ctrl-C while the kernel is starting tears down
// what exists so far (the half-started kernel included) and exits 130.
func TestInterruptDuringStart(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	slow := filepath.Join(e.dir, "slow-kernel.sh")
	pidFile := filepath.Join(e.dir, "slow.pid")
	must(t, os.WriteFile(slow, []byte("echo $$ > "+pidFile+"\nexec sleep 120\n"), 0o755))
	p := e.baseProfile()
	p["kernel"] = "/bin/sh " + slow
	e.writeConfig(map[string]profile{"p": p})
	r := e.start([]string{"p"})
	pid := waitPIDFile(t, pidFile)
	must(t, syscall.Kill(-r.cmd.Process.Pid, syscall.SIGINT)) // as a terminal's Ctrl-C does
	if code := r.wait(t, time.Minute); code != 130 {
		t.Fatalf("exit %d, want 130\n%s", code, r.stderr)
	}
	e.assertClean([]int{pid}, nil)
}

func waitPIDFile(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			must(t, err)
			return pid
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never written", path)
	return 0
}

// TestKernelFails: a python without ipykernel (site-packages switched off
// with -S, given with --kernel over the profile's good kernel) is reported with the kernel's own error, exit 7, nothing left.
func TestKernelFails(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	r, code := e.runToEnd([]string{"run", "--kernel", sysPython + " -S -m ipykernel_launcher", "p"})
	if code != 7 {
		t.Fatalf("exit %d, want 7\n%s", code, r.stderr)
	}
	stderr := r.stderr.String()
	if !strings.Contains(stderr, "kq: error: ") || !strings.Contains(stderr, "No module named") ||
		!strings.Contains(stderr, "kq: hint: install ipykernel") {
		t.Errorf("stderr:\n%s", stderr)
	}
	e.assertClean(nil, nil)
}

// TestBadConnectionFile: a kernel command that writes an unusable file is
// stopped, and the reason is named; exit 7.
func TestBadConnectionFile(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	fake := filepath.Join(e.dir, "fake-kernel.sh")
	pidFile := filepath.Join(e.dir, "fake.pid")
	must(t, os.WriteFile(fake, []byte(`printf '{"shell_port": 5000, "iopub_port": 5001, "stdin_port": 5002, "control_port": 70000, "hb_port": 5004, "ip": "127.0.0.1", "key": "s3cr3t-k3y", "transport": "tcp", "signature_scheme": "hmac-sha256"}\n' > "$2"
echo $$ > `+pidFile+`
exec sleep 120
`), 0o755))
	p := e.baseProfile()
	p["kernel"] = "/bin/sh " + fake
	e.writeConfig(map[string]profile{"p": p})
	r, code := e.runToEnd([]string{"p"})
	if code != 7 {
		t.Fatalf("exit %d, want 7\n%s", code, r.stderr)
	}
	stderr := r.stderr.String()
	if !strings.Contains(stderr, "control_port") || strings.Contains(stderr, "s3cr3t-k3y") {
		t.Errorf("want the reason (control_port) and never the key:\n%s", stderr)
	}
	e.assertClean([]int{waitPIDFile(t, pidFile)}, nil)
}

// TestHostKeyRefused: unknown and changed host keys are refused before any
// authentication, exit 5, with the fingerprint; nothing starts remotely.
func TestHostKeyRefused(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	cases := map[string]struct {
		knownHosts string
		want       []string
	}{
		"unknown": {e.srv.EmptyKnownHosts(t), []string{"unknown", e.srv.HostKeyFingerprint}},
		"changed": {e.srv.WrongKnownHosts(t), []string{"CHANGED", e.srv.HostKeyFingerprint, ":1"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := e.baseProfile()
			p["ssh_config"] = e.writeSSHConfig(c.knownHosts, e.srv.ClientKey)
			e.writeConfig(map[string]profile{"p": p})
			r, code := e.runToEnd([]string{"p"})
			if code != 5 {
				t.Fatalf("exit %d, want 5\n%s", code, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if _, err := os.Stat(e.remoteRT); err == nil {
				t.Errorf("remote runtime dir created although the host was refused")
			}
			e.assertClean(nil, nil)
		})
	}
}

// TestAuthRefused: a key the server does not know gives exit 4.
func TestAuthRefused(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	other := filepath.Join(e.dir, "other_key")
	out, err := exec.Command("/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	p := e.baseProfile()
	p["ssh_config"] = e.writeSSHConfig(e.srv.KnownHosts, other)
	e.writeConfig(map[string]profile{"p": p})
	r, code := e.runToEnd([]string{"p"})
	if code != 4 || !strings.Contains(r.stderr.String(), "refused every key") {
		t.Fatalf("exit %d, want 4\n%s", code, r.stderr)
	}
	e.assertClean(nil, nil)
}

// TestConfigProblems: a wrong profile name and a missing frontend fail
// before anything connects, exit 2.
func TestConfigProblems(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	p := e.baseProfile()
	q := e.baseProfile()
	q["frontend"] = []string{"/nonexistent/kq-frontend", "{connection_file}"}
	e.writeConfig(map[string]profile{"gpu.example.org": p, "nofront": q})

	r, code := e.runToEnd([]string{"gpu"})
	if code != 2 || !strings.Contains(r.stderr.String(), `unknown profile "gpu"`) ||
		!strings.Contains(r.stderr.String(), "known profiles: gpu.example.org, nofront") {
		t.Fatalf("unknown profile: exit %d\n%s", code, r.stderr)
	}
	r, code = e.runToEnd([]string{"nofront"})
	if code != 2 || !strings.Contains(r.stderr.String(), "/nonexistent/kq-frontend") {
		t.Fatalf("missing frontend: exit %d\n%s", code, r.stderr)
	}
	if strings.Contains(r.stderr.String(), "connected") {
		t.Fatalf("connected although the frontend is missing:\n%s", r.stderr)
	}
	e.assertClean(nil, nil)
}

// TestKeep: --keep leaves the kernel and its remote file, prints the path.
func TestKeep(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	r, code := e.runToEnd([]string{"run", "--keep", "p"})
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	rep := r.report(t)
	pid := kernelPID(t, rep)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	files, _ := filepath.Glob(filepath.Join(e.remoteRT, "kernel-kq-*.json"))
	if !sshdtest.ProcessAlive(pid) || len(files) == 0 {
		t.Fatalf("--keep: kernel alive %v, remote files %q", sshdtest.ProcessAlive(pid), files)
	}
	for _, f := range append(files, e.remoteRT) {
		st, err := os.Stat(f)
		must(t, err)
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("remote %s has mode %o: readable by others", f, st.Mode().Perm())
		}
	}
	if !strings.Contains(r.stderr.String(), "left running on kqtest") || !strings.Contains(r.stderr.String(), files[0]) ||
		!strings.Contains(r.stderr.String(), "kq attach p ") {
		t.Errorf("path of the kept kernel not printed:\n%s", r.stderr)
	}
	if entries, _ := os.ReadDir(e.localRT); len(entries) != 0 {
		t.Errorf("local file left with --keep: %v", entries)
	}
	// Killed on the server, the kept kernel's watchdog removes its files.
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	sshdtest.WaitGone(t, pid, 10*time.Second)
	waitNoFiles(t, e.remoteRT, 10*time.Second)
}

// waitNoFiles waits until dir holds no kq files.
func waitNoFiles(t *testing.T, dir string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(listKQFiles(dir)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("files left in %s: %q", dir, listKQFiles(dir))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestIPythonKernel: the manual recipe's `ipython kernel` works as the
// kernel command, and so does a kernel whose environment comes from env:.
func TestIPythonKernel(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	p := e.baseProfile()
	p["kernel"] = "/usr/bin/ipython3 kernel"
	p["env"] = map[string]string{"KQ_E2E_VALUE": "it's $(not) expanded"}
	e.writeConfig(map[string]profile{"p": p})
	r, code := e.runToEnd([]string{"p"}, "KQ_TEST_CODE=import os; print(os.getpid()); print(os.environ['KQ_E2E_VALUE'])")
	rep := r.report(t)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(rep.Out), "\n")
	if len(lines) != 2 || lines[1] != "it's $(not) expanded" {
		t.Fatalf("kernel output %q", rep.Out)
	}
	pid, err := strconv.Atoi(lines[0])
	must(t, err)
	e.assertClean([]int{pid}, rep.Ports)
}

// TestHostForms: `host: user@address:port` works with an ssh config that
// only names the key and known_hosts, and a known_hosts with hashed host
// names (ssh-keygen -H) is honoured.
func TestHostForms(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	hashed := filepath.Join(e.dir, "known_hosts_hashed")
	data, err := os.ReadFile(e.srv.KnownHosts)
	must(t, err)
	must(t, os.WriteFile(hashed, data, 0o600))
	if out, err := exec.Command("/usr/bin/ssh-keygen", "-H", "-f", hashed).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -H: %v %s", err, out)
	}
	if b, _ := os.ReadFile(hashed); !strings.HasPrefix(string(b), "|1|") {
		t.Fatalf("known_hosts not hashed: %s", b)
	}
	generic := filepath.Join(e.dir, "ssh_config_generic")
	must(t, os.WriteFile(generic, []byte(fmt.Sprintf("Host *\n  IdentityFile %s\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n",
		e.srv.ClientKey, hashed)), 0o600))
	p := e.baseProfile()
	p["host"] = fmt.Sprintf("%s@%s:%d", e.srv.User, e.srv.Host, e.srv.Port)
	p["ssh_config"] = generic
	e.writeConfig(map[string]profile{"p": p})
	r, code := e.runToEnd([]string{"p"})
	rep := r.report(t)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	e.assertClean([]int{kernelPID(t, rep)}, rep.Ports)
}

// TestReadyCheckFailsBesideFrontend: the ready check runs while the
// frontend starts. A kernel that takes connections through the real sshd
// but never answers them, and exits 3 s later, fails the check; that ends
// the session, the frontend that had started included, with an error, and
// nothing is left on either side. (With the check first, the frontend never
// ran.)
func TestReadyCheckFailsBesideFrontend(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	deaf := filepath.Join(e.dir, "deaf-kernel.py")
	pidFile := filepath.Join(e.dir, "deaf.pid")
	must(t, os.WriteFile(deaf, []byte(`import json, os, socket, sys, time
with open(`+strconv.Quote(pidFile)+`, "w") as f:
    f.write(str(os.getpid()) + "\n")
socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(5)]
ports = [s.getsockname()[1] for s in socks]
names = ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"]
info = dict(zip(names, ports), ip="127.0.0.1", key="k", transport="tcp", signature_scheme="hmac-sha256")
with open(sys.argv[sys.argv.index("-f") + 1], "w") as f:
    f.write(json.dumps(info))
time.sleep(3)
`), 0o644))
	started := filepath.Join(e.dir, "frontend.pid")
	p := e.baseProfile()
	p["kernel"] = sysPython + " " + deaf
	p["frontend"] = []string{"/bin/sh", "-c", `echo $$ > "$0"; exec sleep 60`, started, "{connection_file}"}
	e.writeConfig(map[string]profile{"p": p})
	r, code := e.runToEnd([]string{"p"})
	// 7 (the kernel exited before answering), or 6 when a reconnect of the
	// check's own client to the dead kernel's port was refused first.
	if (code != 7 && code != 6) || !strings.Contains(r.stderr.String(), "kq: error: ") {
		t.Fatalf("exit %d, want 7 (or 6) and the reason:\n%s", code, r.stderr)
	}
	front := waitPIDFile(t, started) // it ran: the check did not come first
	sshdtest.WaitGone(t, front, 10*time.Second)
	e.assertClean([]int{waitPIDFile(t, pidFile)}, nil)
}
