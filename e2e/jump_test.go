package e2e

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// addrCode makes the kernel report its pid and the IPv4 addresses of the
// machine (network namespace) it runs on.
const addrCode = "KQ_TEST_CODE=import os, subprocess; print(os.getpid()); " +
	"print(subprocess.run(['/usr/sbin/ip', '-o', '-4', 'addr'], capture_output=True, text=True).stdout)"

func splitPIDOutput(t *testing.T, out string) (int, string) {
	t.Helper()
	first, rest, _ := strings.Cut(strings.TrimSpace(out), "\n")
	pid, err := strconv.Atoi(first)
	if err != nil {
		t.Fatalf("kernel output %q", out)
	}
	return pid, rest
}

// unreachable proves the client cannot open TCP to addr itself.
func unreachable(t *testing.T, addr string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		c.Close()
		t.Fatalf("the client reaches %s directly; the topology is wrong", addr)
	}
}

// remoteKernelFile reads the kernel's own connection file on the server
// (namespaces share the file system).
func (e *env) remoteKernelFile(t *testing.T) (path string, ports []int, ip string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.remoteRT, "kernel-kq-*.json"))
	if len(files) != 1 {
		t.Fatalf("remote connection files: %q", files)
	}
	data, err := os.ReadFile(files[0])
	must(t, err)
	var info map[string]any
	must(t, json.Unmarshal(data, &info))
	for _, k := range []string{"shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"} {
		ports = append(ports, int(info[k].(float64)))
	}
	return files[0], ports, info["ip"].(string)
}

// TestJumpLogin: the client reaches login but not server; kq runs a session
// on server through login over one TCP connection, with the kernel on
// server's 127.0.0.1, and leaves nothing on either machine.
func TestJumpLogin(t *testing.T) {
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
		{name: "server", srv: serverSSHD, key: serverSSHD.ClientKey, jump: "login"},
	}, nil)
	e.writeConfig(map[string]profile{"gpu": e.profileFor("server", cfg)})

	r := e.start([]string{"gpu"}, addrCode, "KQ_TEST_WAIT=1")
	rep := r.report(t)
	pid, addrs := splitPIDOutput(t, rep.Out)
	if !strings.Contains(addrs, serverAddr+"/") || strings.Contains(addrs, loginAddr+"/") {
		t.Fatalf("kernel is not on server (%s):\n%s", serverAddr, addrs)
	}
	// The kernel listens on server's loopback only.
	_, ports, ip := e.remoteKernelFile(t)
	if ip != "127.0.0.1" {
		t.Errorf("kernel ip %q, want 127.0.0.1", ip)
	}
	listening := tp.exec(server, "/usr/bin/ss", "-Hltn")
	for _, port := range ports {
		for _, line := range strings.Split(listening, "\n") {
			if strings.Contains(line, ":"+strconv.Itoa(port)+" ") && !strings.Contains(line, "127.0.0.1:"+strconv.Itoa(port)) {
				t.Errorf("kernel port %d listens beyond loopback: %s", port, line)
			}
		}
	}
	r.stdin.Close()
	if code := r.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	if !strings.Contains(r.stderr.String(), "via login") {
		t.Errorf("progress does not say the route:\n%s", r.stderr)
	}
	e.assertClean([]int{pid}, rep.Ports)
	// One TCP connection from the client: login saw one connection, and a
	// session on it (the exec that turns Nagle off on the hop).
	logData, _ := os.ReadFile(loginSSHD.Log)
	if n := strings.Count(string(logData), "Connection from"); n != 1 {
		t.Errorf("login saw %d connections, want 1", n)
	}
	if !strings.Contains(string(logData), "Starting session: command") {
		t.Errorf("no session was started on the login hop:\n%s", logData)
	}
}

