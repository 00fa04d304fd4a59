// Package e2e runs the kq binary against a real OpenSSH sshd, real ipykernel
// kernels and real Jupyter clients as frontends, and checks after every run
// that nothing was left behind on either side.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	// The tests run a kq binary built in TestMain; importing its command
	// package makes go test's cache notice when kq's sources change.
	_ "github.com/kq-dev/kq/cmd"
	"github.com/kq-dev/kq/e2e/sshdtest"
)

// Jupyter from Debian's packages; `python3` on PATH may be another
// interpreter without Jupyter.
const (
	sysPython = "/usr/bin/python3"
	kernelCmd = sysPython + " -m ipykernel_launcher"
)

var kqBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kq-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kqBin = filepath.Join(dir, "kq")
	build := exec.Command("go", "build", "-o", kqBin, "../cmd/kq")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build kq:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// clientPy is the frontend of most tests: a real jupyter_client that runs
// KQ_TEST_CODE on the kernel and reports what it saw as one JSON line.
const clientPy = `
import json, os, stat, sys, time
from jupyter_client import BlockingKernelClient
cf = sys.argv[1]
mode = stat.S_IMODE(os.stat(cf).st_mode)
dmode = stat.S_IMODE(os.stat(os.path.dirname(cf)).st_mode)
info = json.load(open(cf))
kc = BlockingKernelClient(connection_file=cf)
kc.load_connection_file()
kc.start_channels()
kc.wait_for_ready(timeout=60)

def run(code, interrupt_after=None):
    msg_id = kc.execute(code)
    if interrupt_after is not None:
        time.sleep(interrupt_after)
        kc.control_channel.send(kc.session.msg("interrupt_request", {}))
    out = []
    deadline = time.time() + 120
    while time.time() < deadline:
        m = kc.get_iopub_msg(timeout=120)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "stream":
            out.append(m["content"]["text"])
        elif m["msg_type"] == "error":
            out.append("ERROR " + m["content"]["ename"])
        elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    return "".join(out)

code = os.environ.get("KQ_TEST_CODE", "import os; print(os.getpid())")
ia = os.environ.get("KQ_TEST_INTERRUPT_AFTER")
out = run(code, float(ia) if ia else None)
ports = [info[k] for k in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")]
print("KQTEST " + json.dumps({"file": cf, "mode": mode, "dirmode": dmode, "ip": info["ip"], "ports": ports,
      "key": info["key"], "out": out, "pid": os.getpid(), "argv": sys.argv[2:]}), flush=True)
def settle():
    # After a reconnect the SUB socket may subscribe again only after the
    # next cell has published (ZeroMQ's slow joiner): run no-op cells until
    # one is seen on IOPub, as a careful frontend would.
    from queue import Empty
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

code2 = os.environ.get("KQ_TEST_CODE2")
if code2:
    sys.stdin.readline()  # the test says when
    settle()
    print("KQTEST2 " + json.dumps({"out": run(code2)}), flush=True)
kc.stop_channels()
if os.environ.get("KQ_TEST_WAIT"):
    sys.stdin.read()
sys.exit(int(os.environ.get("KQ_TEST_EXIT", "0")))
`

// report is what clientPy printed.
type report struct {
	File    string   `json:"file"`
	Mode    int      `json:"mode"`
	DirMode int      `json:"dirmode"`
	IP      string   `json:"ip"`
	Ports   []int    `json:"ports"`
	Key     string   `json:"key"`
	Out     string   `json:"out"`
	PID     int      `json:"pid"`
	Argv    []string `json:"argv"`
}

// env is one test's world: an sshd, a config, and the directories kq may
// write to on each side.
type env struct {
	t          *testing.T
	srv        *sshdtest.Server
	dir        string
	remoteRT   string // the profile's runtime_dir ("remote" side)
	localRT    string // JUPYTER_RUNTIME_DIR for kq and its frontends
	client     string // path of clientPy
	sshConfig  string
	configFile string
	extraEnv   []string
}

// profile is a config profile for newEnv; fields map to YAML keys.
type profile map[string]any

func newEnv(t *testing.T, opts sshdtest.Options) *env {
	t.Helper()
	e := newBareEnv(t)
	e.srv = sshdtest.Start(t, opts)
	e.sshConfig = e.writeSSHConfig(e.srv.KnownHosts, e.srv.ClientKey)
	return e
}

// newBareEnv is newEnv without a loopback sshd, for tests that build
// their own hosts.
func newBareEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir,
		remoteRT: filepath.Join(dir, "remote-runtime"),
		localRT:  filepath.Join(dir, "local-runtime"),
		client:   filepath.Join(dir, "client.py"),
	}
	must(t, os.WriteFile(e.client, []byte(clientPy), 0o644))
	return e
}

// writeSSHConfig names the server "kqtest" with the given trust and key.
func (e *env) writeSSHConfig(knownHosts, key string) string {
	path := filepath.Join(e.dir, fmt.Sprintf("ssh_config-%d", time.Now().UnixNano()))
	cfg := fmt.Sprintf(`Host kqtest
  HostName %s
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
`, e.srv.Host, e.srv.Port, e.srv.User, key, knownHosts)
	must(e.t, os.WriteFile(path, []byte(cfg), 0o600))
	return path
}

// baseProfile runs clientPy against a loopback kernel in remoteRT.
func (e *env) baseProfile() profile {
	return e.profileFor("kqtest", e.sshConfig)
}

