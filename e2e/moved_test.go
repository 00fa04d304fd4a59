package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// TestLinkCutClientMoved: the link is cut and, while it is down, the
// client's address changes (a laptop waking up on another network), so the
// server never hears that the old connection is gone: no RST, no FIN; its
// per-connection sshd and hold shell stay. sshd runs as "sshd-session", the
// name OpenSSH 9.8 and later give their per-connection processes. kq
// reconnects from the new address and leaves the old connection's server
// side alone: the frontend's next cell still sees the state set before the
// cut, because the kernel's ROUTER sockets hand the frontend's identities
// over to the new connections (ROUTER_HANDOVER, set by ipykernel since
// 4.8.1). The old server side goes once the server's TCP gives up on the
// old connection; the server's tcp_retries2 is lowered from 15 (about 15
// minutes) to 7 (about 51 s) so that the test sees it go.
func TestLinkCutClientMoved(t *testing.T) {
	mostlyWaiting(t)
	n := newNetEnvWith(t, nil, sshdtest.Options{ExecName: "sshd-session"})
	n.tp.exec(n.server, "sysctl", "-qw", "net.ipv4.tcp_retries2=7")
	r := n.start([]string{"-v", "p"}, "KQ_TEST_CODE=import os; kq_before = 'kept'; print(os.getpid())",
		"KQ_TEST_CODE2=print(kq_before)")
	rep := r.report(t)

	// The first connection's server side: its sshd-session, the hold shell,
	// its ticker and the kernel's watchdog. Whatever is left when the test
	// ends is ended by PID.
	old := descendants(n.srv.PID)
	t.Cleanup(func() {
		for _, p := range old {
			if p.same() {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
	})
	if !slices.ContainsFunc(old, func(p proc) bool { return p.comm == "sshd-session" }) {
		t.Fatalf("no sshd-session process serves the connection: %v", old)
	}
	t.Logf("server side of the first connection: %v", old)

	n.cut()
	cut := time.Now()
	r.waitStderr(t, "connection to server lost", 20*time.Second)
	newAddr := n.moveClient()
	t.Logf("client moved from %s to %s", n.clientAddr, newAddr)
	n.restore()
	r.waitStderr(t, "reconnected to server in", 60*time.Second)
	t.Logf("server connections after the reconnect:\n%s", n.tp.exec(n.server, "ss", "-tnp", "sport", "= :2222"))
	left := alive(old)
	t.Logf("first connection's processes after the reconnect: %v", left)
	if !slices.ContainsFunc(left, func(p proc) bool { return p.comm == "sshd-session" }) {
		t.Fatalf("the old connection's sshd-session is gone: the server heard of its end, so this test does not test what it should")
	}

	r.expectKept(t)
	// Once kq has stopped the kernel (and with it the watchdog and the old
	// hold shell) and TCP has given up, nothing of the old connection is left.
	deadline := time.Now().Add(3 * time.Minute)
	for len(alive(old)) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if left := alive(old); len(left) > 0 {
		t.Fatalf("the old connection's server side is still there %s after the cut: %v", time.Since(cut).Round(time.Second), left)
	}
	t.Logf("the old connection's server side went %s after the cut", time.Since(cut).Round(time.Second))
	n.assertClean([]int{kernelPID(t, rep)}, rep.Ports)
}

// alive is the processes of ps that still run.
func alive(ps []proc) []proc {
	var out []proc
	for _, p := range ps {
		if p.same() {
			out = append(out, p)
		}
	}
	return out
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
