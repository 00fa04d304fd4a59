package e2e

import (
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// Kernel mode (`kq kernel PROFILE -f FILE`) as Jupyter's own managers use it:
// jupyter_client's KernelManager, the conformance suite, nbconvert and
// nbclient through a kernelspec, and a launcher that behaves as VS Code's.
// The Jupyter side lives in testdata/kernelmode; it stops at checkpoints
// (KQSTEP lines) so that the test can look at both machines while nothing
// moves.

//go:embed testdata/kernelmode/kqhelper.py
var kqHelperPy string

//go:embed testdata/kernelmode/test_kqconformance.py
var conformancePy string

// kernelEnv is an env with kernelspecs that run `kq kernel p -f FILE`.
type kernelEnv struct {
	*env
	jupyterPath string // JUPYTER_PATH: kernels/NAME/kernel.json
	pyDir       string // the helper scripts
	// remoteListening says a remote kernel port accepts connections where
	// the host sees it; default: on this machine's loopback.
	remoteListening func(port int) bool
}

// newKernelEnv writes the profile "p" (baseProfile with extra on top) and
// two kernelspecs for it: kqtest (interrupt_mode signal) and kqtestmsg
// (interrupt_mode message).
func newKernelEnv(t *testing.T, extra profile) *kernelEnv {
	t.Helper()
	base := newEnv(t, sshdtest.Options{})
	p := base.baseProfile()
	for k, v := range extra {
		p[k] = v
	}
	return kernelEnvFor(t, base, p)
}

// kernelEnvFor is newKernelEnv on env base with profile p as "p".
func kernelEnvFor(t *testing.T, base *env, p profile) *kernelEnv {
	t.Helper()
	e := &kernelEnv{env: base, remoteListening: sshdtest.Listening}
	delete(p, "frontend")
	e.writeConfig(map[string]profile{"p": p})
	e.jupyterPath = filepath.Join(e.dir, "jupyter")
	e.writeKernelSpec("kqtest", "signal")
	e.writeKernelSpec("kqtestmsg", "message")
	e.pyDir = filepath.Join(e.dir, "py")
	must(t, os.MkdirAll(e.pyDir, 0o755))
	must(t, os.WriteFile(filepath.Join(e.pyDir, "kqhelper.py"), []byte(kqHelperPy), 0o644))
	must(t, os.WriteFile(filepath.Join(e.pyDir, "test_kqconformance.py"), []byte(conformancePy), 0o644))
	// Whatever the Jupyter side started and left (a kq, through a
	// kernelspec) is this test's: end it by pid.
	t.Cleanup(func() {
		for _, pid := range e.kqProcesses() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return e
}

// writeKernelSpec is the kernelspec `kq kernelspec install` would write.
func (e *kernelEnv) writeKernelSpec(name, interruptMode string) {
	dir := filepath.Join(e.jupyterPath, "kernels", name)
	must(e.t, os.MkdirAll(dir, 0o755))
	spec, err := json.Marshal(map[string]any{
		"argv":           []string{kqBin, "--config", e.configFile, "kernel", "p", "-f", "{connection_file}"},
		"display_name":   "p (remote)",
		"language":       "python",
		"interrupt_mode": interruptMode,
	})
	must(e.t, err)
	must(e.t, os.WriteFile(filepath.Join(dir, "kernel.json"), spec, 0o644))
}

// jupyterEnv is the environment of the Jupyter side: only this test's
// kernelspecs, runtime dir and config.
func (e *kernelEnv) jupyterEnv(extra ...string) []string {
	env := append(cleanEnv(),
		"JUPYTER_PATH="+e.jupyterPath,
		"JUPYTER_RUNTIME_DIR="+e.localRT,
		"JUPYTER_DATA_DIR="+filepath.Join(e.dir, "jupyter-data"),
		"JUPYTER_CONFIG_DIR="+filepath.Join(e.dir, "jupyter-config"),
		"JUPYTER_PLATFORM_DIRS=1",
		"PYTHONDONTWRITEBYTECODE=1",
	)
	return append(env, extra...)
}

// startJupyter runs a program of the Jupyter side (in pyDir, in its own
// process group) with its stdout read line by line.
func (e *kernelEnv) startJupyter(name string, args []string, extraEnv ...string) *run {
	e.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = e.pyDir
	cmd.Env = e.jupyterEnv(extraEnv...)
	return startRun(e.t, cmd, 1000)
}

// helper runs kqhelper.py with the scenario's arguments.
func (e *kernelEnv) helper(args []string, extraEnv ...string) *run {
	return e.startJupyter(sysPython, append([]string{"kqhelper.py"}, args...), extraEnv...)
}

// stepData is what a KQSTEP or KQDONE line carries (the union of all
// scenarios' fields).
type stepData struct {
	File          string     `json:"file"`
	Ports         []int      `json:"ports"`
	OldPorts      []int      `json:"old_ports"`
	Secs          float64    `json:"secs"`
	KQPID         int        `json:"kq_pid"`
	PID           int        `json:"pid"`
	InterruptMode string     `json:"interrupt_mode"`
	Status        string     `json:"status"`
	Out           string     `json:"out"`
	Ename         string     `json:"ename"`
	Errors        []string   `json:"errors"`
	KQAlive       bool       `json:"kq_alive"`
	After         string     `json:"after"`
	AfterStatus   string     `json:"after_status"`
	AfterErrors   []string   `json:"after_errors"`
	Fresh         bool       `json:"fresh"`
	StopCode      any        `json:"stop_code"`
	StopSecs      float64    `json:"stop_secs"`
	FileLeft      bool       `json:"file_left"`
	Cells         [][]string `json:"cells"`
}

// step waits for the helper's checkpoint name; the helper waits until
// resume.
func (r *run) step(t *testing.T, name string, timeout time.Duration) stepData {
	t.Helper()
	line := r.waitLine(t, "KQSTEP "+name+" ", timeout)
	var d stepData
	must(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "KQSTEP "+name+" ")), &d))
	t.Logf("step %s: %s", name, strings.TrimPrefix(line, "KQSTEP "+name+" "))
	return d
}

