package e2e

import (
	"encoding/json"
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

// handKernel starts a kernel on the server the way a user would by hand,
// with its connection file in the profile's runtime dir.
func (e *env) handKernel(t *testing.T, name string, args ...string) (pid int, file string) {
	t.Helper()
	must(t, os.MkdirAll(e.remoteRT, 0o700))
	file = filepath.Join(e.remoteRT, name)
	cmd := exec.Command(sysPython, append(append([]string{"-m", "ipykernel_launcher"}, args...), "-f", file)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.Remove(file)
	})
	go func() { _ = cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(file); err == nil && strings.HasSuffix(strings.TrimSpace(string(b)), "}") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("hand-started kernel wrote no connection file")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cmd.Process.Pid, file
}

type lsEntry struct {
	ID    string `json:"id"`
	File  string `json:"file"`
	KQ    bool   `json:"kq"`
	Alive bool   `json:"alive"`
	Held  bool   `json:"held"`
	Kept  bool   `json:"kept"`
	PID   int    `json:"pid"`
}

func (e *env) ls(t *testing.T) map[string]lsEntry {
	t.Helper()
	r, code := e.runToEnd([]string{"ls", "--json", "p"})
	if code != 0 {
		t.Fatalf("ls: exit %d\n%s", code, r.stderr)
	}
	var entries []lsEntry
	must(t, json.Unmarshal([]byte(r.stdout.String()), &entries))
	out := map[string]lsEntry{}
	for _, en := range entries {
		out[en.ID] = en
	}
	return out
}

// TestManageKernels: kq ls, attach and stop against a kernel kq started
// (run --detach) and one started by hand, including attaching with a
// pasted %connect_info JSON; an attached session never stops a kernel it
// did not start unless asked.
func TestManageKernels(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	handPID, handFile := e.handKernel(t, "kernel-byhand.json")

	r, code := e.runToEnd([]string{"run", "--detach", "p"})
	if code != 0 || !strings.Contains(r.stderr.String(), "attach with: kq attach p ") {
		t.Fatalf("run --detach: exit %d\n%s", code, r.stderr)
	}
	id := kqID(t, e.remoteRT)
	kq := e.checkListing(t, id, handFile)
	e.attachHandKernel(t, handPID)
	e.attachWhileHeld(t, id, kq.PID)
	e.stopBothKernels(t, id, handPID, kq.PID, handFile)
}

// checkListing holds kq ls (JSON and table) to the two kernels: the kq one
// alive, kept by --detach and not held; the hand one alive and not kq's. It
// returns the kq kernel's entry, whose PID the later steps watch.
func (e *env) checkListing(t *testing.T, id, handFile string) lsEntry {
	t.Helper()
	entries := e.ls(t)
	kq, hand := entries[id], entries["byhand"]
	if !kq.KQ || !kq.Alive || !kq.Kept || kq.Held || kq.PID == 0 {
		t.Errorf("kq kernel in ls: %+v", kq)
	}
	if hand.KQ || !hand.Alive || hand.File != handFile {
		t.Errorf("hand kernel in ls: %+v", hand)
	}
	r, code := e.runToEnd([]string{"ls", "p"})
	if code != 0 || !strings.Contains(r.stdout.String(), "ID") || !strings.Contains(r.stdout.String(), id) {
		t.Errorf("ls table:\n%s\n%s", r.stdout, r.stderr)
	}
	return kq
}

// attachHandKernel attaches to the hand kernel by name, sets state and gets
// %connect_info, then pastes that JSON into kq attach - and finds the state
// again: both ways name the same kernel, and neither stops it.
func (e *env) attachHandKernel(t *testing.T, handPID int) {
	t.Helper()
	a, code := e.runToEnd([]string{"attach", "p", "kernel-byhand.json"},
		"KQ_TEST_CODE=kq_hand = 'by hand'\n%connect_info")
	rep := a.report(t)
	if code != 0 || !strings.Contains(rep.Out, `"shell_port"`) {
		t.Fatalf("attach: exit %d, out %q\n%s", code, rep.Out, a.stderr)
	}
	if !sshdtest.ProcessAlive(handPID) {
		t.Fatal("attach stopped a kernel it did not start")
	}
	// Paste %connect_info into kq attach -.
	cmd := []string{"attach", "p", "-"}
	b := e.start(cmd, "KQ_TEST_CODE=print(kq_hand)")
	_, err := io.WriteString(b.stdin, rep.Out)
	must(t, err)
	b.stdin.Close()
	rep2 := b.report(t)
	if code := b.wait(t, time.Minute); code != 0 || strings.TrimSpace(rep2.Out) != "by hand" {
		t.Fatalf("attach -: exit %d, out %q\n%s", code, rep2.Out, b.stderr)
	}
}

// attachWhileHeld attaches to the kq kernel by id prefix while the session
// stays open, so ls can be seen to report it held; when the session ends
// the kernel must outlive it, since attach did not start it.
func (e *env) attachWhileHeld(t *testing.T, id string, kqPID int) {
	t.Helper()
	h := e.start([]string{"attach", "p", id[:8]}, "KQ_TEST_WAIT=1")
	h.report(t)
	if en := e.ls(t)[id]; !en.Held {
		t.Errorf("ls does not show the kernel held by the open session: %+v", en)
	}
	h.stdin.Close()
	if code := h.wait(t, time.Minute); code != 0 {
		t.Fatalf("attach by id: exit %d\n%s", code, h.stderr)
	}
	if !sshdtest.ProcessAlive(kqPID) {
		t.Fatal("an attached session stopped the kq kernel")
	}
}

// stopBothKernels stops the hand kernel by name and the kq one with
// --all-kq, and checks that nothing of either is left on the server.
func (e *env) stopBothKernels(t *testing.T, id string, handPID, kqPID int, handFile string) {
	t.Helper()
	s, code := e.runToEnd([]string{"stop", "p", "byhand"})
	if code != 0 {
		t.Fatalf("stop byhand: exit %d\n%s", code, s.stderr)
	}
	sshdtest.WaitGone(t, handPID, 10*time.Second)
	s, code = e.runToEnd([]string{"stop", "--all-kq", "p"})
	if code != 0 || !strings.Contains(s.stderr.String(), "stopped kernel "+id) {
		t.Fatalf("stop --all-kq: exit %d\n%s", code, s.stderr)
	}
	sshdtest.WaitGone(t, kqPID, 10*time.Second)
	waitNoFiles(t, e.remoteRT, 10*time.Second)
	if _, err := os.Stat(handFile); err == nil {
		t.Error("the hand kernel's file is left")
	}
	if got := e.ls(t); len(got) != 0 {
		t.Errorf("kernels left: %+v", got)
	}
	e.assertClean(nil, nil)
}

// TestAttachStopOnExit: --stop-on-exit stops the attached kernel.
func TestAttachStopOnExit(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	handPID, handFile := e.handKernel(t, "kernel-once.json")
	r, code := e.runToEnd([]string{"attach", "--stop-on-exit", "p", handFile})
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	sshdtest.WaitGone(t, handPID, 10*time.Second)
	e.assertClean(nil, nil)
}

// TestInterruptAndRestart: the frontend's own interrupt_request goes
// through kq untouched; kq interrupt stops a long cell from outside; kq
// restart gives a new process with the same key and ports, which the open
// session keeps using.
func TestInterruptAndRestart(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})

	r, code := e.runToEnd([]string{"p"}, "KQ_TEST_CODE=import time; time.sleep(60)", "KQ_TEST_INTERRUPT_AFTER=1")
	start := time.Now()
	if rep := r.report(t); code != 0 || !strings.Contains(rep.Out, "ERROR KeyboardInterrupt") {
		t.Fatalf("interrupt_request through kq: exit %d, out %q\n%s", code, rep.Out, r.stderr)
	}
	if time.Since(start) > 50*time.Second {
		t.Errorf("the cell ran to its end; the interrupt did not arrive")
	}

	s := e.start([]string{"p"}, "KQ_TEST_CODE=import os; print(os.getpid()); import time; time.sleep(60)",
		"KQ_TEST_CODE2=import os; print(os.getpid())")
	deadline := time.Now().Add(60 * time.Second)
	for len(listKQFiles(e.remoteRT)) == 0 || !strings.Contains(s.stderr.String(), "ready in") {
		if time.Now().After(deadline) {
			t.Fatal("session did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	id := kqID(t, e.remoteRT)
	time.Sleep(2 * time.Second) // the cell is running
	if i, code := e.runToEnd([]string{"interrupt", "p", id}); code != 0 {
		t.Fatalf("kq interrupt: exit %d\n%s", code, i.stderr)
	}
	rep := s.report(t)
	if !strings.Contains(rep.Out, "ERROR KeyboardInterrupt") {
		t.Fatalf("kq interrupt did not interrupt the cell: %q", rep.Out)
	}
	oldPID, _ := splitPIDOutput(t, rep.Out)
	if i, code := e.runToEnd([]string{"restart", "p", id}); code != 0 || !strings.Contains(i.stderr.String(), "restarted kernel "+id) {
		t.Fatalf("kq restart: exit %d\n%s", code, i.stderr)
	}
	sshdtest.WaitGone(t, oldPID, 10*time.Second)
	_, err := io.WriteString(s.stdin, "go\n")
	must(t, err)
	out := strings.TrimSpace(s.report2(t))
	if out == "" || out == strconv.Itoa(oldPID) {
		t.Fatalf("after restart the session reaches pid %q (old %d)", out, oldPID)
	}
	s.stdin.Close()
	if code := s.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, s.stderr)
	}
	newPID, _ := splitPIDOutput(t, out)
	e.assertClean([]int{oldPID, newPID}, rep.Ports)
}

// TestAttachIP: a kernel whose connection file names an address it does
// not listen on is reached with --ip; without it the forward fails (exit 6).
func TestAttachIP(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	pid, file := e.handKernel(t, "kernel-elsewhere.json", "--ip=127.0.0.2")
	// The file says 127.0.0.3, where nothing listens (as for a kernel
	// behind NAT whose file names an address the host cannot use).
	data, err := os.ReadFile(file)
	must(t, err)
	must(t, os.WriteFile(file, []byte(strings.Replace(string(data), `"127.0.0.2"`, `"127.0.0.3"`, 1)), 0o600))

	r, code := e.runToEnd([]string{"attach", "p", "elsewhere"})
	if code != 6 {
		t.Fatalf("without --ip: exit %d, want 6\n%s", code, r.stderr)
	}
	r, code = e.runToEnd([]string{"attach", "--ip", "127.0.0.2", "p", "elsewhere"})
	if rep := r.report(t); code != 0 || rep.Out == "" {
		t.Fatalf("with --ip: exit %d\n%s", code, r.stderr)
	}
	if !sshdtest.ProcessAlive(pid) {
		t.Fatal("attach stopped a kernel it did not start")
	}
}
