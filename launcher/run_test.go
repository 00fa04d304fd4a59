//go:build linux

// The whole session below e2e: launcher.Run against the in-process SSH
// server of sshserver_test.go, whose exec requests run kq's real remote.sh
// under the local /bin/sh, with a real ipykernel and a real jupyter_client
// frontend. These tests are an external test package on purpose: they use
// only launcher's exported API (Run, Options, Result, the error kinds), so
// the package's internals can be split and renamed under them.
package launcher_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/profiles"
)

// Debian's Jupyter; `python3` on PATH may be an interpreter without it.
const (
	runPython    = "/usr/bin/python3"
	runKernelCmd = runPython + " -m ipykernel_launcher"
)

// runFrontendPy is the frontend: a real jupyter_client that runs the
// spec's first cell, prints "KQUNIT1 {json}", then (when told to) waits
// for a line on stdin, runs the second cell and prints "KQUNIT2 {json}",
// and exits with the spec's code.
const runFrontendPy = `
import json, os, sys, time
from queue import Empty
from jupyter_client import BlockingKernelClient
cf = sys.argv[1]
spec = json.loads(sys.argv[2])
info = json.load(open(cf))
kc = BlockingKernelClient(connection_file=cf)
kc.load_connection_file()
kc.start_channels()
kc.wait_for_ready(timeout=60)

def run(code):
    msg_id = kc.execute(code)
    out = []
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
        except Empty:
            break
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "stream":
            out.append(m["content"]["text"])
        elif m["msg_type"] == "error":
            out.append("ERROR " + m["content"]["ename"])
        elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    return "".join(out)

def settle():
    # After a reconnect the SUB socket may subscribe again only after the
    # next cell has published (ZeroMQ's slow joiner): run no-op cells
    # until one is seen on IOPub, as a careful frontend would.
    for _ in range(30):
        msg_id = kc.execute("pass")
        try:
            while True:
                m = kc.get_iopub_msg(timeout=2)
                if (m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                        and m["content"]["execution_state"] == "idle"):
                    return
        except Empty:
            continue

ports = {k: info[k] for k in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")}
print("KQUNIT1 " + json.dumps({"file": cf, "ports": ports, "out": run(spec["code1"])}), flush=True)
if spec.get("wait"):
    sys.stdin.readline()
if spec.get("code2"):
    settle()
    print("KQUNIT2 " + json.dumps({"out": run(spec["code2"])}), flush=True)
kc.stop_channels()
sys.exit(spec.get("exit", 0))
`

// frontendSpec is what runFrontendPy does; it travels as argv[2].
type frontendSpec struct {
	Code1 string `json:"code1"`
	Code2 string `json:"code2,omitempty"`
	Wait  bool   `json:"wait,omitempty"`
	Exit  int    `json:"exit,omitempty"`
}

// frontendReport is a KQUNIT1 or KQUNIT2 line.
type frontendReport struct {
	File  string         `json:"file"`
	Ports map[string]int `json:"ports"`
	Out   string         `json:"out"`
}

// runEnv is one test's world: the SSH server, an ssh_config naming it,
// the "remote" runtime dir (the profile's) and the local one
// (JUPYTER_RUNTIME_DIR), all under one temporary directory.
type runEnv struct {
	t         *testing.T
	dir       string
	srv       *execServer
	sshConfig string
	remoteRT  string
	localRT   string
	client    string
}

func newRunEnv(t *testing.T) *runEnv {
	t.Helper()
	for _, need := range []string{"/bin/sh", runPython} {
		if _, err := os.Stat(need); err != nil {
			t.Skipf("needs %s: %v", need, err)
		}
	}
	dir := t.TempDir()
	e := &runEnv{t: t, dir: dir,
		remoteRT: filepath.Join(dir, "remote-runtime"),
		localRT:  filepath.Join(dir, "local-runtime"),
		client:   filepath.Join(dir, "client.py"),
	}
	home := filepath.Join(dir, "home")
	runMust(t, os.Mkdir(home, 0o700))
	runMust(t, os.WriteFile(e.client, []byte(runFrontendPy), 0o644))
	e.srv = startExecServer(t, dir, home)
	u, err := user.Current()
	runMust(t, err)
	e.sshConfig = filepath.Join(dir, "ssh_config")
	runMust(t, os.WriteFile(e.sshConfig, []byte(fmt.Sprintf(`Host kqunit
  HostName %s
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
`, e.srv.Host, e.srv.Port, u.Username, e.srv.ClientKey, e.srv.KnownHosts)), 0o600))
	t.Setenv("JUPYTER_RUNTIME_DIR", e.localRT)
	t.Setenv("SSH_AUTH_SOCK", "") // the developer's agent has no say
	return e
}

