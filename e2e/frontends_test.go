package e2e

// Helpers for the tests that drive real frontends (Notebook in Chromium,
// qtconsole under Xvfb, jupyter console in tmux) as a person would.

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// artifactDir is where a test keeps its screenshots and logs: under
// $KQ_ARTIFACTS/TEST when that is set (so they outlive the run), else in a
// temporary dir.
func artifactDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv("KQ_ARTIFACTS")
	if root == "" {
		return t.TempDir()
	}
	dir := filepath.Join(root, strings.ReplaceAll(t.Name(), "/", "_"))
	must(t, os.RemoveAll(dir))
	must(t, os.MkdirAll(dir, 0o755))
	return dir
}

// kqKernelspec writes, in a private JUPYTER_PATH dir, the kernelspec
// "kqtest" that runs `kq kernel PROFILE -f {connection_file}` (what
// `kq kernelspec install` is to write), and returns that dir.
func (e *env) kqKernelspec(profile string) string {
	e.t.Helper()
	dir := filepath.Join(e.dir, "jupyter-path")
	spec := filepath.Join(dir, "kernels", "kqtest")
	must(e.t, os.MkdirAll(spec, 0o755))
	data, err := json.Marshal(map[string]any{
		"argv":           []string{kqBin, "--config", e.configFile, "kernel", profile, "-f", "{connection_file}"},
		"display_name":   profile + " (remote)",
		"language":       "python",
		"interrupt_mode": "signal",
	})
	must(e.t, err)
	must(e.t, os.WriteFile(filepath.Join(spec, "kernel.json"), data, 0o644))
	return dir
}

// remoteKernels returns the pids of the kernels kq started for this test:
// ipykernel processes whose -f file is in the profile's runtime_dir.
func (e *env) remoteKernels() []int {
	var out []int
	for _, pid := range sshdtest.ProcessesMatching(filepath.Join(e.remoteRT, "kernel-kq-")) {
		if strings.Contains(cmdline(pid), "ipykernel_launcher") {
			out = append(out, pid)
		}
	}
	return out
}

// kqKernelProcs returns the pids of this test's `kq ... kernel` processes.
func (e *env) kqKernelProcs() []int {
	var out []int
	for _, pid := range sshdtest.ProcessesMatching(kqBin) {
		if c := cmdline(pid); strings.Contains(c, e.configFile) && strings.Contains(c, " kernel ") {
			out = append(out, pid)
		}
	}
	return out
}

// waitRemoteKernels waits until exactly n remote kernels run (and, when
// not is given, none of them is one of those pids) and returns them.
func (e *env) waitRemoteKernels(t *testing.T, n int, timeout time.Duration, not ...int) []int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pids := e.remoteKernels()
		ok := len(pids) == n
		for _, p := range pids {
			for _, o := range not {
				if p == o {
					ok = false
				}
			}
		}
		if ok {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d remote kernels (none of %v) within %s, have %v; remote runtime dir: %v",
				n, not, timeout, pids, listKQFiles(e.remoteRT))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitNoKQKernel waits until no `kq kernel` process of this test is left.
