package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// report2 is clientPy's second report (KQ_TEST_CODE2).
func (r *run) report2(t *testing.T) string {
	t.Helper()
	line := r.waitLine(t, "KQTEST2 ", 3*time.Minute)
	var rep struct{ Out string }
	must(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "KQTEST2 ")), &rep))
	return rep.Out
}

// TestKernelKilledOnServer: the kernel killed with SIGKILL on the server
// ends the session within seconds as "kernel died", exit 7, all cleaned.
func TestKernelKilledOnServer(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	r := e.start([]string{"p"}, "KQ_TEST_WAIT=1")
	rep := r.report(t)
	pid := kernelPID(t, rep)
	killed := time.Now()
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	code := r.wait(t, time.Minute)
	if code != 7 || !strings.Contains(r.stderr.String(), "kq: error: kernel died on kqtest") {
		t.Fatalf("exit %d, want 7 and \"kernel died\"\n%s", code, r.stderr)
	}
	if strings.Contains(r.stderr.String(), "reconnect") {
		t.Errorf("a kernel death was taken for a network problem:\n%s", r.stderr)
	}
	t.Logf("kernel death noticed in %s", time.Since(killed).Round(time.Millisecond))
	sshdtest.WaitGone(t, rep.PID, 10*time.Second) // the frontend
	waitNoFiles(t, e.remoteRT, 10*time.Second)
	e.assertClean([]int{pid}, rep.Ports)
}

// TestKQKilled: kq killed with SIGKILL (no teardown at all): the kernel
// stops by itself once linger passes with no kq attached, and its files go;
// with --keep it stays, kq attach reaches it with its state, and kq stop
// ends it.
func TestKQKilled(t *testing.T) {
	const linger = 4 * time.Second
	e := newEnv(t, sshdtest.Options{})
	p := e.baseProfile()
	p["linger"] = linger.String()
	e.writeConfig(map[string]profile{"p": p})

	t.Run("linger", func(t *testing.T) {
		r := e.start([]string{"p"}, "KQ_TEST_WAIT=1")
		rep := r.report(t)
		pid := kernelPID(t, rep)
		must(t, syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)) // kq and its frontend
		r.wait(t, 10*time.Second)
		killed := time.Now()
		time.Sleep(linger / 2)
		if !sshdtest.ProcessAlive(pid) {
			t.Fatalf("kernel stopped before linger (%s)", time.Since(killed))
		}
		sshdtest.WaitGone(t, pid, linger+10*time.Second)
		t.Logf("kernel stopped %s after kq was killed (linger %s)", time.Since(killed).Round(100*time.Millisecond), linger)
		waitNoFiles(t, e.remoteRT, 10*time.Second)
		for _, f := range []string{rep.File} {
			os.Remove(f) // kq died before removing its local file; that is the one thing it cannot do
		}
	})

	t.Run("keep", func(t *testing.T) {
		r := e.start([]string{"run", "--keep", "p"}, "KQ_TEST_WAIT=1", "KQ_TEST_CODE=import os; kq_state = 'survived'; print(os.getpid())")
		rep := r.report(t)
		pid := kernelPID(t, rep)
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
		must(t, syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL))
		r.wait(t, 10*time.Second)
		os.Remove(rep.File)
		time.Sleep(linger + 4*time.Second)
		if !sshdtest.ProcessAlive(pid) {
			t.Fatal("a kept kernel was stopped after linger")
		}
		id := kqID(t, e.remoteRT)
		a, code := e.runToEnd([]string{"attach", "p", id[:8]}, "KQ_TEST_CODE=print(kq_state)")
		if code != 0 || strings.TrimSpace(a.report(t).Out) != "survived" {
			t.Fatalf("attach: exit %d\n%s\n%s", code, a.stdout, a.stderr)
		}
		if !sshdtest.ProcessAlive(pid) {
			t.Fatal("attach stopped a kernel it did not start")
		}
		s, code := e.runToEnd([]string{"stop", "p", id})
		if code != 0 || !strings.Contains(s.stderr.String(), "stopped kernel "+id) {
			t.Fatalf("stop: exit %d\n%s", code, s.stderr)
		}
		sshdtest.WaitGone(t, pid, 10*time.Second)
		e.assertClean(nil, nil)
	})
}

// kqID is the id of the one kq kernel in dir.
func kqID(t *testing.T, dir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "kernel-kq-*.json"))
	if len(files) != 1 {
		t.Fatalf("kq kernels in %s: %q", dir, files)
	}
	return strings.TrimSuffix(strings.TrimPrefix(filepath.Base(files[0]), "kernel-kq-"), ".json")
}

// netEnv is a server in its own namespace, reached over one veth link that
// a test can cut.
type netEnv struct {
	*env
	tp         *topology
	server     string // namespace
	dev        string // the server's end of the link
	clientDev  string // the client's (root namespace's) end of the link
	clientAddr string // the client's address on the link
}

func newNetEnv(t *testing.T, extra profile) *netEnv {
	return newNetEnvWith(t, extra, sshdtest.Options{})
}

