package forward

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
)

// zmqKernel is a ZeroMQ socket made by newSock and bound on 127.0.0.1,
// as a kernel's port.
func zmqKernel(t *testing.T, newSock func(context.Context, ...zmq4.Option) zmq4.Socket) (zmq4.Socket, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := newSock(ctx)
	t.Cleanup(func() { s.Close(); cancel() })
	if err := s.Listen("tcp://127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return s, s.Addr().(*net.TCPAddr).Port
}

// heldDialer dials directly once release is closed.
type heldDialer struct{ release chan struct{} }

func (d heldDialer) Dial(network, addr string) (net.Conn, error) {
	<-d.release
	return net.DialTimeout(network, addr, 5*time.Second)
}

// kernelForward forwards to the kernel port field on 127.0.0.1:port
// through d, answering handshakes as that port's socket type; the test
// closes it.
func kernelForward(t *testing.T, d Dialer, field string, port int) *Forwarder {
	t.Helper()
	fw, err := Listen(d, []Target{{Name: field, Host: "127.0.0.1", Port: port, Socket: KernelSocket(field)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw.Close() })
	return fw
}

func localURL(fw *Forwarder) string {
	return "tcp://127.0.0.1:" + strconv.Itoa(fw.Forwards()[0].Local.Port)
}

// dealerTo is a zmq4 DEALER connected through fw's first forward, closed
// at the test's end; each of its waits ends within 10 s.
func dealerTo(t *testing.T, fw *Forwarder) zmq4.Socket {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	c := zmq4.NewDealer(ctx)
	t.Cleanup(func() { c.Close(); cancel() })
	if err := c.Dial(localURL(fw)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestZMTPAnsweredBeforeKernel: a ZeroMQ client's handshake on a kernel
// port is complete before the forward has even reached the kernel (zmq4's
// Dial returns only once its handshake is done), and its first message
// then reaches the kernel, whose reply comes back.
func TestZMTPAnsweredBeforeKernel(t *testing.T) {
	k, port := zmqKernel(t, zmq4.NewRouter)
	d := heldDialer{release: make(chan struct{})}
	fw := kernelForward(t, d, "shell_port", port)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := zmq4.NewDealer(ctx, zmq4.WithDialerTimeout(3*time.Second))
	defer c.Close()
	dialed := make(chan error, 1)
	go func() { dialed <- c.Dial(localURL(fw)) }()
	select {
	case err := <-dialed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		close(d.release)
		t.Fatal("the client's handshake waited for the kernel")
	}
	close(d.release)
	if err := c.Send(zmq4.NewMsgString("ping")); err != nil {
		t.Fatal(err)
	}
	m, err := k.Recv()
	if err != nil || len(m.Frames) != 2 || string(m.Frames[1]) != "ping" {
		t.Fatalf("kernel got %q, %v", m.Frames, err)
	}
	if err := k.Send(zmq4.NewMsgFrom(m.Frames[0], []byte("pong"))); err != nil {
		t.Fatal(err)
	}
	r, err := c.Recv()
	if err != nil || string(r.Frames[0]) != "pong" {
		t.Fatalf("client got %q, %v", r.Frames, err)
	}
}

// TestZMTPSubscriber: a SUB client on the iopub port is told it meets a
// PUB, and its subscription reaches the kernel's PUB, which publishes to
// it.
func TestZMTPSubscriber(t *testing.T) {
	k, port := zmqKernel(t, zmq4.NewPub)
	fw := kernelForward(t, tcpDialer{}, "iopub_port", port)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := zmq4.NewSub(ctx)
	defer c.Close()
	if err := c.SetOption(zmq4.OptionSubscribe, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Dial(localURL(fw)); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		m, err := c.Recv()
		if err == nil {
			got <- string(m.Frames[0])
		}
	}()
	for range 100 { // a PUB drops what it sends before the subscription is in
		if err := k.Send(zmq4.NewMsgString("status")); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if s != "status" {
				t.Fatalf("got %q", s)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("nothing published reached the subscriber")
}

// rawKernel accepts one connection at a time and runs serve on it.
func rawKernel(t *testing.T, serve func(net.Conn)) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestZMTPKernelDiffers: a kernel whose READY names a socket type other
// than the one its client was told (a DEALER for a ROUTER) ends the
// client's connection, and the forward relays the next one plainly: that
// client sees the kernel's own greeting.
func TestZMTPKernelDiffers(t *testing.T) {
	port := rawKernel(t, func(c net.Conn) {
		_, _ = c.Write(append(clientGreeting(), ready("DEALER")...))
	})
	fw := kernelForward(t, tcpDialer{}, "shell_port", port)
	addr := fw.Forwards()[0].Local.String()
	greetAs := func() []byte {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(clientGreeting()); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c)
		if err != nil && !errors.Is(err, io.EOF) {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatal(err)
			}
		}
		return b
	}
	first := greetAs() // the answer from here, then the end
	want := append(append(signature(), 3), append(greetingRest(1), ready(SocketRouter)...)...)
	if !bytes.Equal(first, want) {
		t.Fatalf("first client got %x, want the early answer %x and the end", first, want)
	}
	if !fw.plain[0].Load() {
		t.Fatal("the forward still answers early")
	}
	second := greetAs()
	if wantK := append(clientGreeting(), ready("DEALER")...); !bytes.Equal(second, wantK) {
		t.Fatalf("second client got %x, want the kernel's own %x", second, wantK)
	}
}

// TestZMTPNotZeroMQ: a client that does not speak ZMTP 3 with NULL, or
// not ZeroMQ at all, has its bytes relayed as they are, at once.
func TestZMTPNotZeroMQ(t *testing.T) {
	echo := rawKernel(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
	fw := kernelForward(t, tcpDialer{}, "shell_port", echo)
	c, err := net.Dial("tcp", fw.Forwards()[0].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second)) // well below answerWait
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hello" {
		t.Fatalf("got %q, %v", b, err)
	}
}

// TestReadyType reads a READY's Socket-Type, also in a long command, and
// refuses what is not a READY.
func TestReadyType(t *testing.T) {
	long := ready("ROUTER")[2:]
	longCmd := append([]byte{commandFlag | longFlag, 0, 0, 0, 0, 0, 0, 0, byte(len(long))}, long...)
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"short", ready("PUB"), "PUB"},
		{"long", longCmd, "ROUTER"},
		{"a message", []byte{0, 4, 'p', 'i', 'n', 'g'}, ""},
		{"not READY", append([]byte{commandFlag, 6, 5}, "ERROR"...), ""},
		{"no type", []byte{commandFlag, 6, 5, 'R', 'E', 'A', 'D', 'Y'}, ""},
	} {
		got, err := readReady(bufio.NewReader(bytes.NewReader(tc.in)))
		if got != tc.want || (tc.want == "") != errors.Is(err, errHandshake) {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if !sameForClients("REP", SocketRouter) || !sameForClients("XPUB", SocketPub) || sameForClients("DEALER", SocketRouter) {
		t.Error("sameForClients")
	}
}

// TestZMTPGreetedPrime: a primed connection on a kernel port has greeted
// the kernel before any client came, so a client's READY follows that
// greeting straight away (no greeting of its own goes through), on the
// one primed connection; a client that is not ZeroMQ cannot take a
// greeted one and gets a new dial.
func TestZMTPGreetedPrime(t *testing.T) {
	got := make(chan []byte, 4)
	port := rawKernel(t, func(c net.Conn) {
		_, _ = c.Write(append(clientGreeting(), ready(SocketRouter)...))
		b := make([]byte, greetingLen+1)
		if _, err := io.ReadFull(c, b); err != nil {
			got <- nil
			return
		}
		got <- b
		_, _ = io.Copy(io.Discard, c)
	})
	d := &countingDialer{}
	fw := kernelForward(t, d, "shell_port", port)
	fw.Prime(map[string]int{"shell_port": 1})
	dealerTo(t, fw)
	select {
	case b := <-got:
		if !bytes.Equal(b[:greetingLen], clientGreeting()) || b[greetingLen]&commandFlag == 0 {
			t.Fatalf("kernel got %x: want the prime's greeting, then the client's READY", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client's READY did not reach the kernel")
	}
	if n := d.n.Load(); n != 1 {
		t.Fatalf("%d dials, want the one primed", n)
	}

	fw.Prime(map[string]int{"shell_port": 1})
	plain, err := net.Dial("tcp", fw.Forwards()[0].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_ = plain.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := plain.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	want := append(clientGreeting(), ready(SocketRouter)...)
	b := make([]byte, len(want))
	if _, err := io.ReadFull(plain, b); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("plain client got %x, %v: want the kernel's own greeting", b, err)
	}
	if n := d.n.Load(); n != 3 {
		t.Fatalf("%d dials, want the second prime and a new one for the plain client", n)
	}
}

// turnConn counts round trips on a connection to the kernel: reads that
// bring data after something was written since the last one.
type turnConn struct {
	net.Conn
	wrote atomic.Bool
	turns *atomic.Int32
}

func (c *turnConn) Write(b []byte) (int, error) {
	c.wrote.Store(true)
	return c.Conn.Write(b)
}

func (c *turnConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.wrote.Swap(false) {
		c.turns.Add(1)
	}
	return n, err
}

type turnDialer struct{ turns atomic.Int32 }

func (d *turnDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &turnConn{Conn: c, turns: &d.turns}, nil
}

// TestZMTPLateClientOneRoundTrip: a client that connects once the primed
// connection has greeted the kernel (as a frontend does, seconds after the
// ports are forwarded) has its first reply after one round trip to the
// kernel: its handshake costs none. (A relay that passed the handshake on
// would need three; one that answered it but had not greeted the kernel
// yet, two.)
func TestZMTPLateClientOneRoundTrip(t *testing.T) {
	port := rawKernel(t, libzmqKernel)
	d := &turnDialer{}
	fw := kernelForward(t, d, "shell_port", port)
	fw.Prime(map[string]int{"shell_port": 1})
	for i := 0; d.turns.Load() < 1; i++ { // the prime's greeting
		if i == 500 {
			t.Fatal("the primed connection did not greet the kernel")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // and its READY read
	before := d.turns.Load()
	c := dealerTo(t, fw)
	if err := c.Send(zmq4.NewMsgString("ping")); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Recv(); err != nil || string(r.Frames[0]) != "pong" {
		t.Fatalf("client got %q, %v", r.Frames, err)
	}
	if n := d.turns.Load() - before; n != 1 {
		t.Fatalf("%d round trips to the kernel from the client's connect to its reply, want 1", n)
	}
	if fw.plain[0].Load() {
		t.Fatal("the forward turned plain")
	}
}

// libzmqKernel speaks as a libzmq 4.3 ROUTER does (ZMTP 3.1): its greeting
// and READY, then it reads the peer's greeting, READY and one message,
// and answers "pong".
func libzmqKernel(c net.Conn) {
	_, _ = c.Write(append(clientGreeting(), ready(SocketRouter)...))
	r := bufio.NewReader(c)
	if _, err := io.ReadFull(r, make([]byte, greetingLen)); err != nil {
		return
	}
	if _, err := readReady(r); err != nil {
		return
	}
	head := make([]byte, 2)
	if _, err := io.ReadFull(r, head); err != nil || head[0] != 0 {
		return
	}
	if _, err := io.ReadFull(r, make([]byte, head[1])); err != nil {
		return
	}
	_, _ = c.Write([]byte{0, 4, 'p', 'o', 'n', 'g'})
	_, _ = io.Copy(io.Discard, r)
}