func (r *run) resume(t *testing.T) {
	t.Helper()
	_, err := io.WriteString(r.stdin, "\n")
	must(t, err)
}

// finish waits for the helper's KQDONE line and its exit 0.
func (r *run) finish(t *testing.T, timeout time.Duration) stepData {
	t.Helper()
	line := r.waitLine(t, "KQDONE ", timeout)
	var d stepData
	must(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "KQDONE ")), &d))
	t.Logf("done: %s", strings.TrimPrefix(line, "KQDONE "))
	if code := r.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("helper exit %d\nstderr:\n%s", code, r.stderr)
	}
	return d
}

var remoteIDRe = regexp.MustCompile(`kernel-kq-(\S+?)\.(?:json|cmd|kq|log)\b`)

// remoteKernels maps the id of every remote kernel of this test that has a
// live process to those processes.
func (e *kernelEnv) remoteKernels() map[string][]int {
	out := map[string][]int{}
	for _, pid := range sshdtest.ProcessesMatching(filepath.Join(e.remoteRT, "kernel-kq-")) {
		if m := remoteIDRe.FindStringSubmatch(cmdline(pid)); m != nil {
			out[m[1]] = append(out[m[1]], pid)
		}
	}
	return out
}

// remoteFiles are the remote kernels' connection files.
func (e *kernelEnv) remoteFiles() []string {
	m, _ := filepath.Glob(filepath.Join(e.remoteRT, "kernel-kq-*.json"))
	return m
}

// kqProcesses are the live `kq` processes of this test (its config file
// is on their command lines and nowhere else).
func (e *kernelEnv) kqProcesses() []int {
	var out []int
	for _, pid := range sshdtest.ProcessesMatching(e.configFile) {
		if strings.HasPrefix(cmdline(pid), kqBin+" ") {
			out = append(out, pid)
		}
	}
	return out
}

// waitRemoteKernels waits until exactly n remote kernels run and n remote
// connection files exist, and returns the kernels.
func (e *kernelEnv) waitRemoteKernels(t *testing.T, n int, timeout time.Duration) map[string][]int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		k, f := e.remoteKernels(), e.remoteFiles()
		if len(k) == n && len(f) == n {
			return k
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d remote kernel(s) within %s; processes %v, files %q", n, timeout, k, f)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// onlyKernel is the one remote kernel's id and pids.
func onlyKernel(k map[string][]int) (string, []int) {
	for id, pids := range k {
		return id, pids
	}
	return "", nil
}

// remoteConn reads the one remote kernel's connection file.
func (e *kernelEnv) remoteConn(t *testing.T) map[string]any {
	t.Helper()
	f := e.remoteFiles()
	if len(f) != 1 {
		t.Fatalf("remote connection files: %q", f)
	}
	b, err := os.ReadFile(f[0])
	must(t, err)
	var info map[string]any
	must(t, json.Unmarshal(b, &info))
	return info
}

func connPorts(info map[string]any) []int {
	var out []int
	for _, k := range []string{"shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"} {
		f, _ := info[k].(float64)
		out = append(out, int(f))
	}
	return out
}

// checkPorts: kq listens on the manager's ports on this machine, the
// remote kernel listens on other ports it chose itself, and it shares the
// manager's key and signature scheme. On loopback, the "remote" host
// already uses the local port numbers (kq holds them), so a kernel that
// tried to take the manager's ports could not start at all.
func (e *kernelEnv) checkPorts(t *testing.T, local map[string]any) (remotePorts []int) {
	t.Helper()
	remote := e.remoteConn(t)
	lp, rp := connPorts(local), connPorts(remote)
	for _, p := range rp {
		if slices.Contains(lp, p) {
			t.Errorf("remote port %d is one of the manager's local ports %v", p, lp)
		}
		if !e.remoteListening(p) {
			t.Errorf("remote kernel not listening on its port %d", p)
		}
	}
	for _, p := range lp {
		if !sshdtest.Listening(p) {
			t.Errorf("nothing listens on the manager's port %d", p)
		}
	}
	for _, k := range []string{"key", "signature_scheme"} {
		if remote[k] != local[k] {
			t.Errorf("remote %s differs from the manager's", k)
		}
	}
	t.Logf("local ports %v, remote ports %v", lp, rp)
	return rp
}

func readConn(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	var info map[string]any
	must(t, json.Unmarshal(b, &info))
	return info
}

// checkKeyHidden: the key is on no command line on either machine.
func checkKeyHidden(t *testing.T, key string) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), key) {
			t.Errorf("key on a command line: %s: %q", f, b)
		}
	}
}