func (e *env) waitNoKQKernel(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(e.kqKernelProcs()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("kq kernel processes still running after %s: %v", timeout, e.kqKernelProcs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// helperProc is a program a frontend test starts (a notebook server, a
// browser driver, Xvfb, tmux): in its own process group, its output in a
// log file, killed by its pid (and its group) when the test ends.
type helperProc struct {
	name  string
	cmd   *exec.Cmd
	log   string
	done  chan struct{}
	lines chan string // stdout lines, when started with startLines
	stdin io.WriteCloser
}

// startHelper starts cmd with its output in dir/NAME.log.
func startHelper(t *testing.T, name, dir string, cmd *exec.Cmd) *helperProc {
	t.Helper()
	h := &helperProc{name: name, cmd: cmd, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(h.log)
	must(t, err)
	if cmd.Stdout == nil {
		cmd.Stdout = f
	}
	cmd.Stderr = f
	h.start(t, f)
	return h
}

// startLines starts cmd with its stdout read line by line (and kept in
// the log with stderr) and a pipe to its stdin.
func startLines(t *testing.T, name, dir string, cmd *exec.Cmd) *helperProc {
	t.Helper()
	h := &helperProc{name: name, cmd: cmd, log: filepath.Join(dir, name+".log"), done: make(chan struct{}),
		lines: make(chan string, 1000)}
	f, err := os.Create(h.log)
	must(t, err)
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(f, pw)
	cmd.Stderr = f
	h.stdin, err = cmd.StdinPipe()
	must(t, err)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	h.start(t, f, pw)
	return h
}

func (h *helperProc) start(t *testing.T, closers ...io.Closer) {
	t.Helper()
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", h.name, err)
	}
	go func() {
		_ = h.cmd.Wait()
		for _, c := range closers {
			c.Close()
		}
		close(h.done)
	}()
	t.Cleanup(func() { h.stop(t, syscall.SIGKILL, 0) })
}

// stop sends sig to the helper's group and waits up to grace for it to
// exit, then kills the group.
func (h *helperProc) stop(t *testing.T, sig syscall.Signal, grace time.Duration) {
	select {
	case <-h.done:
		return
	default:
	}
	_ = syscall.Kill(-h.cmd.Process.Pid, sig)
	select {
	case <-h.done:
		return
	case <-time.After(grace):
	}
	if sig != syscall.SIGKILL {
		t.Logf("%s did not exit within %s of %v; killing it", h.name, grace, sig)
	}
	_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s (pid %d) did not die", h.name, h.cmd.Process.Pid)
	}
}

// wait waits for the helper to exit and returns its exit code.
func (h *helperProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-h.done:
		return h.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s; log %s:\n%s", h.name, timeout, h.log, h.logText())
		return -1
	}
}

func (h *helperProc) logText() string {
	b, _ := os.ReadFile(h.log)
	return string(b)
}

// killLeftovers kills, by pid, processes of this test that a helper's
// group might not hold (a browser that made its own session): those whose
// command line contains marker, a path unique to the test.
func killLeftovers(t *testing.T, marker string) {
	t.Helper()
	for _, pid := range sshdtest.ProcessesMatching(marker) {
		t.Logf("killing leftover process %d: %s", pid, cmdline(pid))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// freeLocalPort is a free TCP port on 127.0.0.1.
func freeLocalPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond every 100ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	must(t, err)
	return b
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// remoteFilesGoneAtExit is called when kq has just exited: the session is
// over, so the remote runtime dir must already be empty. When it is not,
// it says how long the files stayed (the server's watchdog removes them
// by itself within its 2s period).
func (e *env) remoteFilesGoneAtExit(t *testing.T) {
	t.Helper()
	left := listKQFiles(e.remoteRT)
	if len(left) == 0 {
		return
	}
	start := time.Now()
	for len(listKQFiles(e.remoteRT)) > 0 && time.Since(start) < 10*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("kq exited with the remote kernel's files still there: %v (gone %s later: %v)",
		left, time.Since(start).Round(10*time.Millisecond), len(listKQFiles(e.remoteRT)) == 0)
}

// checkOneKernelAfterRestart: after a frontend's restart has shown the new
// kernel at work, that kernel must still be the only remote one and a
// single kq kernel must serve it (no second kq left from before).
func (e *env) checkOneKernelAfterRestart(t *testing.T, second []int, timeout time.Duration) {
	t.Helper()
	if now := e.waitRemoteKernels(t, 1, timeout); now[0] != second[0] {
		t.Errorf("remote kernel %d after the restart, then %d", second[0], now[0])
	}
	if n := len(e.kqKernelProcs()); n != 1 {
		t.Errorf("%d kq kernel processes after the restart, want 1", n)
	}
}

// assertSessionGone is called when kq has just exited after its frontend
// ended: a session that ends well leaves no remote file, no remote
// kernel (those of every restart included) and no kq kernel process, and
// nothing in either runtime dir.
func (e *env) assertSessionGone(t *testing.T, kernels []int) {
	t.Helper()
	e.remoteFilesGoneAtExit(t)
	e.waitRemoteKernels(t, 0, 30*time.Second)
	e.waitNoKQKernel(t, 30*time.Second)
	e.assertClean(kernels, nil)
}
