package forward

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// countingDialer dials directly and counts its dials; the first failFirst
// of them fail.
type countingDialer struct {
	n         atomic.Int32
	failFirst int32
}

func (d *countingDialer) Dial(network, addr string) (net.Conn, error) {
	if d.n.Add(1) <= d.failFirst {
		return nil, errors.New("refused by the test")
	}
	return net.DialTimeout(network, addr, 5*time.Second)
}

// greeter is a "kernel" that, like a ZeroMQ peer, greets every
// connection at once, then echoes; accepted gets each connection, ended
// is sent to when one reads EOF or an error.
type greeter struct {
	port     int
	accepted chan struct{}
	ended    chan struct{}
}

func newGreeter(t *testing.T) *greeter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	g := &greeter{port: ln.Addr().(*net.TCPAddr).Port, accepted: make(chan struct{}, 16), ended: make(chan struct{}, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.accepted <- struct{}{}
			go func() {
				defer c.Close()
				_, _ = c.Write([]byte("G"))
				_, _ = io.Copy(c, c)
				g.ended <- struct{}{}
			}()
		}
	}()
	return g
}

// wait waits for one signal on ch, failing the test after 5 s.
func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s within 5s", what)
	}
}

// greeted connects a local client through fw, reads the greeting and one
// echo.
func greeted(t *testing.T, fw *Forwarder) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", fw.Forwards()[0].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "Gx" {
		t.Fatalf("read %q, %v; want the greeting and the echo", buf, err)
	}
	return c
}

func listenPrimed(t *testing.T, d Dialer, g *greeter, n int) *Forwarder {
	t.Helper()
	fw, err := Listen(d, []Target{{Name: "shell_port", Host: "127.0.0.1", Port: g.port}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw.Close() })
	fw.Prime(map[string]int{"shell_port": n, "hb_port": 5})
	return fw
}

// TestForwardPrimeUsed: the first clients get the primed connections,
// opened before they came (the greeting is already waiting), and no new
// dial; the next client gets a new one. Counts name forwards: a name the
// forwarder does not have primes nothing.
func TestForwardPrimeUsed(t *testing.T) {
	g, d := newGreeter(t), &countingDialer{}
	fw := listenPrimed(t, d, g, 2)
	wait(t, g.accepted, "primed connection")
	wait(t, g.accepted, "second primed connection")
	greeted(t, fw)
	greeted(t, fw)
	if n := d.n.Load(); n != 2 {
		t.Fatalf("%d dials for two primed clients, want 2", n)
	}
	greeted(t, fw)
	if n := d.n.Load(); n != 3 {
		t.Fatalf("%d dials after a third client, want 3", n)
	}
}

// TestForwardPrimeFailed: a primed open that failed costs the client a
// new dial, not its connection.
func TestForwardPrimeFailed(t *testing.T) {
	g, d := newGreeter(t), &countingDialer{failFirst: 1}
	fw := listenPrimed(t, d, g, 1)
	greeted(t, fw)
	if n := d.n.Load(); n != 2 {
		t.Fatalf("%d dials, want the failed primed one and a new one", n)
	}
}

// TestForwardPrimeStale: a primed connection older than primeFresh is
// closed and the client dialled anew.
func TestForwardPrimeStale(t *testing.T) {
	old := primeFresh
	primeFresh = 50 * time.Millisecond
	t.Cleanup(func() { primeFresh = old })
	g, d := newGreeter(t), &countingDialer{}
	fw := listenPrimed(t, d, g, 1)
	wait(t, g.accepted, "primed connection")
	time.Sleep(100 * time.Millisecond)
	greeted(t, fw)
	wait(t, g.ended, "stale primed connection closed")
	if n := d.n.Load(); n != 2 {
		t.Fatalf("%d dials, want the stale one and a new one", n)
	}
}

// TestForwardPrimeDropped: a reconnect (SetDialer) and Close close the
// unused primed connections; a client after the reconnect dials through
// the new dialer.
func TestForwardPrimeDropped(t *testing.T) {
	g, d := newGreeter(t), &countingDialer{}
	fw := listenPrimed(t, d, g, 1)
	wait(t, g.accepted, "primed connection")
	d2 := &countingDialer{}
	fw.SetDialer(d2)
	wait(t, g.ended, "primed connection closed by the reconnect")
	greeted(t, fw)
	if n, n2 := d.n.Load(), d2.n.Load(); n != 1 || n2 != 1 {
		t.Fatalf("dials: %d before the reconnect (want 1), %d after (want 1)", n, n2)
	}
	fw.Prime(map[string]int{"shell_port": 1})
	wait(t, g.accepted, "connection of the client")
	wait(t, g.accepted, "primed connection after the reconnect")
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	wait(t, g.ended, "a connection closed by Close")
	wait(t, g.ended, "the other connection closed by Close")
}