// sampler counts the remote kernels every 50ms while a scenario runs.
type sampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	max  int
	seen []string
}

func (e *kernelEnv) sampleKernels() *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			k := e.remoteKernels()
			s.mu.Lock()
			if len(k) > s.max {
				s.max = len(k)
				s.seen = nil
				for id, pids := range k {
					s.seen = append(s.seen, fmt.Sprintf("%s%v", id, pids))
				}
				sort.Strings(s.seen)
			}
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return s
}

// result stops the sampler: the most remote kernels seen at once, and
// which.
func (s *sampler) result() (int, []string) {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max, s.seen
}

// assertKernelModeClean: no kq, no remote kernel (pids, processes, files),
// no listener on either side's ports, no file on either side.
func (e *kernelEnv) assertKernelModeClean(t *testing.T, kernelPIDs, localPorts, remotePorts []int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	left := func() []string { m, _ := filepath.Glob(filepath.Join(e.remoteRT, "*")); return m }
	for len(e.kqProcesses()) > 0 || len(e.remoteKernels()) > 0 || len(left()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still there after 10s: kq %v, remote kernels %v, remote files %q", e.kqProcesses(), e.remoteKernels(), left())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if waited := 10*time.Second - time.Until(deadline); waited > 100*time.Millisecond {
		t.Logf("kq, the remote kernel and its files were gone %s after the scenario ended", waited.Round(10*time.Millisecond))
	}
	for _, p := range remotePorts {
		if e.remoteListening(p) {
			t.Errorf("remote port %d still listening", p)
		}
	}
	e.assertClean(kernelPIDs, localPorts)
}

// kernelPIDOf is the pid a cell printed as its first word.
func kernelPIDOf(t *testing.T, out string) int {
	t.Helper()
	f := strings.Fields(out)
	if len(f) == 0 {
		t.Fatalf("no pid in %q", out)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatalf("no pid in %q", out)
	}
	return pid
}

// TestKernelModeManager: jupyter_client's KernelManager starts the
// kernelspec; a cell runs; Jupyter's interrupt ends a time.sleep(60) within
// seconds and keeps the state and kq; restart_kernel() and
// restart_kernel(now=True) (SIGKILL to kq's process group, then a new kq on
// the same file) each leave exactly one remote kernel, a new one, with a
// fresh namespace; shutdown_kernel() ends well before the manager's
// SIGTERM stage. The remote kernel listens on ports of its own, not the
// manager's, which kq holds. With interrupt_mode "message", the
// interrupt_request travels to the kernel instead.
func TestKernelModeManager(t *testing.T) {
	t.Run("signal", func(t *testing.T) { testKernelManager(t, "kqtest", true) })
	t.Run("message", func(t *testing.T) { testKernelManager(t, "kqtestmsg", false) })
}

func testKernelManager(t *testing.T, spec string, full bool) {
	e := newKernelEnv(t, nil)
	env := []string{"KQ_KERNEL_NAME=" + spec}
	if !full {
		env = append(env, "KQ_KM_SHORT=1")
	}
	r := e.helper([]string{"km"}, env...)
	s := e.sampleKernels()

	st, id0, remotePorts := e.kmStarted(t, r)
	pid0 := e.kmExecuted(t, r)
	e.kmInterrupted(t, r, st, id0)

	pids := []int{pid0}
	ports := append([]int(nil), st.Ports...)
	if full {
		restartPIDs, restartPorts := e.kmRestarts(t, r, st, id0, pid0)
		pids = append(pids, restartPIDs...)
		remotePorts = append(remotePorts, restartPorts...)
	}

	e.kmShutdown(t, r, s)
	e.assertKernelModeClean(t, pids, ports, remotePorts)
}

