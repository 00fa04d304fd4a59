package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// TestLinkCutClientMoved: the link is cut and, while it is down, the
// client's address changes (a laptop waking up on another network), so the
// server never hears that the old connection is gone: no RST, no FIN, and
// its per-connection sshd and hold shell stay. sshd runs as "sshd-session",
// the name OpenSSH 9.8 and later give their per-connection processes. kq
// reconnects from the new address, and the frontend's next cell sees the
// state set before the cut.
func TestLinkCutClientMoved(t *testing.T) {
	n := newNetEnvWith(t, nil, sshdtest.Options{ExecName: "sshd-session"})
	r := n.start([]string{"-v", "p"}, "KQ_TEST_CODE=import os; kq_before = 'kept'; print(os.getpid())",
		"KQ_TEST_CODE2=print(kq_before)")
	rep := r.report(t)

	// The first connection's server side: sshd-session processes, the hold
	// shell and its ticker. They are ended by PID when the test ends, in
	// case they still wait for TCP to give up.
	old := descendants(n.srv.PID)
	t.Cleanup(func() {
		for _, p := range old {
			if p.same() {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
	})
	var sessions int
	for _, p := range old {
		if p.comm == "sshd-session" {
			sessions++
		}
	}
	if sessions == 0 {
		t.Fatalf("no sshd-session process serves the connection: %v", old)
	}
	t.Logf("server side of the first connection: %v", old)

	n.cut()
	r.waitStderr(t, "connection to server lost", 20*time.Second)
	newAddr := n.moveClient()
	t.Logf("client moved from %s to %s", n.clientAddr, newAddr)
	n.restore()
	r.waitStderr(t, "reconnected to server in", 60*time.Second)
	t.Logf("server connections after the reconnect:\n%s", n.tp.exec(n.server, "ss", "-tnp", "sport", "= :2222"))
	// The watchdog was started by the first connection's hold shell and
	// outlives every session; everything else of that connection is gone.
	wd := strings.TrimSpace(readFileString(t, filepath.Join(n.remoteRT, "kernel-kq-"+kqID(t, n.remoteRT)+".wd")))
	for _, p := range old {
		if p.same() && strconv.Itoa(p.pid) != wd && p.comm != "sleep" {
			t.Errorf("the lost connection's process %v is still running: %s", p, cmdline(p.pid))
		}
	}
	if !strings.Contains(r.stderr.String(), "kq: takeover: ended the lost connection's sshd-session") {
		t.Errorf("-v does not say what the takeover did:\n%s", r.stderr)
	}
	r.expectKept(t)
	t.Logf("kq's stderr:\n%s", r.stderr)
	n.assertClean([]int{kernelPID(t, rep)}, rep.Ports)
}

func readFileString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}

// moveClient gives the client's end of the link a new address in place of
// the old one, and returns it. Packets of the old connection can no longer
// be sent (their source address is gone) nor answered (nobody owns the old
// address), so the server hears nothing of the old connection's end.
func (n *netEnv) moveClient() string {
	i := strings.LastIndex(n.clientAddr, ".")
	newAddr := n.clientAddr[:i] + ".3"
	n.tp.ip("addr", "del", n.clientAddr+"/24", "dev", n.clientDev)
	n.tp.ip("addr", "add", newAddr+"/24", "dev", n.clientDev)
	return newAddr
}

// proc is one process, told apart from a later one with the same pid by
// its start time.
type proc struct {
	pid   int
	comm  string
	start string
}

func (p proc) String() string { return fmt.Sprintf("%d(%s)", p.pid, p.comm) }

// same reports whether p is still running (and not a new process that got
// its pid).
func (p proc) same() bool {
	q, ok := procInfo(p.pid)
	return ok && q.start == p.start && sshdtest.ProcessAlive(p.pid)
}

// procInfo reads a process's name and start time from /proc.
func procInfo(pid int) (proc, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return proc{}, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return proc{}, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 20 {
		return proc{}, false
	}
	// Fields after the comm start at field 3 (state); starttime is field 22.
	return proc{pid: pid, comm: s[open+1 : end], start: f[19]}, true
}

// descendants lists pid's children, their children and so on (bounded).
func descendants(pid int) []proc {
	var out []proc
	todo := []int{pid}
	for len(todo) > 0 && len(out) < 1000 {
		p := todo[0]
		todo = todo[1:]
		for _, c := range childrenOf(p) {
			if info, ok := procInfo(c); ok {
				out = append(out, info)
				todo = append(todo, c)
			}
		}
	}
	return out
}
