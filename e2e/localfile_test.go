package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// TestTwoSessionsOneKernel: kq attach on a kernel that a running kq
// session holds, from the same machine: both sessions work at once, each
// with its own local connection file (the first keeps the short name), the
// attach never touches the live session's file, and both files go at the
// end.
func TestTwoSessionsOneKernel(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	r := e.start([]string{"p"}, "KQ_TEST_WAIT=1", "KQ_TEST_CODE=import os; kq_first = 'shared'; print(os.getpid())")
	rep := r.report(t)
	pid := kernelPID(t, rep)
	id := kqID(t, e.remoteRT)
	if want := "kernel-kq-p-" + id[:8] + ".json"; filepath.Base(rep.File) != want {
		t.Errorf("first session's file is %s, want the short name %s", rep.File, want)
	}

	a, code := e.runToEnd([]string{"attach", "p", id[:8]}, "KQ_TEST_CODE=print(kq_first)")
	arep := a.report(t)
	if code != 0 || strings.TrimSpace(arep.Out) != "shared" {
		t.Fatalf("attach while a session holds the kernel: exit %d, out %q\n%s", code, arep.Out, a.stderr)
	}
	if arep.File == rep.File || filepath.Dir(arep.File) != e.localRT ||
		!strings.HasPrefix(filepath.Base(arep.File), "kernel-kq-p-"+id[:8]) {
		t.Errorf("attach's file %s, first session's %s: want two distinct kernel-kq-p-%s* files in %s",
			arep.File, rep.File, id[:8], e.localRT)
	}
	t.Logf("first session's file %s, attach's %s", filepath.Base(rep.File), filepath.Base(arep.File))
	if _, err := os.Stat(rep.File); err != nil {
		t.Errorf("the live session's file is gone after the attach: %v", err)
	}
	if strings.Contains(a.stderr.String(), "left behind") {
		t.Errorf("attach took a live session's file for a stale one:\n%s", a.stderr)
	}
	if _, err := os.Stat(arep.File); err == nil {
		t.Errorf("attach left its file %s", arep.File)
	}
	if !sshdtest.ProcessAlive(pid) {
		t.Fatal("the attach stopped the first session's kernel")
	}

	r.stdin.Close()
	if code := r.wait(t, time.Minute); code != 0 {
		t.Fatalf("first session: exit %d\n%s", code, r.stderr)
	}
	e.assertClean([]int{pid}, append(rep.Ports, arep.Ports...))
}

// TestAttachAfterKQKilled: kq killed with SIGKILL leaves its local file;
// kq attach on the same kernel works, takes the short name again and
// removes the stale file.
func TestAttachAfterKQKilled(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	r := e.start([]string{"run", "--keep", "p"}, "KQ_TEST_WAIT=1",
		"KQ_TEST_CODE=import os; kq_state = 'survived'; print(os.getpid())")
	rep := r.report(t)
	pid := kernelPID(t, rep)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	must(t, syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)) // kq and its frontend
	r.wait(t, 10*time.Second)
	stale, err := os.ReadFile(rep.File)
	if err != nil {
		t.Fatalf("kq killed with SIGKILL left no local file to test with: %v", err)
	}
	id := kqID(t, e.remoteRT)

	a, code := e.runToEnd([]string{"attach", "p", id[:8]}, "KQ_TEST_CODE=print(kq_state)")
	arep := a.report(t)
	if code != 0 || strings.TrimSpace(arep.Out) != "survived" {
		t.Fatalf("attach after kq was killed: exit %d, out %q\n%s", code, arep.Out, a.stderr)
	}
	if arep.File != rep.File {
		t.Errorf("attach wrote %s, want the short name %s (the stale file's)", arep.File, rep.File)
	}
	if now, err := os.ReadFile(rep.File); err == nil && string(now) == string(stale) {
		t.Errorf("the stale file %s is still there", rep.File)
	}
	if !strings.Contains(a.stderr.String(), "removed "+filepath.Base(rep.File)+", left behind by a kq that is gone") {
		t.Errorf("attach did not say it removed the stale file:\n%s", a.stderr)
	}

	s, code := e.runToEnd([]string{"stop", "p", id})
	if code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, s.stderr)
	}
	e.assertClean([]int{pid}, append(rep.Ports, arep.Ports...))
}