// kmStarted checks the manager's first start while the helper waits: kq
// must own the manager's file and ports and have started exactly one
// remote kernel on ports of its own, with the key on no command line.
// The remote kernel's id and ports are what later phases compare against.
func (e *kernelEnv) kmStarted(t *testing.T, r *run) (st stepData, id0 string, remotePorts []int) {
	st = r.step(t, "started", 90*time.Second)
	if filepath.Dir(st.File) != e.localRT {
		t.Errorf("manager's file %s not in %s", st.File, e.localRT)
	}
	kernels := e.waitRemoteKernels(t, 1, 10*time.Second)
	id0, _ = onlyKernel(kernels)
	local := readConn(t, st.File)
	remotePorts = e.checkPorts(t, local)
	checkKeyHidden(t, local["key"].(string))
	if kq := e.kqProcesses(); !slices.Equal(kq, []int{st.KQPID}) {
		t.Errorf("kq processes %v, want the manager's %d", kq, st.KQPID)
	}
	r.resume(t)
	return st, id0, remotePorts
}

// kmExecuted checks that the first cell ran in the remote kernel, not in
// some local Python, and returns that kernel's pid for the later checks.
func (e *kernelEnv) kmExecuted(t *testing.T, r *run) int {
	ex := r.step(t, "executed", 60*time.Second)
	pid0 := kernelPIDOf(t, ex.Out)
	if _, pids := onlyKernel(e.remoteKernels()); !slices.Contains(pids, pid0) {
		t.Errorf("the cell ran in %d, not in the remote kernel %v", pid0, pids)
	}
	r.resume(t)
	return pid0
}

// kmInterrupted checks Jupyter's interrupt of a time.sleep(60): it must
// end the cell within seconds as a KeyboardInterrupt while the same kq,
// the same remote kernel and its state (42) live on.
func (e *kernelEnv) kmInterrupted(t *testing.T, r *run, st stepData, id0 string) {
	in := r.step(t, "interrupted", 60*time.Second)
	if in.Ename != "KeyboardInterrupt" || in.Status != "error" || strings.Contains(in.Out, "slept") {
		t.Errorf("interrupt: reply %s %q, output %q; want KeyboardInterrupt", in.Status, in.Ename, in.Out)
	}
	if in.Secs > 5 {
		t.Errorf("the interrupt took %.1fs", in.Secs)
	}
	if !in.KQAlive || in.KQPID != st.KQPID || in.After != "42" {
		t.Errorf("after the interrupt: kq alive %v (pid %d, was %d), state %q (reply %s, errors %q); want the same kq and 42",
			in.KQAlive, in.KQPID, st.KQPID, in.After, in.AfterStatus, in.AfterErrors)
	}
	if id, _ := onlyKernel(e.waitRemoteKernels(t, 1, 5*time.Second)); id != id0 {
		t.Errorf("the interrupt replaced remote kernel %s with %s", id0, id)
	}
	r.resume(t)
}

// kmRestarts checks restart_kernel() and restart_kernel(now=True) in
// turn: each must replace both kq and the remote kernel by exactly one new
// pair with a fresh namespace, on the manager's unchanged file and ports.
// It returns the new kernels' pids and remote ports, which must all be
// gone at the end.
func (e *kernelEnv) kmRestarts(t *testing.T, r *run, st stepData, id0 string, pid0 int) (pids, remotePorts []int) {
	prevID, prevPID, prevKQ := id0, pid0, st.KQPID
	for _, name := range []string{"restarted", "restarted_now"} {
		rs := r.step(t, name, 90*time.Second)
		k := e.waitRemoteKernels(t, 1, 10*time.Second)
		id, kpids := onlyKernel(k)
		if id == prevID || rs.PID == prevPID || !slices.Contains(kpids, rs.PID) {
			t.Errorf("%s: remote kernel %s %v ran the cell in %d; before: %s %d", name, id, kpids, rs.PID, prevID, prevPID)
		}
		if !rs.Fresh {
			t.Errorf("%s: the namespace survived the restart", name)
		}
		if sshdtest.ProcessAlive(prevPID) || sshdtest.ProcessAlive(prevKQ) {
			t.Errorf("%s: the old kernel %d or kq %d still runs", name, prevPID, prevKQ)
		}
		if kq := e.kqProcesses(); !slices.Equal(kq, []int{rs.KQPID}) {
			t.Errorf("%s: kq processes %v, want the manager's %d", name, kq, rs.KQPID)
		}
		if !slices.Equal(rs.Ports, st.Ports) || rs.File != st.File {
			t.Errorf("%s: the manager changed its file or ports (%s %v)", name, rs.File, rs.Ports)
		}
		remotePorts = append(remotePorts, e.checkPorts(t, readConn(t, rs.File))...)
		t.Logf("%s in %.1fs", name, rs.Secs)
		prevID, prevPID, prevKQ = id, rs.PID, rs.KQPID
		pids = append(pids, rs.PID)
		r.resume(t)
	}
	return pids, remotePorts
}

