// Package netns builds test networks out of Linux network namespaces
// joined by veth pairs: hosts of their own, on 10.x.y.0/24 addresses no
// one else uses, all removed when the test (or benchmark) ends. The
// process that builds a topology stays in the root namespace, the
// "client". It is used by the e2e tests and by the benchmark (e2e/bench).
//
// Every command has a deadline, and everything a Topology makes it
// removes in its cleanup, even when the test failed half-way.
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// IPPath is the iproute2 program, absolute because PATH may be anything.
const IPPath = "/usr/sbin/ip"

// Bounds of the commands a topology runs.
const (
	ipTimeout   = 15 * time.Second
	execTimeout = 30 * time.Second
	claimTries  = 50
)

// Topology is a set of namespaces and links made for one test.
type Topology struct {
	t      testing.TB
	id     string
	base   int // second octet of this topology's 10.x.y.0/24 subnets
	links  int
	spaces []string
}

// New claims a free 10.base.0.0/16 block for t's topology and registers
// the removal of everything it will make with t.Cleanup. Everything of the
// block that the root namespace is not directly linked to is unreachable
// from here by a local route, so no packet for a test host ever takes the
// default route out; adding that route also claims the block, so a
// topology of another run on this machine at the same time has its own.
func New(t testing.TB) *Topology {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	tp := &Topology{t: t, id: hex.EncodeToString(b)}
	var block string
	for try := 0; ; try++ {
		n, _ := rand.Int(rand.Reader, big.NewInt(100))
		tp.base = 100 + int(n.Int64())
		block = fmt.Sprintf("10.%d.0.0/16", tp.base)
		out, err := run(IPPath, "route", "add", "unreachable", block)
		if err == nil {
			break
		}
		if try == claimTries || !strings.Contains(out, "File exists") {
			t.Fatalf("ip route add unreachable %s: %v\n%s", block, err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := run(IPPath, "route", "del", "unreachable", block); err != nil {
			t.Errorf("ip route del %s: %v %s", block, err, out)
		}
		for _, ns := range tp.spaces {
			if out, err := run(IPPath, "netns", "del", ns); err != nil {
				t.Errorf("ip netns del %s: %v %s", ns, err, out)
			}
		}
	})
	return tp
}

// ID is the random tag in the names of this topology's namespaces and
// devices.
func (tp *Topology) ID() string { return tp.id }

// Links is how many links Link has made; link n's devices are
// "kq<ID>na" (first end) and "kq<ID>nb" (second end).
func (tp *Topology) Links() int { return tp.links }

// run runs one command with a deadline and returns its combined output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// IP runs ip(8) with args in the root namespace ("-n NS" first for
// another); a failure fails the test.
func (tp *Topology) IP(args ...string) {
	tp.t.Helper()
	if out, err := run(IPPath, args...); err != nil {
		tp.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Host makes a namespace with its loopback up and returns its name.
func (tp *Topology) Host(role string) string {
	tp.t.Helper()
	ns := "kq" + tp.id + role
	tp.IP("netns", "add", ns)
	tp.spaces = append(tp.spaces, ns)
	tp.IP("-n", ns, "link", "set", "lo", "up")
	return ns
}

// Link joins a and b ("" is the root namespace) and returns their
// addresses on the new /24.
func (tp *Topology) Link(a, b string) (addrA, addrB string) {
	tp.t.Helper()
	tp.links++
	va := fmt.Sprintf("kq%s%da", tp.id, tp.links)
	vb := fmt.Sprintf("kq%s%db", tp.id, tp.links)
	tp.IP("link", "add", va, "type", "veth", "peer", "name", vb)
	addrA = fmt.Sprintf("10.%d.%d.1", tp.base, tp.links)
	addrB = fmt.Sprintf("10.%d.%d.2", tp.base, tp.links)
	for _, end := range []struct{ ns, dev, addr string }{{a, va, addrA}, {b, vb, addrB}} {
		if end.ns != "" {
			tp.IP("link", "set", end.dev, "netns", end.ns)
			tp.IP("-n", end.ns, "addr", "add", end.addr+"/24", "dev", end.dev)
			tp.IP("-n", end.ns, "link", "set", end.dev, "up")
		} else {
			tp.IP("addr", "add", end.addr+"/24", "dev", end.dev)
			tp.IP("link", "set", end.dev, "up")
		}
	}
	return addrA, addrB
}

// Exec runs a command inside ns, within 30 seconds, and returns its
// combined output; a failure fails the test.
func (tp *Topology) Exec(ns string, args ...string) string {
	tp.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, IPPath, append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		tp.t.Fatalf("in %s: %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}
