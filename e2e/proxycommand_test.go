package e2e

import (
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

// Issue 11, point 1: ProxyCommand hops against real sshd, each case also
// run with OpenSSH's ssh on the same config. (netcat is not installed
// here, so the loopback relay is bash's /dev/tcp.)

// relayScript is a ProxyCommand (python3 relay HOST PORT PIDFILE) that
// relays to HOST PORT as `nc %h %p` would, in one process (so that ssh's
// SIGHUP to it ends the relay), and appends its pid to PIDFILE. With
// KQ_RELAY_CHILD set it also starts a child in its process group, which
// must go when kq ends the command.
const relayScript = `import os, socket, subprocess, sys, threading
with open(sys.argv[3], "a") as f:
    f.write("%d\n" % os.getpid())
if os.environ.get("KQ_RELAY_CHILD"):
    subprocess.Popen(["sleep", "120"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def down():
    while True:
        b = s.recv(65536)
        if not b:
            os._exit(0)
        os.write(1, b)
threading.Thread(target=down, daemon=True).start()
while True:
    b = os.read(0, 65536)
    if not b:
        os._exit(0)
    s.sendall(b)
`

// proxyGroupsGone waits until no process of any group listed in pidFile
// runs (zombies do not count: this machine's init does not reap).
func proxyGroupsGone(t *testing.T, pidFile string, timeout time.Duration) {
	t.Helper()
	data, _ := os.ReadFile(pidFile)
	deadline := time.Now().Add(timeout)
	for _, f := range strings.Fields(string(data)) {
		pgid, _ := strconv.Atoi(f)
		for groupRuns(pgid) {
			if time.Now().After(deadline) {
				t.Fatalf("ProxyCommand process group %d still runs", pgid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func groupRuns(pgid int) bool {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

func pidsIn(t *testing.T, pidFile string) []string {
	data, _ := os.ReadFile(pidFile)
	return strings.Fields(string(data))
}

// sshAgrees runs OpenSSH's ssh on the same config and host and fails the
// test unless it succeeds exactly when want says.
func sshAgrees(t *testing.T, cfg, host string, want bool) string {
	t.Helper()
	cmd := exec.CommandContext(contextFor(t, time.Minute), "/usr/bin/ssh", "-F", cfg, host, "true")
	cmd.WaitDelay = 5 * time.Second // a ProxyCommand's child may hold the output pipe
	out, err := cmd.CombinedOutput()
	if (err == nil) != want {
		t.Fatalf("ssh succeeded=%v, want %v\n%s", err == nil, want, out)
	}
	return string(out)
}

// TestProxyCommandLogin: the login-host topology with `ProxyCommand ssh -W
// %h:%p login` in place of ProxyJump (the client cannot reach server);
// the kernel runs on server, and the ssh -W process is gone afterwards.
func TestProxyCommandLogin(t *testing.T) {
	tp := newTopology(t)
	login, server := tp.host("login"), tp.host("server")
	_, loginAddr := tp.link("", login)
	_, serverAddr := tp.link(login, server)
	loginSSHD := startSSHD(t, login, loginAddr)
	serverSSHD := startSSHD(t, server, serverAddr)
	unreachable(t, serverSSHD.Addr)

	e := newBareEnv(t)
	cfg := e.writeTopologyConfig([]sshHost{
		{name: "login", srv: loginSSHD, key: loginSSHD.ClientKey},
		{name: "server", srv: serverSSHD, key: serverSSHD.ClientKey},
	}, nil)
	data, err := os.ReadFile(cfg)
	must(t, err)
	proxy := "/usr/bin/ssh -F " + cfg + " -W %h:%p login"
	must(t, os.WriteFile(cfg, []byte(strings.Replace(string(data), "Host server\n",
		"Host server\n  ProxyCommand "+proxy+"\n", 1)), 0o600))
	sshAgrees(t, cfg, "server", true)
	e.writeConfig(map[string]profile{"gpu": e.profileFor("server", cfg)})

	r := e.start([]string{"gpu", "-v"}, addrCode, "KQ_TEST_WAIT=1")
	rep := r.report(t)
	pid, addrs := splitPIDOutput(t, rep.Out)
	if !strings.Contains(addrs, serverAddr+"/") {
		t.Fatalf("kernel is not on server (%s):\n%s", serverAddr, addrs)
	}
	running := "-W " + serverSSHD.Host + ":" + strconv.Itoa(serverSSHD.Port) + " login"
	if len(sshdtest.ProcessesMatching(running)) != 1 {
		t.Errorf("no ssh -W process (%q) during the session", running)
	}
	r.stdin.Close()
	if code := r.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	e.assertClean([]int{pid}, rep.Ports)
	if left := sshdtest.ProcessesMatching(running); len(left) != 0 {
		t.Fatalf("ProxyCommand left running: %v", left)
	}
}

// TestProxyCommandLoopback: a relay ProxyCommand to the loopback sshd; the
// relay (and its child) is gone after a reconnect (the server's sshd
// session killed) and after the session.
func TestProxyCommandLoopback(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	relay := filepath.Join(e.dir, "relay")
	must(t, os.WriteFile(relay, []byte(relayScript), 0o755))
	pids := filepath.Join(e.dir, "relay.pids")
	cfg := e.sshConfigWith("IdentityFile "+e.srv.ClientKey, "IdentitiesOnly yes",
		"UserKnownHostsFile "+e.srv.KnownHosts, "StrictHostKeyChecking yes", "BatchMode yes",
		"ProxyCommand "+sysPython+" "+relay+" %h %p "+pids)
	sshAgrees(t, cfg, "kqtest", true)
	must(t, os.Remove(pids))
	p := e.profileFor("kqtest", cfg, profile{"keepalive": "500ms", "keepalive_count": 2})
	e.writeConfig(map[string]profile{"p": p})
	r := e.start([]string{"p"}, "KQ_TEST_CODE=import os; kq_before = 'kept'; print(os.getpid())", "KQ_TEST_CODE2=print(kq_before)", "KQ_RELAY_CHILD=1")
	rep := r.report(t)
	if n := len(pidsIn(t, pids)); n != 1 {
		t.Fatalf("%d relays started, want 1", n)
	}
	children := childrenOf(e.srv.PID)
	if len(children) != 1 {
		t.Fatalf("sshd %d has children %v, want kq's one connection", e.srv.PID, children)
	}
	must(t, syscall.Kill(children[0], syscall.SIGKILL))
	r.waitStderr(t, "reconnected to kqtest in", time.Minute)
	all := pidsIn(t, pids)
	if len(all) != 2 {
		t.Fatalf("relays %v, want the first and the reconnect's", all)
	}
	first, _ := strconv.Atoi(all[0])
	if groupRuns(first) {
		t.Errorf("the first relay (%d) or its child outlived its connection", first)
	}
	r.expectKept(t)
	e.assertClean([]int{kernelPID(t, rep)}, rep.Ports)
	proxyGroupsGone(t, pids, 5*time.Second)
}

// TestProxyCommandFails: a ProxyCommand that exits before the banner;
// both ssh and kq fail, and kq's error names the command and carries its
// stderr.
func TestProxyCommandFails(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	cfg := e.sshConfigWith("IdentityFile "+e.srv.ClientKey, "IdentitiesOnly yes",
		"UserKnownHostsFile "+e.srv.KnownHosts, "StrictHostKeyChecking yes", "BatchMode yes",
		`ProxyCommand sh -c "echo bastion says no >&2; exit 3" %h`)
	sshAgrees(t, cfg, "kqtest", false)
	e.writeConfig(map[string]profile{"p": e.profileFor("kqtest", cfg)})
	r, code := e.runToEnd([]string{"p"})
	out := r.stderr.String()
	if code == 0 || !strings.Contains(out, "ProxyCommand") || !strings.Contains(out, "bastion says no") ||
		!strings.Contains(out, "exit status 3") {
		t.Fatalf("exit %d, want an error naming the ProxyCommand with its stderr\n%s", code, out)
	}
	e.assertClean(nil, nil)
}