// kmShutdown checks shutdown_kernel(): kq must end on the shutdown_request
// itself, before the manager escalates to SIGTERM, take the manager's
// file with it and report no error; it also stops the sampler, which
// tells how many remote kernels ever ran at once.
func (e *kernelEnv) kmShutdown(t *testing.T, r *run, s *sampler) {
	d := r.finish(t, 60*time.Second)
	if d.Secs >= 2.5 || !strings.HasSuffix(d.Status, ".ShutdownRequest") {
		t.Errorf("shutdown_kernel took %.2fs and ended as %s; want kq gone after the shutdown_request, before the manager's SIGTERM at %.1fs",
			d.Secs, d.Status, 2.5)
	}
	if d.FileLeft {
		t.Errorf("the manager's connection file is left")
	}
	if strings.Contains(r.stderr.String(), "kq: error:") {
		// A kernel that ends on the manager's shutdown_request (at a
		// restart or at the end) is kq kernel's normal end, not an error.
		t.Errorf("kq reported an error in a scenario without one:\n%s", r.stderr)
	}
	if n, seen := s.result(); n > 1 {
		t.Logf("at most %d remote kernels at once: %v", n, seen)
	}
}

// TestKernelModeConformance runs Jupyter's kernel conformance suite
// (jupyter_kernel_test, with ipykernel's samples) on the kernelspec.
func TestKernelModeConformance(t *testing.T) {
	e := newKernelEnv(t, nil)
	r := e.startJupyter(sysPython, []string{"-m", "unittest", "-v", "test_kqconformance"}, "KQ_KERNEL_NAME=kqtest")
	r.stdin.Close()
	code := r.wait(t, 5*time.Minute)
	out := r.stderr.String()
	t.Logf("unittest:\n%s", out)
	if code != 0 || !regexp.MustCompile(`(?m)^OK\b`).MatchString(out) {
		t.Fatalf("conformance suite: exit %d\n%s\n%s", code, r.stdout, out)
	}
	// Twelve tests; history's "range" subtest is skipped, as in
	// jupyter_kernel_test's own ipykernel test.
	if m := regexp.MustCompile(`(?m)^Ran (\d+) tests`).FindStringSubmatch(out); m == nil || m[1] != "12" {
		t.Errorf("want 12 tests run: %q", m)
	}
	if n := regexp.MustCompile(`(?m) \.\.\. ok$`).FindAllString(out, -1); len(n) != 11 {
		t.Errorf("%d tests passed, want 11 and test_history's subtests", len(n))
	}
	e.assertKernelModeClean(t, nil, nil, nil)
}

// notebook writes a notebook of code cells.
func notebook(t *testing.T, path string, cells ...string) {
	t.Helper()
	var cs []map[string]any
	for _, c := range cells {
		cs = append(cs, map[string]any{"cell_type": "code", "execution_count": nil, "metadata": map[string]any{},
			"outputs": []any{}, "source": c})
	}
	b, err := json.Marshal(map[string]any{"cells": cs, "nbformat": 4, "nbformat_minor": 5,
		"metadata": map[string]any{"kernelspec": map[string]any{"name": "python3", "display_name": "Python 3", "language": "python"}}})
	must(t, err)
	must(t, os.WriteFile(path, b, 0o644))
}

// TestKernelModeNotebook: `jupyter nbconvert --execute` runs a notebook on
// the kernelspec; nbclient with interrupt_on_timeout interrupts a cell that
// outlives its timeout, and the next cell runs on the same kernel.
func TestKernelModeNotebook(t *testing.T) {
	t.Run("nbconvert", func(t *testing.T) {
		e := newKernelEnv(t, nil)
		nb := filepath.Join(e.pyDir, "nb.ipynb")
		notebook(t, nb, "import os\nkq_answer = 6 * 7", "print('answer', kq_answer)", "print(os.getpid())")
		r := e.startJupyter("/usr/bin/jupyter", []string{"nbconvert", "--to", "notebook", "--execute",
			"--ExecutePreprocessor.kernel_name=kqtest", "--ExecutePreprocessor.timeout=60", "--output", "out", nb})
		r.stdin.Close()
		if code := r.wait(t, 3*time.Minute); code != 0 {
			t.Fatalf("nbconvert: exit %d\n%s", code, r.stderr)
		}
		var out struct {
			Cells []struct {
				Outputs []struct {
					Text any `json:"text"`
				} `json:"outputs"`
			} `json:"cells"`
		}
		b, err := os.ReadFile(filepath.Join(e.pyDir, "out.ipynb"))
		must(t, err)
		must(t, json.Unmarshal(b, &out))
		text := func(i int) string {
			var s strings.Builder
			for _, o := range out.Cells[i].Outputs {
				switch v := o.Text.(type) {
				case string:
					s.WriteString(v)
				case []any:
					for _, x := range v {
						s.WriteString(fmt.Sprint(x))
					}
				}
			}
			return strings.TrimSpace(s.String())
		}
		if len(out.Cells) != 3 || text(1) != "answer 42" {
			t.Fatalf("executed notebook: %s", b)
		}
		pid := kernelPIDOf(t, text(2))
		e.assertKernelModeClean(t, []int{pid}, nil, nil)
	})

	t.Run("nbclient-timeout", func(t *testing.T) {
		e := newKernelEnv(t, nil)
		nb := filepath.Join(e.pyDir, "slow.ipynb")
		notebook(t, nb, "import time\ntime.sleep(60)\nprint('slept')", "print('next cell ran')")
		r := e.helper([]string{"nbclient", nb})
		r.stdin.Close()
		d := r.finish(t, 3*time.Minute)
		if len(d.Cells) != 2 || !slices.Equal(d.Cells[0], []string{"ERROR KeyboardInterrupt"}) ||
			!slices.Equal(d.Cells[1], []string{"next cell ran"}) {
			t.Errorf("cells' outputs %q; want KeyboardInterrupt, then the next cell's output", d.Cells)
		}
		if d.Secs > 50 {
			t.Errorf("the notebook took %.1fs: the sleep was not interrupted", d.Secs)
		}
		e.assertKernelModeClean(t, nil, nil, nil)
	})
}