// TestJumpTwoHops: bastion → login → server from the profile's jump list.
func TestJumpTwoHops(t *testing.T) {
	tp := newTopology(t)
	bastion, login, server := tp.host("bast"), tp.host("login"), tp.host("server")
	_, bastionAddr := tp.link("", bastion)
	_, loginAddr := tp.link(bastion, login)
	_, serverAddr := tp.link(login, server)
	bastionSSHD := startSSHD(t, bastion, bastionAddr)
	loginSSHD := startSSHD(t, login, loginAddr)
	serverSSHD := startSSHD(t, server, serverAddr)
	unreachable(t, loginSSHD.Addr)
	unreachable(t, serverSSHD.Addr)

	e := newBareEnv(t)
	cfg := e.writeTopologyConfig([]sshHost{
		{name: "bastion", srv: bastionSSHD, key: bastionSSHD.ClientKey},
		{name: "login", srv: loginSSHD, key: loginSSHD.ClientKey},
		{name: "server", srv: serverSSHD, key: serverSSHD.ClientKey},
	}, nil)
	e.writeConfig(map[string]profile{"gpu": e.profileFor("server", cfg, profile{"jump": "bastion,login"})})
	r, code := e.runToEnd([]string{"gpu"}, addrCode)
	rep := r.report(t)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	pid, addrs := splitPIDOutput(t, rep.Out)
	if !strings.Contains(addrs, serverAddr+"/") {
		t.Fatalf("kernel is not on server (%s):\n%s", serverAddr, addrs)
	}
	if !strings.Contains(r.stderr.String(), "via bastion, login") {
		t.Errorf("progress does not say the route:\n%s", r.stderr)
	}
	e.assertClean([]int{pid}, rep.Ports)
}

// TestComputeNode: the kernel runs on node, which has no sshd and which the
// client cannot reach; server starts it (as srun would) bound to node's
// address, and kq forwards to it through the connection to server. The
// connection file comes back through the shared file system, or through
// the kernel command's standard output.
func TestComputeNode(t *testing.T) {
	tp := newTopology(t)
	server, node := tp.host("server"), tp.host("node")
	_, serverAddr := tp.link("", server)
	_, nodeAddr := tp.link(server, node)
	serverSSHD := startSSHD(t, server, serverAddr)
	unreachable(t, nodeAddr+":22")

	e := newBareEnv(t)
	cfg := e.writeTopologyConfig([]sshHost{{name: "server", srv: serverSSHD, key: serverSSHD.ClientKey}}, nil)
	// A node-local connection file, printed on stdout as a wrapper around
	// srun might do when the node's disk is not shared.
	wrapper := filepath.Join(e.dir, "node-kernel.sh")
	must(t, os.WriteFile(wrapper, []byte(`#!/bin/sh
# usage: node-kernel.sh -f FILE (FILE is ignored: the node writes its own)
own=$(mktemp -u /tmp/kq-node-XXXXXX.json)
ip netns exec `+node+` /usr/bin/python3 -m ipykernel_launcher --ip=`+nodeAddr+` -f "$own" &
k=$!
i=0; while [ ! -s "$own" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
cat "$own"; echo
trap 'kill $k 2>/dev/null; wait $k; rm -f "$own"' TERM INT EXIT
wait $k
`), 0o755))
	cases := map[string]profile{
		"shared-fs": {"kernel": "ip netns exec " + node + " " + kernelCmd, "kernel_ip": nodeAddr},
		"stdout":    {"kernel": "/bin/sh " + wrapper, "kernel_ip": "auto"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			e.writeConfig(map[string]profile{"cluster": e.profileFor("server", cfg, c)})
			r, code := e.runToEnd([]string{"cluster"}, addrCode)
			rep := r.report(t)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, r.stderr)
			}
			pid, addrs := splitPIDOutput(t, rep.Out)
			if !strings.Contains(addrs, nodeAddr+"/") || strings.Contains(addrs, serverAddr+"/") {
				t.Fatalf("kernel is not on node (%s):\n%s", nodeAddr, addrs)
			}
			e.assertClean([]int{pid}, rep.Ports)
			if left, _ := filepath.Glob("/tmp/kq-node-*.json"); len(left) > 0 {
				t.Errorf("node files left: %q", left)
			}
		})
	}
}

// TestHopFailures: a jump host with a changed host key, one refusing the
// key, a host refusing the connection, a jump host forbidding forwarding,
// and a host forbidding forwarding: each
// refused with the hop named and its exit code, nothing started remotely.
func TestHopFailures(t *testing.T) {
	hs := startHopServers(t)
	e := newBareEnv(t)
	other := filepath.Join(e.dir, "other_key")
	if out, err := exec.Command("/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	wrongLine := func() string {
		data, err := os.ReadFile(hs.login.WrongKnownHosts(t))
		must(t, err)
		return string(data)
	}()
	for _, c := range hopFailureCases(hs, other, wrongLine) {
		t.Run(c.name, func(t *testing.T) { c.run(t, e) })
	}
}

// hopServers are the sshds TestHopFailures points its hops at: login and
// nofwd are reachable directly, server only through login, and server runs
// a second sshd (port 2223) that forbids forwarding.
type hopServers struct {
	login, noFwd, server, serverNoFwd *sshdtest.Server
	serverAddr                        string // server's address behind login
}