// profile runs the frontend with spec against a kernel in remoteRT.
func (e *runEnv) profile(spec frontendSpec) profiles.Profile {
	data, err := json.Marshal(spec)
	runMust(e.t, err)
	return profiles.Profile{
		Name:       "unit",
		Host:       "kqunit",
		SSHConfig:  e.sshConfig,
		RuntimeDir: e.remoteRT,
		Kernel:     runKernelCmd,
		Linger:     time.Minute,
		Env:        map[string]string{},
		Frontend:   []string{runPython, e.client, "{connection_file}", string(data)},
	}
}

// session is one launcher.Run in the background.
type session struct {
	t      *testing.T
	done   chan struct{}
	res    launcher.Result
	err    error
	took   time.Duration
	stdout *syncBuffer
	stderr *syncBuffer
	stdin  *os.File // the frontend's stdin: a line tells it to go on
}

// start runs launcher.Run with p, verbose, the way cmd builds its options.
// Cleanup ends it if the test did not wait for it.
func (e *runEnv) start(p profiles.Profile) *session {
	e.t.Helper()
	r, w, err := os.Pipe()
	runMust(e.t, err)
	s := &session{t: e.t, done: make(chan struct{}), stdout: &syncBuffer{}, stderr: &syncBuffer{}, stdin: w}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	o := launcher.Options{
		Profile:  p,
		Resolver: profiles.SSHResolver{},
		Stdin:    r,
		Stdout:   s.stdout,
		Stderr:   s.stderr,
		Verbose:  true,
	}
	t0 := time.Now()
	go func() {
		defer close(s.done)
		s.res, s.err = launcher.Run(ctx, o)
		s.took = time.Since(t0)
	}()
	e.t.Cleanup(func() {
		w.Close() // a waiting frontend reads EOF and goes on
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			cancel()
			select {
			case <-s.done:
			case <-time.After(30 * time.Second):
				e.t.Errorf("launcher.Run did not return 30s after its context was cancelled")
			}
		}
		cancel()
		r.Close()
	})
	return s
}

// wait waits for Run to return.
func (s *session) wait(timeout time.Duration) (launcher.Result, error) {
	s.t.Helper()
	select {
	case <-s.done:
		s.t.Logf("launcher.Run returned after %s: %+v, err %v", s.took.Round(time.Millisecond), s.res, s.err)
		return s.res, s.err
	case <-time.After(timeout):
		s.t.Fatalf("launcher.Run did not return within %s\nstdout:\n%s\nstderr:\n%s", timeout, s.stdout, s.stderr)
		return launcher.Result{}, nil
	}
}