// TestKernelModeVSCode: a launcher that does what VS Code's Jupyter
// extension does (its own kernel-v3*.json with ports from 9000 up and its
// own key, the spec's argv, SIGINT to every process of kq's tree to
// interrupt, SIGTERM and a launch on new ports to restart). There is never
// more than one remote kernel, the interrupt keeps kq and the state, the
// restart gives a fresh kernel, and everything ends clean.
func TestKernelModeVSCode(t *testing.T) {
	e := newKernelEnv(t, nil)
	s := e.sampleKernels()
	r := e.helper([]string{"vscode"})

	l := r.step(t, "launched", 90*time.Second)
	if !strings.HasPrefix(filepath.Base(l.File), "kernel-v3") || l.Ports[0] < 9000 {
		t.Errorf("the launcher's file %s, ports %v", l.File, l.Ports)
	}
	id0, _ := onlyKernel(e.waitRemoteKernels(t, 1, 10*time.Second))
	local := readConn(t, l.File)
	remotePorts := e.checkPorts(t, local)
	checkKeyHidden(t, local["key"].(string))
	pid0 := kernelPIDOf(t, l.Out)
	r.resume(t)

	in := r.step(t, "interrupted", 60*time.Second)
	if in.Ename != "KeyboardInterrupt" || in.Secs > 5 || !in.KQAlive || in.After != "42" {
		t.Errorf("interrupt: %q in %.1fs, kq alive %v, state %q; want KeyboardInterrupt within seconds, kq alive, 42",
			in.Ename, in.Secs, in.KQAlive, in.After)
	}
	r.resume(t)

	rs := r.step(t, "restarted", 90*time.Second)
	if rs.StopSecs > 2.5 {
		t.Errorf("kq took %.1fs to exit on SIGTERM (exit %v)", rs.StopSecs, rs.StopCode)
	}
	for _, p := range rs.Ports {
		if slices.Contains(rs.OldPorts, p) {
			t.Errorf("new ports %v overlap the old %v", rs.Ports, rs.OldPorts)
		}
	}
	id1, kpids := onlyKernel(e.waitRemoteKernels(t, 1, 10*time.Second))
	if id1 == id0 || !slices.Contains(kpids, rs.PID) || !rs.Fresh {
		t.Errorf("after the restart: remote kernel %s (was %s) %v ran the cell in %d; fresh %v", id1, id0, kpids, rs.PID, rs.Fresh)
	}
	if sshdtest.ProcessAlive(pid0) || sshdtest.ProcessAlive(l.KQPID) {
		t.Errorf("the first kernel %d or kq %d still runs", pid0, l.KQPID)
	}
	remotePorts = append(remotePorts, e.checkPorts(t, readConn(t, rs.File))...)
	r.resume(t)

	d := r.finish(t, 60*time.Second)
	if d.StopSecs > 2.5 {
		t.Errorf("kq took %.1fs to exit on SIGTERM (exit %v)", d.StopSecs, d.StopCode)
	}
	if n, seen := s.result(); n > 1 {
		t.Errorf("%d remote kernels at once: %v", n, seen)
	}
	e.assertKernelModeClean(t, []int{pid0, rs.PID}, append(l.Ports, rs.Ports...), remotePorts)
}