// startHopServers builds the topology and starts its sshds, so that every
// failure case runs against the same real servers.
func startHopServers(t *testing.T) hopServers {
	t.Helper()
	tp := newTopology(t)
	login, noFwd, server := tp.host("login"), tp.host("nofwd"), tp.host("server")
	_, loginAddr := tp.link("", login)
	_, noFwdAddr := tp.link("", noFwd)
	_, serverAddr := tp.link(login, server)
	return hopServers{
		login:  startSSHD(t, login, loginAddr),
		noFwd:  startSSHD(t, noFwd, noFwdAddr, "AllowTcpForwarding no"),
		server: startSSHD(t, server, serverAddr),
		// A second sshd on server, on another port, that forbids forwarding.
		serverNoFwd: sshdtest.Start(t, sshdtest.Options{Netns: server, ListenAddr: serverAddr, Port: 2223,
			ExtraConfig: []string{"AllowTcpForwarding no"}}),
		serverAddr: serverAddr,
	}
}

// hopCase is one broken chain: the hosts of its ssh_config, any known_hosts
// contents that override a host's own, and the exit code and stderr
// fragments that must name the failing hop.
type hopCase struct {
	name  string
	hosts []sshHost
	kh    map[string]string
	code  int
	want  []string
}

// hopFailureCases breaks the chain at each hop in each way kq tells apart;
// other is a client key no server accepts, wrongLine a known_hosts line
// with another host key for login.
func hopFailureCases(hs hopServers, other, wrongLine string) []hopCase {
	loginSSHD, noFwdSSHD, serverSSHD, serverNoFwd := hs.login, hs.noFwd, hs.server, hs.serverNoFwd
	return []hopCase{
		{"login host key changed",
			[]sshHost{{name: "login", srv: loginSSHD, key: loginSSHD.ClientKey}, {name: "server", srv: serverSSHD, key: serverSSHD.ClientKey, jump: "login"}},
			map[string]string{"login": wrongLine}, 5,
			[]string{"jump host 1 of 1 login (root@" + loginSSHD.Addr, "CHANGED", loginSSHD.HostKeyFingerprint}},
		{"login refuses the key",
			[]sshHost{{name: "login", srv: loginSSHD, key: other}, {name: "server", srv: serverSSHD, key: serverSSHD.ClientKey, jump: "login"}},
			nil, 4, []string{"jump host 1 of 1 login (root@" + loginSSHD.Addr, "identity files " + other, "refused every key"}},
		{"host refuses the connection",
			[]sshHost{{name: "login", srv: loginSSHD, key: loginSSHD.ClientKey}, {name: "server", srv: serverSSHD, key: serverSSHD.ClientKey, jump: "login", port: 2299}},
			nil, 1, []string{"connect to host server (root@" + hs.serverAddr + ":2299", "through the jump host", "Connection refused"}},
		{"jump host forbids forwarding",
			[]sshHost{{name: "nofwd", srv: noFwdSSHD, key: noFwdSSHD.ClientKey}, {name: "server", srv: serverSSHD, key: serverSSHD.ClientKey, jump: "nofwd"}},
			nil, 6, []string{"host server", "the jump host before it forbids TCP forwarding", "AllowTcpForwarding no"}},
		{"host forbids forwarding",
			[]sshHost{{name: "login", srv: loginSSHD, key: loginSSHD.ClientKey}, {name: "server", srv: serverNoFwd, key: serverNoFwd.ClientKey, jump: "login"}},
			nil, 6, []string{"host server (root@" + serverNoFwd.Addr, "forbids TCP forwarding", "AllowTcpForwarding no"}},
	}
}

// run points kq at the case's chain and expects the refusal it describes,
// with nothing started on the far side.
func (c hopCase) run(t *testing.T, e *env) {
	cfg := e.writeTopologyConfig(c.hosts, c.kh)
	e.writeConfig(map[string]profile{"gpu": e.profileFor("server", cfg)})
	r, code := e.runToEnd([]string{"gpu"})
	if code != c.code {
		t.Fatalf("exit %d, want %d\n%s", code, c.code, r.stderr)
	}
	for _, w := range c.want {
		if !strings.Contains(r.stderr.String(), w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
	if _, err := os.Stat(e.remoteRT); err == nil {
		t.Errorf("something was started remotely: %s exists", e.remoteRT)
	}
	e.assertClean(nil, nil)
}