// profileFor runs clientPy against a kernel on host, in remoteRT, with the
// given ssh config; extra settings are added on top.
func (e *env) profileFor(host, sshConfig string, extra ...profile) profile {
	p := profile{
		"host":        host,
		"ssh_config":  sshConfig,
		"runtime_dir": e.remoteRT,
		"kernel":      kernelCmd,
		"frontend":    []string{sysPython, e.client, "{connection_file}"},
	}
	for _, x := range extra {
		for k, v := range x {
			p[k] = v
		}
	}
	return p
}

// writeConfig writes a config with the given profiles and returns its path.
func (e *env) writeConfig(profiles map[string]profile) string {
	data, err := json.Marshal(map[string]any{"profiles": profiles}) // JSON is YAML
	must(e.t, err)
	e.configFile = filepath.Join(e.dir, "config.yaml")
	must(e.t, os.WriteFile(e.configFile, data, 0o600))
	return e.configFile
}

// run is one kq process.
type run struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *lockedBuffer
	stderr *lockedBuffer
	done   chan struct{}
	code   int
	lines  chan string
}

// start runs kq with args; the config file is passed with --config.
func (e *env) start(args []string, extraEnv ...string) *run {
	e.t.Helper()
	full := append([]string{"--config", e.configFile}, args...)
	cmd := exec.Command(kqBin, full...)
	cmd.Env = append(cleanEnv(), "JUPYTER_RUNTIME_DIR="+e.localRT, "XDG_CACHE_HOME="+filepath.Join(e.dir, "cache"))
	cmd.Env = append(cmd.Env, e.extraEnv...)
	cmd.Env = append(cmd.Env, extraEnv...)
	return startRun(e.t, cmd, 100)
}

// startRun starts cmd in its own process group with its stdout read line
// by line (lines beyond buffered ones are dropped, the text is kept) and a
// pipe to its stdin; the test's end kills the group if it still runs.
func startRun(t *testing.T, cmd *exec.Cmd, buffered int) *run {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r := &run{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{}), lines: make(chan string, buffered)}
	var err error
	r.stdin, err = cmd.StdinPipe()
	must(t, err)
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(r.stdout, pw)
	cmd.Stderr = r.stderr
	must(t, cmd.Start())
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			select {
			case r.lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		r.code = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.code = 128 + int(ws.Signal())
		}
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-r.done
		}
	})
	return r
}

// wait waits for kq to exit and returns its exit code.
func (r *run) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(timeout):
		t.Fatalf("kq did not exit within %s\nstdout:\n%s\nstderr:\n%s", timeout, r.stdout, r.stderr)
		return -1
	}
}

// waitLine waits for a stdout line with the prefix.
func (r *run) waitLine(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l := <-r.lines:
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-r.done:
			// drain what is buffered
			for {
				select {
				case l := <-r.lines:
					if strings.HasPrefix(l, prefix) {
						return l
					}
				default:
					t.Fatalf("kq exited (%d) before printing %q\nstdout:\n%s\nstderr:\n%s", r.code, prefix, r.stdout, r.stderr)
				}
			}
		case <-deadline:
			t.Fatalf("no %q line within %s\nstdout:\n%s\nstderr:\n%s", prefix, timeout, r.stdout, r.stderr)
		}
	}
}

// waitStderr waits until stderr contains s.
func (r *run) waitStderr(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(r.stderr.String(), s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("stderr never contained %q:\n%s", s, r.stderr)
}

func (r *run) report(t *testing.T) report {
	t.Helper()
	line := r.waitLine(t, "KQTEST ", 90*time.Second)
	var rep report
	must(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "KQTEST ")), &rep))
	return rep
}

// runToEnd runs kq to completion and returns its exit code.
func (e *env) runToEnd(args []string, extraEnv ...string) (*run, int) {
	e.t.Helper()
	r := e.start(args, extraEnv...)
	r.stdin.Close()
	return r, r.wait(e.t, 3*time.Minute)
}

// assertClean proves nothing is left: no kernel process, no listener on
// the forwarded ports, no connection file on either side.
func (e *env) assertClean(kernelPIDs []int, localPorts []int) {
	t := e.t
	t.Helper()
	for _, pid := range kernelPIDs {
		sshdtest.WaitGone(t, pid, 10*time.Second)
	}
	for _, p := range localPorts {
		if sshdtest.Listening(p) {
			t.Errorf("local port %d still listening", p)
		}
	}
	for _, d := range []string{e.remoteRT, e.localRT} {
		entries, _ := os.ReadDir(d)
		for _, en := range entries {
			t.Errorf("left behind: %s", filepath.Join(d, en.Name()))
		}
	}
	if pids := sshdtest.ProcessesMatching("kernel-kq-"); len(pids) > 0 {
		for _, pid := range pids {
			if strings.Contains(cmdline(pid), e.dir) {
				t.Errorf("process %d still running: %s", pid, cmdline(pid))
			}
		}
	}
}

// mostlyWaiting marks a test that spends most of its time waiting (for a
// cut link to be noticed, for linger, for a Slurm time limit) and runs in
// namespaces, sshd and files of its own: such tests run in parallel, after
// all the others (scripts/test passes -parallel 4, whatever the core count).
func mostlyWaiting(t *testing.T) {
	t.Helper()
	t.Parallel()
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

// cleanEnv is the test process's environment without anything that would
// make kq use the developer's agent, config or Jupyter dirs.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "SSH_AUTH_SOCK" || strings.HasPrefix(k, "KQ_") || strings.HasPrefix(k, "JUPYTER_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// contextFor bounds one helper command.
func contextFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