// writeConnFile writes a connection file as a manager would: free ports
// on 127.0.0.1 and a new key.
func (e *kernelEnv) writeConnFile(t *testing.T) (string, []int) {
	t.Helper()
	names := []string{"shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"}
	info := map[string]any{"ip": "127.0.0.1", "transport": "tcp", "signature_scheme": "hmac-sha256", "kernel_name": "kqtest"}
	var ports []int
	var ls []net.Listener
	for _, n := range names {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		ls = append(ls, l)
		p := l.Addr().(*net.TCPAddr).Port
		info[n] = p
		ports = append(ports, p)
	}
	for _, l := range ls {
		l.Close()
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	info["key"] = hex.EncodeToString(key)
	must(t, os.MkdirAll(e.localRT, 0o700))
	path := filepath.Join(e.localRT, "kernel-"+hex.EncodeToString(key[:6])+".json")
	b, err := json.Marshal(info)
	must(t, err)
	must(t, os.WriteFile(path, b, 0o600))
	return path, ports
}

// ping runs one cell through the file and returns the kernel's pid.
func (e *kernelEnv) ping(t *testing.T, file string) int {
	t.Helper()
	r := e.helper([]string{"ping", file})
	r.stdin.Close()
	d := r.finish(t, 90*time.Second)
	if d.Status != "ok" {
		t.Fatalf("ping: %+v", d)
	}
	return kernelPIDOf(t, d.Out)
}

// TestKernelModeNoPrompt: with an encrypted key and no agent, `kq kernel`
// never asks for the passphrase, even with a terminal at hand: it exits
// non-zero within 10s with the reason on stderr, and nothing was started
// remotely.
func TestKernelModeNoPrompt(t *testing.T) {
	for _, terminal := range []bool{false, true} {
		t.Run(map[bool]string{false: "pipe", true: "terminal"}[terminal], func(t *testing.T) {
			e := &kernelEnv{env: newEnv(t, sshdtest.Options{})}
			p, _ := e.encryptedKeyProfile(t)
			delete(p, "frontend")
			e.writeConfig(map[string]profile{"p": p})
			file, ports := e.writeConnFile(t)
			args := []string{"kernel", "p", "-f", file}
			start := time.Now()
			var code int
			var stderr string
			if terminal {
				r := e.startPTY(args)
				select {
				case <-r.done:
				case <-time.After(10 * time.Second):
					t.Fatalf("kq kernel still runs after 10s:\n%s", r.output())
				}
				code, stderr = r.code, r.output()
			} else {
				r := e.start(args)
				r.stdin.Close()
				code = r.wait(t, 10*time.Second)
				stderr = r.stderr.String()
				if out := r.stdout.String(); out != "" {
					t.Errorf("stdout: %q", out)
				}
			}
			t.Logf("exit %d after %s:\n%s", code, time.Since(start).Round(time.Millisecond), stderr)
			if code == 0 {
				t.Errorf("exit 0")
			}
			if strings.Contains(stderr, "Enter passphrase") {
				t.Errorf("kq kernel asked for a passphrase")
			}
			errs := regexp.MustCompile(`(?m)^kq: error: .+$`).FindAllString(stderr, -1)
			if len(errs) != 1 {
				t.Errorf("want one kq: error: line with the reason, got %q", errs)
			}
			if _, err := os.Stat(e.remoteRT); err == nil {
				t.Errorf("something was started remotely: %v", listKQFiles(e.remoteRT))
			}
			for _, p := range ports {
				if sshdtest.Listening(p) {
					t.Errorf("port %d still listening", p)
				}
			}
			must(t, os.Remove(file))
			e.assertKernelModeClean(t, nil, ports, nil)
		})
	}
}

// TestKernelModeKilled: `kq kernel` killed with SIGKILL (no teardown): the
// remote kernel outlives it, then stops by itself once linger has passed,
// and its files go.
func TestKernelModeKilled(t *testing.T) {
	const linger = 4 * time.Second
	e := newKernelEnv(t, profile{"linger": linger.String()})
	file, ports := e.writeConnFile(t)
	r := e.start([]string{"kernel", "p", "-f=" + file})
	pid := e.ping(t, file)
	id, _ := onlyKernel(e.waitRemoteKernels(t, 1, 5*time.Second))
	remotePorts := connPorts(e.remoteConn(t))
	must(t, syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL))
	r.wait(t, 10*time.Second)
	killed := time.Now()
	time.Sleep(linger / 2)
	if !sshdtest.ProcessAlive(pid) {
		t.Fatalf("kernel stopped before linger (%s)", time.Since(killed))
	}
	sshdtest.WaitGone(t, pid, linger+10*time.Second)
	t.Logf("remote kernel %s stopped %s after kq was killed (linger %s)", id, time.Since(killed).Round(100*time.Millisecond), linger)
	waitNoFiles(t, e.remoteRT, 10*time.Second)
	must(t, os.Remove(file)) // the manager's, as the manager would
	e.assertKernelModeClean(t, []int{pid}, ports, remotePorts)
}