// report waits for the frontend's line with prefix (KQUNIT1, KQUNIT2).
func (s *session) report(prefix string, timeout time.Duration) frontendReport {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range strings.Split(s.stdout.String(), "\n") {
			if rest, ok := strings.CutPrefix(l, prefix+" "); ok {
				var rep frontendReport
				runMust(s.t, json.Unmarshal([]byte(rest), &rep))
				return rep
			}
		}
		select {
		case <-s.done:
			s.t.Fatalf("launcher.Run returned (%+v, %v) before the frontend printed %s\nstdout:\n%s\nstderr:\n%s",
				s.res, s.err, prefix, s.stdout, s.stderr)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %s line within %s\nstdout:\n%s\nstderr:\n%s", prefix, timeout, s.stdout, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStderr waits until Run's stderr contains want.
func (s *session) waitStderr(want string, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.stderr.String(), want) {
		if time.Now().After(deadline) {
			s.t.Fatalf("stderr never said %q within %s:\n%s", want, timeout, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// go tells a waiting frontend to go on.
func (s *session) proceed() {
	s.t.Helper()
	_, err := s.stdin.WriteString("go\n")
	runMust(s.t, err)
}

// remoteKernel is what the remote runtime dir says about the one kernel.
type remoteKernel struct {
	id       string
	pid      int // the kernel's (pid= in kernel-kq-ID.kq)
	watchdog int // remote.sh's watchdog (kernel-kq-ID.wd)
}

// kernelFiles reads the one kernel's pids from the remote runtime dir.
func (e *runEnv) kernelFiles() remoteKernel {
	e.t.Helper()
	metas, _ := filepath.Glob(filepath.Join(e.remoteRT, "kernel-kq-*.kq"))
	if len(metas) != 1 {
		e.t.Fatalf("want one kernel-kq-*.kq in %s, found %v", e.remoteRT, metas)
	}
	var k remoteKernel
	k.id = strings.TrimSuffix(strings.TrimPrefix(filepath.Base(metas[0]), "kernel-kq-"), ".kq")
	data, err := os.ReadFile(metas[0])
	runMust(e.t, err)
	m := regexp.MustCompile(`(?m)^pid=(\d+)$`).FindSubmatch(data)
	if m == nil {
		e.t.Fatalf("no pid= line in %s:\n%s", metas[0], data)
	}
	k.pid, _ = strconv.Atoi(string(m[1]))
	wd, err := os.ReadFile(filepath.Join(e.remoteRT, "kernel-kq-"+k.id+".wd"))
	runMust(e.t, err)
	// "PID START": the watchdog's pid and its start time.
	pid, _, _ := strings.Cut(strings.TrimSpace(string(wd)), " ")
	k.watchdog, err = strconv.Atoi(pid)
	runMust(e.t, err)
	return k
}

// assertClean proves nothing is left: the given processes gone, no
// listener on the local ports, no file in either runtime dir, no process
// whose command line names the test's directory, and the server without
// connections or running commands.
func (e *runEnv) assertClean(pids []int, ports map[string]int) {
	t := e.t
	t.Helper()
	for _, pid := range pids {
		deadline := time.Now().Add(10 * time.Second)
		for processAlive(pid) {
			if time.Now().After(deadline) {
				t.Errorf("process %d still running: %s", pid, cmdlineOf(pid))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for name, p := range ports {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), time.Second)
		if err == nil {
			c.Close()
			t.Errorf("local port %d (%s) still accepts connections", p, name)
		}
	}
	for _, d := range []string{e.remoteRT, e.localRT} {
		entries, _ := os.ReadDir(d)
		for _, en := range entries {
			t.Errorf("left behind: %s", filepath.Join(d, en.Name()))
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(p))
		if cl := cmdlineOf(pid); strings.Contains(cl, e.dir) && processAlive(pid) {
			t.Errorf("process %d still running: %s", pid, cl)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.Live() > 0 || e.srv.Running() > 0 {
		if time.Now().After(deadline) {
			t.Errorf("server: %d connections and %d commands still there after the session", e.srv.Live(), e.srv.Running())
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processAlive: pid exists and is no zombie (an orphan is reaped by
// whatever PID 1 is, perhaps late).
func processAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

func cmdlineOf(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '}))
}

// TestRunSession: start, ready, frontend and teardown. Run returns the
// frontend's exit code; the session used one SSH connection; the kernel
// received shutdown_request and exited by itself (its atexit ran, its
// SIGTERM handler did not) while its remote files were still there and
// the connection was up; the remote files were gone before the SSH
// connection closed; and nothing is left on either side.
func TestRunSession(t *testing.T) {
	e := newRunEnv(t)
	marker := filepath.Join(e.dir, "kernel-exit")
	atClose := e.watchRemoteDirAtClose()

	s := e.start(e.profile(frontendSpec{Code1: exitNoteCell(e, marker), Wait: true, Exit: 3}))
	rep := s.report("KQUNIT1", 90*time.Second)
	s.waitStderr("kq: ready in ", time.Second)
	k := e.kernelFiles()
	e.checkLiveSession(rep, k)
	s.proceed()

	res, err := s.wait(60 * time.Second)
	if err != nil {
		t.Fatalf("Run: %v\nstderr:\n%s", err, s.stderr)
	}
	if !res.FrontendRan || res.ExitCode != 3 {
		t.Errorf("Run = %+v, want the frontend's exit code 3", res)
	}
	e.assertClean([]int{k.pid, k.watchdog}, rep.Ports)
	if n := e.srv.Accepted(); n != 1 {
		t.Errorf("the session made %d SSH connections, want one", n)
	}
	e.checkTeardownOrder(marker, atClose)
}

// exitNoteCell is a first cell that makes the kernel report how it ends:
// atexit runs on a clean exit (shutdown_request), the SIGTERM handler on a
// signal. Each note also counts the remote .kq files and the local
// connection files still there at that moment, so the test can tell whether
// kq removed them before or after the kernel was gone.
func exitNoteCell(e *runEnv, marker string) string {
	return fmt.Sprintf(`
import atexit, glob, os, signal, time
def _note(what):
    with open(%[1]q, "a") as f:
        f.write("%%s %%d meta=%%d local=%%d\n" %% (what, time.time_ns(),
            len(glob.glob(%[2]q)), len(glob.glob(%[3]q))))
atexit.register(_note, "atexit")
signal.signal(signal.SIGTERM, lambda *a: (_note("SIGTERM"), os._exit(143)))
print(os.getpid())
`, marker, filepath.Join(e.remoteRT, "kernel-kq-*.kq"), filepath.Join(e.localRT, "*.json"))
}

// watchRemoteDirAtClose records what is left in the remote runtime dir as
// each SSH connection ends; only the server sees that instant, so the
// listing must be taken in its callback. The returned function gives the
// listings so far, one per closed connection.
func (e *runEnv) watchRemoteDirAtClose() func() [][]string {
	var mu sync.Mutex
	var atClose [][]string
	e.srv.SetOnClose(func() {
		entries, _ := os.ReadDir(e.remoteRT)
		var names []string
		for _, en := range entries {
			names = append(names, en.Name())
		}
		mu.Lock()
		atClose = append(atClose, names)
		mu.Unlock()
	})
	return func() [][]string {
		mu.Lock()
		defer mu.Unlock()
		return atClose
	}
}

// checkLiveSession holds a running session to what the frontend must be
// given: its cell runs in the remote kernel, and a private connection file in
// the local runtime dir, with the remote watchdog on guard meanwhile.
func (e *runEnv) checkLiveSession(rep frontendReport, k remoteKernel) {
	t := e.t
	t.Helper()
	cellPID, _ := strconv.Atoi(strings.TrimSpace(rep.Out))
	if cellPID != k.pid {
		t.Errorf("the cell ran in pid %d, the remote .kq file says %d (cell output %q)", cellPID, k.pid, rep.Out)
	}
	if filepath.Dir(rep.File) != e.localRT {
		t.Errorf("local connection file %s not in JUPYTER_RUNTIME_DIR %s", rep.File, e.localRT)
	}
	if st, err := os.Stat(rep.File); err != nil {
		t.Errorf("local connection file: %v", err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("local connection file mode %04o, want 0600", st.Mode().Perm())
	}
	if !processAlive(k.watchdog) {
		t.Errorf("remote watchdog %d not running during the session", k.watchdog)
	}
}

// checkTeardownOrder checks the order of the teardown, as the kernel (its
// exit note in marker) and the server (its events, and atClose's listings of
// the remote runtime dir as each connection ended) saw it: the kernel exits by itself
// on shutdown_request with its remote files still in place, and only then
// does the one SSH connection close, leaving the remote runtime dir empty.
func (e *runEnv) checkTeardownOrder(marker string, atClose func() [][]string) {
	t := e.t
	t.Helper()
	data, err := os.ReadFile(marker)
	runMust(t, err)
	t.Logf("kernel exit notes: %s", strings.TrimSpace(string(data)))
	var atexitNS int64
	var metaAtExit, localAtExit int
	if n, _ := fmt.Sscanf(string(data), "atexit %d meta=%d local=%d", &atexitNS, &metaAtExit, &localAtExit); n != 3 {
		t.Fatalf("the kernel did not exit by itself after shutdown_request (want only an atexit note):\n%s", data)
	}
	if strings.Contains(string(data), "SIGTERM") {
		t.Errorf("the kernel was signalled, not shut down by shutdown_request:\n%s", data)
	}
	if metaAtExit != 1 {
		t.Errorf("the kernel's remote files were removed before it exited (kernel-kq-*.kq files at exit: %d)", metaAtExit)
	}
	t.Logf("local connection files when the kernel exited: %d", localAtExit)
	var closedAt time.Time
	for _, ev := range e.srv.Events() {
		if ev.what == "conn closed" {
			closedAt = ev.at
		}
	}
	if exitAt := time.Unix(0, atexitNS); closedAt.IsZero() {
		t.Errorf("the server recorded no end of the SSH connection")
	} else if !closedAt.After(exitAt) {
		t.Errorf("the SSH connection closed (%s) before the kernel exited (%s)", closedAt.Format(time.StampMicro), exitAt.Format(time.StampMicro))
	}
	if dirs := atClose(); len(dirs) != 1 || len(dirs[0]) != 0 {
		t.Errorf("remote runtime dir when the SSH connection closed: %v, want it empty", dirs)
	}
}

// TestRunReconnect: the server drops every connection while the frontend
// runs; kq says it reconnected, the frontend's second cell sees the state
// its first cell set, in the same kernel process, through the same local
// ports; the session ends normally and cleans up.
func TestRunReconnect(t *testing.T) {
	e := newRunEnv(t)
	p := e.profile(frontendSpec{
		Code1: "import os\nx = 41\nprint(os.getpid())",
		Code2: "print(x + 1, os.getpid())",
		Wait:  true,
	})
	p.Keepalive, p.KeepaliveCount = 300*time.Millisecond, 2
	s := e.start(p)
	rep := s.report("KQUNIT1", 90*time.Second)
	k := e.kernelFiles()
	before, err := os.ReadFile(rep.File)
	runMust(t, err)

	t0 := time.Now()
	if n := e.srv.DropAll(); n != 1 {
		t.Errorf("dropped %d connections, want the session's one", n)
	}
	s.waitStderr("kq: reconnected to kqunit in ", 20*time.Second)
	t.Logf("reconnected %s after the drop", time.Since(t0).Round(time.Millisecond))
	if !strings.Contains(s.stderr.String(), "kq: connection to kqunit lost") {
		t.Errorf("stderr does not say the connection was lost:\n%s", s.stderr)
	}
	s.proceed()
	rep2 := s.report("KQUNIT2", 60*time.Second)
	if want := fmt.Sprintf("42 %d\n", k.pid); rep2.Out != want {
		t.Errorf("second cell printed %q, want %q (state and process kept)", rep2.Out, want)
	}
	after, err := os.ReadFile(rep.File)
	runMust(t, err)
	if !bytes.Equal(before, after) {
		t.Errorf("local connection file changed across the reconnect:\n%s\n%s", before, after)
	}

	res, err := s.wait(60 * time.Second)
	if err != nil {
		t.Fatalf("Run: %v\nstderr:\n%s", err, s.stderr)
	}
	if !res.FrontendRan || res.ExitCode != 0 {
		t.Errorf("Run = %+v, want exit 0", res)
	}
	if n := e.srv.Accepted(); n < 2 {
		t.Errorf("server accepted %d connections, want a second one", n)
	}
	e.assertClean([]int{k.pid, k.watchdog}, rep.Ports)
}

// TestRunKernelDeath: the kernel killed on the server while the frontend
// waits ends the session within seconds with ErrKernel; the frontend is
// stopped and everything is removed.
func TestRunKernelDeath(t *testing.T) {
	e := newRunEnv(t)
	s := e.start(e.profile(frontendSpec{Code1: "import os; print(os.getpid())", Wait: true}))
	rep := s.report("KQUNIT1", 90*time.Second)
	k := e.kernelFiles()
	if !processAlive(k.pid) || !strings.Contains(cmdlineOf(k.pid), "ipykernel_launcher") {
		t.Fatalf("pid %d from the .kq file is not the kernel: %q", k.pid, cmdlineOf(k.pid))
	}
	t0 := time.Now()
	runMust(t, syscall.Kill(k.pid, syscall.SIGKILL)) // the kernel this test started, by its pid

	_, err := s.wait(15 * time.Second)
	t.Logf("Run returned %s after the kill", time.Since(t0).Round(time.Millisecond))
	if !errors.Is(err, launcher.ErrKernel) {
		t.Fatalf("Run: %v, want ErrKernel\nstderr:\n%s", err, s.stderr)
	}
	if !s.res.FrontendRan {
		t.Errorf("Run = %+v, want FrontendRan", s.res)
	}
	e.assertClean([]int{k.pid, k.watchdog}, rep.Ports)
}

// TestRunKernelFails: a kernel command that exits at once (python -S
// finds no ipykernel) fails the session with ErrKernel before the
// frontend; nothing is left on either side.
func TestRunKernelFails(t *testing.T) {
	e := newRunEnv(t)
	p := e.profile(frontendSpec{Code1: "print(1)"})
	p.Kernel = runPython + " -S -m ipykernel_launcher"
	s := e.start(p)
	res, err := s.wait(60 * time.Second)
	if !errors.Is(err, launcher.ErrKernel) {
		t.Fatalf("Run: %v, want ErrKernel\nstderr:\n%s", err, s.stderr)
	}
	if res.FrontendRan {
		t.Errorf("the frontend ran: %+v", res)
	}
	if strings.Contains(s.stdout.String(), "KQUNIT") {
		t.Errorf("frontend output:\n%s", s.stdout)
	}
	e.assertClean(nil, nil)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func runMust(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
