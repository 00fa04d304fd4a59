package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// topology is a set of network namespaces joined by veth pairs: test hosts
// of their own, on addresses no one else uses, removed when the test ends.
// The test process (and kq) stays in the root namespace, the "client".
type topology struct {
	t      *testing.T
	id     string
	base   int // second octet of this topology's 10.x.y.0/24 subnets
	links  int
	spaces []string
}

func newTopology(t *testing.T) *topology {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	tp := &topology{t: t, id: hex.EncodeToString(b)}
	// Everything of this topology's 10.base.0.0/16 that the root namespace
	// is not directly linked to is unreachable from here by a local route,
	// so no packet for a test host ever takes the default route out. Adding
	// that route also claims the block: a topology of another test run on
	// this machine at the same time has a block of its own.
	var block string
	for try := 0; ; try++ {
		n, _ := rand.Int(rand.Reader, big.NewInt(100))
		tp.base = 100 + int(n.Int64())
		block = fmt.Sprintf("10.%d.0.0/16", tp.base)
		out, err := exec.Command("/usr/sbin/ip", "route", "add", "unreachable", block).CombinedOutput()
		if err == nil {
			break
		}
		if try == 50 || !strings.Contains(string(out), "File exists") {
			t.Fatalf("ip route add unreachable %s: %v\n%s", block, err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("/usr/sbin/ip", "route", "del", "unreachable", block).CombinedOutput(); err != nil {
			t.Errorf("ip route del %s: %v %s", block, err, out)
		}
		for _, ns := range tp.spaces {
			if out, err := exec.Command("/usr/sbin/ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v %s", ns, err, out)
			}
		}
	})
	return tp
}

func (tp *topology) ip(args ...string) {
	tp.t.Helper()
	if out, err := exec.Command("/usr/sbin/ip", args...).CombinedOutput(); err != nil {
		tp.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// host makes a namespace with its loopback up.
func (tp *topology) host(role string) string {
	ns := "kq" + tp.id + role
	tp.ip("netns", "add", ns)
	tp.spaces = append(tp.spaces, ns)
	tp.ip("-n", ns, "link", "set", "lo", "up")
	return ns
}

// link joins a and b ("" is the root namespace) and returns their
// addresses on the new /24.
func (tp *topology) link(a, b string) (addrA, addrB string) {
	tp.links++
	va := fmt.Sprintf("kq%s%da", tp.id, tp.links)
	vb := fmt.Sprintf("kq%s%db", tp.id, tp.links)
	tp.ip("link", "add", va, "type", "veth", "peer", "name", vb)
	addrA = fmt.Sprintf("10.%d.%d.1", tp.base, tp.links)
	addrB = fmt.Sprintf("10.%d.%d.2", tp.base, tp.links)
	for _, end := range []struct{ ns, dev, addr string }{{a, va, addrA}, {b, vb, addrB}} {
		if end.ns != "" {
			tp.ip("link", "set", end.dev, "netns", end.ns)
			tp.ip("-n", end.ns, "addr", "add", end.addr+"/24", "dev", end.dev)
			tp.ip("-n", end.ns, "link", "set", end.dev, "up")
		} else {
			tp.ip("addr", "add", end.addr+"/24", "dev", end.dev)
			tp.ip("link", "set", end.dev, "up")
		}
	}
	return addrA, addrB
}

// exec runs a command inside ns.
func (tp *topology) exec(ns string, args ...string) string {
	tp.t.Helper()
	out, err := exec.CommandContext(contextFor(tp.t, 30*time.Second), "/usr/sbin/ip",
		append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		tp.t.Fatalf("in %s: %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sshHost is one sshd of a topology, with the ssh_config stanza naming it.
type sshHost struct {
	name string
	srv  *sshdtest.Server
	key  string // the identity the client offers it
	jump string // its ProxyJump, if any
	port int    // overrides srv.Port when set (a port where nothing listens)
}

// startSSHD runs sshd inside ns on addr:2222.
func startSSHD(t *testing.T, ns, addr string, extra ...string) *sshdtest.Server {
	return sshdtest.Start(t, sshdtest.Options{Netns: ns, ListenAddr: addr, Port: 2222, ExtraConfig: extra})
}

// writeTopologyConfig writes one ssh_config and one known_hosts for all
// hosts; knownHosts overrides a host's known_hosts line when set.
func (e *env) writeTopologyConfig(hosts []sshHost, knownHosts map[string]string) string {
	var cfg, kh strings.Builder
	khPath := filepath.Join(e.dir, fmt.Sprintf("known_hosts-%d", time.Now().UnixNano()))
	for _, h := range hosts {
		port := h.srv.Port
		if h.port != 0 {
			port = h.port
		}
		fmt.Fprintf(&cfg, "Host %s\n  HostName %s\n  Port %d\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n",
			h.name, h.srv.Host, port, h.srv.User, h.key)
		if h.jump != "" {
			fmt.Fprintf(&cfg, "  ProxyJump %s\n", h.jump)
		}
		if line, ok := knownHosts[h.name]; ok {
			kh.WriteString(line)
		} else {
			fmt.Fprintf(&kh, "[%s]:%d %s\n", h.srv.Host, h.srv.Port, h.srv.HostKeyLine)
		}
	}
	fmt.Fprintf(&cfg, "Host *\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n", khPath)
	must(e.t, os.WriteFile(khPath, []byte(kh.String()), 0o600))
	path := filepath.Join(e.dir, fmt.Sprintf("ssh_config-topo-%d", time.Now().UnixNano()))
	must(e.t, os.WriteFile(path, []byte(cfg.String()), 0o600))
	return path
}
