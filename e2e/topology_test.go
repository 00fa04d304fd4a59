package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/netns"
	"github.com/kq-dev/kq/e2e/sshdtest"
)

// topology is a netns.Topology under the names the tests use: hosts of
// their own in network namespaces, removed when the test ends.
type topology struct {
	*netns.Topology
	id    string
	links int // the number of links made so far
}

func newTopology(t *testing.T) *topology {
	t.Helper()
	tp := netns.New(t)
	return &topology{Topology: tp, id: tp.ID()}
}

// host makes a namespace with its loopback up.
func (tp *topology) host(role string) string { return tp.Host(role) }

// link joins a and b ("" is the root namespace) and returns their
// addresses on the new /24.
func (tp *topology) link(a, b string) (addrA, addrB string) {
	addrA, addrB = tp.Link(a, b)
	tp.links = tp.Links()
	return addrA, addrB
}

// ip runs ip(8) with args; a failure fails the test.
func (tp *topology) ip(args ...string) { tp.IP(args...) }

// exec runs a command inside ns.
func (tp *topology) exec(ns string, args ...string) string { return tp.Exec(ns, args...) }

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