// TestKernelModeParentDies: when the process named by JPY_PARENT_PID (the
// manager that started kq) dies, kq stops the remote kernel and exits, as
// on SIGTERM. The file is given as --f="FILE", quotes included, as some
// launchers write it.
func TestKernelModeParentDies(t *testing.T) {
	e := newKernelEnv(t, nil)
	parent := exec.Command("/bin/sleep", "300")
	must(t, parent.Start())
	t.Cleanup(func() { _ = parent.Process.Kill(); _ = parent.Wait() })
	file, ports := e.writeConnFile(t)
	r := e.start([]string{"kernel", "p", `--f="` + file + `"`}, fmt.Sprintf("JPY_PARENT_PID=%d", parent.Process.Pid))
	pid := e.ping(t, file)
	remotePorts := connPorts(e.remoteConn(t))
	must(t, parent.Process.Kill())
	_ = parent.Wait()
	died := time.Now()
	code := r.wait(t, 10*time.Second)
	t.Logf("kq exited %d, %s after its parent died\n%s", code, time.Since(died).Round(10*time.Millisecond), r.stderr)
	if d := time.Since(died); d > 5*time.Second {
		t.Errorf("kq took %s to notice its parent's death", d)
	}
	sshdtest.WaitGone(t, pid, 5*time.Second)
	waitNoFiles(t, e.remoteRT, 5*time.Second)
	must(t, os.Remove(file))
	e.assertKernelModeClean(t, []int{pid}, ports, remotePorts)
}

// TestKernelModePortTaken: when one of the manager's ports is taken, kq
// fails at once naming it, before any SSH work: nothing starts remotely.
func TestKernelModePortTaken(t *testing.T) {
	e := newKernelEnv(t, nil)
	file, ports := e.writeConnFile(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports[3]))
	must(t, err)
	start := time.Now()
	r := e.start([]string{"kernel", "p", "-f", file})
	r.stdin.Close()
	code := r.wait(t, 10*time.Second)
	l.Close()
	t.Logf("exit %d after %s:\n%s", code, time.Since(start).Round(time.Millisecond), r.stderr)
	if code == 0 || !strings.Contains(r.stderr.String(), strconv.Itoa(ports[3])) {
		t.Errorf("exit %d; want non-zero and port %d named", code, ports[3])
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s to fail", d)
	}
	if _, err := os.Stat(e.remoteRT); err == nil {
		t.Errorf("something was started remotely: %v", listKQFiles(e.remoteRT))
	}
	must(t, os.Remove(file))
	e.assertKernelModeClean(t, nil, ports, nil)
}

// TestKernelModeKernelDies: the remote kernel killed on the server ends
// `kq kernel` within about a second, so that the manager sees its kernel
// die (by its process: jupyter_client's restarter does not look at the exit
// code, and kq kernel exits 0 as after a shutdown_request); nothing is left.
func TestKernelModeKernelDies(t *testing.T) {
	e := newKernelEnv(t, nil)
	file, ports := e.writeConnFile(t)
	r := e.start([]string{"kernel", "p", "--f=" + file})
	pid := e.ping(t, file)
	remotePorts := connPorts(e.remoteConn(t))
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	killed := time.Now()
	code := r.wait(t, 10*time.Second)
	d := time.Since(killed)
	t.Logf("kq exited %d, %s after the kernel was killed\n%s", code, d.Round(10*time.Millisecond), r.stderr)
	if d > 2*time.Second {
		t.Errorf("exit %d after %s; want kq gone within about a second", code, d)
	}
	if !strings.Contains(r.stderr.String(), "exited") {
		t.Errorf("stderr does not say the kernel exited:\n%s", r.stderr)
	}
	must(t, os.Remove(file))
	e.assertKernelModeClean(t, []int{pid}, ports, remotePorts)
}

// TestKernelModeTermDuringStart: the manager gives up on a kernel that is
// slow to start (SIGTERM while the remote side still waits for it): kq
// exits within 2 s, and the half-started kernel goes with it.
func TestKernelModeTermDuringStart(t *testing.T) {
	e := newKernelEnv(t, profile{"kernel": `sh -c 'sleep 6; exec ` + kernelCmd + ` "$@"' kernel`})
	file, ports := e.writeConnFile(t)
	r := e.start([]string{"kernel", "p", "-f", file})
	r.waitStderr(t, "connected to", 30*time.Second)
	time.Sleep(time.Second) // the remote start is under way
	must(t, r.cmd.Process.Signal(syscall.SIGTERM))
	sent := time.Now()
	code := r.wait(t, 10*time.Second)
	took := time.Since(sent)
	t.Logf("kq exited %d %s after SIGTERM\n%s", code, took.Round(10*time.Millisecond), r.stderr)
	if took > 2*time.Second+time.Second { // 2 s, with slack for a loaded machine
		t.Errorf("kq took %s to exit after SIGTERM during the start", took)
	}
	waitNoFiles(t, e.remoteRT, 10*time.Second)
	must(t, os.Remove(file))
	e.assertKernelModeClean(t, nil, ports, nil)
}