// newNetEnvWith is newNetEnv with sshd options; Netns, ListenAddr and
// Port are set here.
func newNetEnvWith(t *testing.T, extra profile, opts sshdtest.Options) *netEnv {
	tp := newTopology(t)
	server := tp.host("server")
	clientAddr, serverAddr := tp.link("", server)
	opts.Netns, opts.ListenAddr, opts.Port = server, serverAddr, 2222
	srv := sshdtest.Start(t, opts)
	e := newBareEnv(t)
	e.srv = srv
	cfg := e.writeTopologyConfig([]sshHost{{name: "server", srv: srv, key: srv.ClientKey}}, nil)
	data, err := os.ReadFile(cfg)
	must(t, err)
	must(t, os.WriteFile(cfg, append(data, []byte("  ConnectTimeout 2\n")...), 0o600))
	e.writeConfig(map[string]profile{"p": e.profileFor("server", cfg, profile{"keepalive": "500ms", "keepalive_count": 2}, extra)})
	return &netEnv{env: e, tp: tp, server: server, dev: fmt.Sprintf("kq%s%db", tp.id, tp.links),
		clientDev: fmt.Sprintf("kq%s%da", tp.id, tp.links), clientAddr: clientAddr}
}

func (n *netEnv) cut()     { n.tp.ip("-n", n.server, "link", "set", n.dev, "down") }
func (n *netEnv) restore() { n.tp.ip("-n", n.server, "link", "set", n.dev, "up") }

// TestLinkCut: the link to the server is cut for 2 s and for 30 s, then
// restored; kq reports the cut, reconnects keeping its local ports, and the
// frontend's next execute sees the variable it set before the cut.
func TestLinkCut(t *testing.T) {
	mostlyWaiting(t)
	for _, outage := range []time.Duration{2 * time.Second, 30 * time.Second} {
		t.Run(outage.String(), func(t *testing.T) {
			n := newNetEnv(t, nil)
			r := n.start([]string{"p"}, "KQ_TEST_CODE=import os; kq_before = 'kept'; print(os.getpid())",
				"KQ_TEST_CODE2=print(kq_before)")
			rep := r.report(t)
			n.cut()
			r.waitStderr(t, "connection to server lost", 20*time.Second)
			time.Sleep(outage)
			n.restore()
			r.waitStderr(t, "reconnected to server in", 60*time.Second)
			r.expectKept(t)
			n.assertClean([]int{kernelPID(t, rep)}, rep.Ports)
		})
	}
}

// TestLinkNeverBack: the link is cut for good; with a short linger the
// kernel stops on the server by itself, and kq gives up with exit 7.
func TestLinkNeverBack(t *testing.T) {
	mostlyWaiting(t)
	const linger = 6 * time.Second
	n := newNetEnv(t, profile{"linger": linger.String()})
	r := n.start([]string{"p"}, "KQ_TEST_WAIT=1")
	rep := r.report(t)
	pid := kernelPID(t, rep)
	n.cut()
	cut := time.Now()
	sshdtest.WaitGone(t, pid, linger+15*time.Second)
	t.Logf("kernel stopped %s after the cut (linger %s)", time.Since(cut).Round(100*time.Millisecond), linger)
	waitNoFiles(t, n.remoteRT, 10*time.Second)
	if code := r.wait(t, linger+time.Minute); code != 7 || !strings.Contains(r.stderr.String(), "longer than linger") {
		t.Fatalf("exit %d, want 7\n%s", code, r.stderr)
	}
	n.restore()
	n.assertClean([]int{pid}, rep.Ports)
}

// TestSSHDSessionKilled: the server's per-connection sshd process is
// killed; kq reconnects and the kernel keeps its state.
func TestSSHDSessionKilled(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	p := e.baseProfile()
	p["keepalive"] = "500ms"
	p["keepalive_count"] = 2
	e.writeConfig(map[string]profile{"p": p})
	r := e.start([]string{"p"}, "KQ_TEST_CODE=import os; kq_before = 'kept'; print(os.getpid())", "KQ_TEST_CODE2=print(kq_before)")
	rep := r.report(t)
	children := childrenOf(e.srv.PID)
	if len(children) != 1 {
		t.Fatalf("sshd %d has children %v, want kq's one connection", e.srv.PID, children)
	}
	must(t, syscall.Kill(children[0], syscall.SIGKILL))
	r.waitStderr(t, "reconnected to kqtest in", time.Minute)
	r.expectKept(t)
	e.assertClean([]int{kernelPID(t, rep)}, rep.Ports)
}

// expectKept lets the frontend run KQ_TEST_CODE2 (print(kq_before)) after
// a reconnect, checks the kernel kept its state, and ends the session.
func (r *run) expectKept(t *testing.T) {
	t.Helper()
	_, err := io.WriteString(r.stdin, "go\n")
	must(t, err)
	if out := strings.TrimSpace(r.report2(t)); out != "kept" {
		t.Fatalf("after the reconnect the kernel says %q\n%s", out, r.stderr)
	}
	r.stdin.Close()
	if code := r.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
}

// childrenOf lists the PIDs whose parent is pid.
func childrenOf(pid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		rest := string(b)
		if i := strings.LastIndex(rest, ")"); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
			out = append(out, child)
		}
	}
	return out
}

// TestKernelGoneAfterCut: the kernel dies while the link is cut; when the
// link returns kq reconnects, finds the kernel gone, says so, exits 7.
func TestKernelGoneAfterCut(t *testing.T) {
	n := newNetEnv(t, nil)
	r := n.start([]string{"p"}, "KQ_TEST_WAIT=1")
	rep := r.report(t)
	pid := kernelPID(t, rep)
	n.cut()
	r.waitStderr(t, "connection to server lost", 20*time.Second)
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	n.restore()
	if code := r.wait(t, time.Minute); code != 7 || !strings.Contains(r.stderr.String(), "but the kernel is gone") {
		t.Fatalf("exit %d, want 7\n%s", code, r.stderr)
	}
	waitNoFiles(t, n.remoteRT, 10*time.Second)
	n.assertClean([]int{pid}, rep.Ports)
}
