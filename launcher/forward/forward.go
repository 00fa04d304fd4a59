// Package forward is kq's port forwarding: one listener per remote port,
// on a free port of 127.0.0.1 only, each accepted connection relayed
// through a Dialer (direct-tcpip channels of one SSH connection) with a
// half-close passed on as a half-close and a channel the server closed
// closing the local connection, as ssh -L does. A reconnect swaps the
// dialer and keeps the listeners, so local ports never change in a
// session. Errors are marked with package kinds.
package forward

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kq-dev/kq/launcher/kinds"
)

// Dialer opens a connection as seen from the SSH server; SSH and
// *ssh.Client are ones, and tests dial directly.
type Dialer interface {
	Dial(network, addr string) (net.Conn, error)
}

// Forward is one local listener relaying to one remote address.
type Forward struct {
	// Name is the connection-file field, e.g. "shell_port".
	Name string
	// Remote is the target as seen from the SSH host ("127.0.0.1:PORT").
	Remote string
	// Local is the bound listener address on 127.0.0.1.
	Local *net.TCPAddr
	// Socket is the ZeroMQ socket type behind Remote whose handshake is
	// answered early (zmtp.go); "" relays plainly.
	Socket string
}

// Forwarder relays every accepted local connection through one SSH
// connection. Listeners are bound first, on free ports of 127.0.0.1 only, so
// two sessions never collide and nothing is reachable from the network.
type Forwarder struct {
	dialer    Dialer // guarded by mu: a reconnect swaps it
	forwards  []Forward
	listeners []net.Listener
	plain     []atomic.Bool // by forward: its early answer was found wrong, relay plainly

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	firstErr error
	failed   chan struct{} // closed with the first failed forward
	closed   bool
	stop     chan struct{}          // closed by close: ends the accept loops' backoff
	primed   map[string][]primeSlot // by remote address: Prime's connections, oldest first
	wg       sync.WaitGroup
}

// Bounds of the forwarder's waits.
const (
	// channelOpenTimeout bounds one direct-tcpip open: x/crypto waits for
	// the server's answer for ever, and a dead link never brings it.
	channelOpenTimeout = 20 * time.Second
	// relayWait bounds Close's wait for the relays to end.
	relayWait = 5 * time.Second
	// acceptBackoffCap caps the pause after a temporary Accept error.
	acceptBackoffCap = time.Second
)

// errRelaysStuck: Close gave up waiting for relayed connections.
var errRelaysStuck = errors.New("relayed connections did not end")

// Target names a remote port to forward.
type Target struct {
	// Name is the connection-file field, e.g. "shell_port".
	Name string
	// Host and Port are where to connect, as seen from the SSH host.
	Host string
	Port int
	// Socket is the kernel socket's ZeroMQ type (KernelSocket), whose
	// handshake the forward answers early; "" for a plain relay.
	Socket string
}

// Listen binds one listener per target on a free port of 127.0.0.1 and
// starts relaying each one's connections through d. Close ends it.
func Listen(d Dialer, targets []Target) (*Forwarder, error) {
	var lns []net.Listener
	for _, t := range targets {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, kinds.With(kinds.Forward, "", fmt.Errorf("listen for %s: %w", t.Name, err))
		}
		lns = append(lns, ln)
	}
	return serve(d, targets, lns), nil
}

// Bind binds 127.0.0.1:port for each named port, all or none, for ports
// that someone else chose (a Jupyter kernel manager): a port that is taken
// is named. Connections that arrive before Serve wait in the backlog.
func Bind(names []string, ports []int) ([]net.Listener, error) {
	var lns []net.Listener
	for i, name := range names {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, kinds.With(kinds.Forward, "another program holds that port; let the kernel manager choose new ports (restart the kernel)",
				fmt.Errorf("listen on 127.0.0.1:%d for %s: %w", ports[i], name, err))
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// Serve relays the connections of listeners bound by Bind to targets, in
// the same order, through d. Close ends it and closes the listeners.
func Serve(d Dialer, targets []Target, lns []net.Listener) *Forwarder { return serve(d, targets, lns) }

// serve relays each listener's connections to its target.
func serve(d Dialer, targets []Target, lns []net.Listener) *Forwarder {
	f := &Forwarder{dialer: d, conns: map[net.Conn]struct{}{}, failed: make(chan struct{}),
		stop: make(chan struct{}), listeners: lns}
	for i, t := range targets {
		f.forwards = append(f.forwards, Forward{
			Name:   t.Name,
			Remote: net.JoinHostPort(t.Host, strconv.Itoa(t.Port)),
			Local:  lns[i].Addr().(*net.TCPAddr),
			Socket: t.Socket,
		})
	}
	f.plain = make([]atomic.Bool, len(targets))
	for i, ln := range f.listeners {
		f.wg.Add(1)
		go f.serve(ln, i)
	}
	return f
}

// temporaryAccept lists the Accept errors that pass: out of file
// descriptors or buffers for a moment, or a connection that went away
// before it was accepted. A forward must outlive them, or one burst ends
// it for the rest of the session.
var temporaryAccept = []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
	syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN, syscall.EPROTO}

func isTemporaryAccept(err error) bool {
	for _, t := range temporaryAccept {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// accept waits for the next connection, retrying temporary errors with
// capped backoff. It returns nil when the listener is closed (or another
// error ends it; that one is recorded).
func (f *Forwarder) accept(ln net.Listener, remote string) net.Conn {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		switch {
		case err == nil:
			return c
		case errors.Is(err, net.ErrClosed):
			return nil
		case !isTemporaryAccept(err):
			f.noteErr(fmt.Errorf("accept for %s: %w", remote, err))
			return nil
		}
		backoff = min(max(2*backoff, 5*time.Millisecond), acceptBackoffCap)
		t := time.NewTimer(backoff)
		select {
		case <-f.stop:
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (f *Forwarder) serve(ln net.Listener, i int) {
	defer f.wg.Done()
	remote := f.forwards[i].Remote
	for {
		local := f.accept(ln, remote)
		if local == nil {
			return
		}
		if !f.track(local) {
			local.Close()
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(local)
			f.pass(local, i)
		}()
	}
}

// pass relays one accepted connection to forward i's target, answering a
// ZeroMQ client's handshake from here first where the forward says so.
func (f *Forwarder) pass(local net.Conn, i int) {
	fw := &f.forwards[i]
	var h handshake
	if fw.Socket != "" && !f.plain[i].Load() {
		h = answerClient(local, fw.Socket)
	}
	rc, down, err := f.dial(fw.Remote, h.full)
	if err != nil {
		f.noteErr(fmt.Errorf("open forward to %s: %w", fw.Remote, err))
		local.Close()
		return
	}
	if !f.track(rc) {
		rc.Close()
		local.Close()
		return
	}
	defer f.untrack(rc)
	if down == nil { // not a greeted prime: the kernel has yet to be greeted
		down, err = h.meetKernel(rc)
	}
	if err != nil {
		if errors.Is(err, errHandshake) {
			f.plain[i].Store(true) // the client's socket reconnects, to a plain relay
		}
		local.Close()
		return
	}
	relay(local, rc, down)
}

// dial connects to remote for a local client: a primed connection if
// there is one that suits it (Prime; a greeted one, with what the kernel
// sends after its handshake, only for a client whose handshake was
// answered here), else a new one through the current dialer.
func (f *Forwarder) dial(remote string, answered bool) (net.Conn, io.Reader, error) {
	if c, down := f.takePrimed(remote, answered); c != nil {
		return c, down, nil
	}
	f.mu.Lock()
	d := f.dialer
	f.mu.Unlock()
	c, err := d.Dial("tcp", remote)
	return c, nil, err
}

// relay copies both ways (what b sends read from down, b itself or what
// is left of it after the kernel's handshake), passing a half-close on as
// a half-close, and closes both ends when both directions are done. When the remote end is
// an SSH channel that the server closed (not just half-closed), the local
// connection is closed as soon as everything the server sent is written,
// as ssh -L does.
func relay(a, b net.Conn, down io.Reader) {
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		_, _ = copyConn(b, a)
		closeWrite(b)
	}()
	_, _ = copyConn(a, down)
	closeWrite(a)
	closed := closedOf(b)
	select {
	case <-upDone:
	case <-closed:
		a.Close()
		<-upDone
	}
	a.Close()
	b.Close()
}

// copyBufSize is the relay's copy buffer. An SSH channel hands over every
// packet already received in one Read (x/crypto's packets are 32 KiB at
// most), so a large buffer turns several packets into one write to the
// local socket, and one read of a local burst feeds several packets:
// fewer system calls per byte than io.Copy's 32 KiB.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// copyConn copies src to dst through a pooled copyBufSize buffer. The
// plain Reader and Writer hide the connections' ReadFrom and WriteTo,
// which would copy through their own 32 KiB buffer (Linux can splice
// only between sockets and files, never into an SSH channel).
func copyConn(dst io.Writer, src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *bp)
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	c.Close()
}

// SetDialer points new connections at a new SSH connection; the
// listeners, and so the local ports, stay as they are.
func (f *Forwarder) SetDialer(d Dialer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dialer = d
	f.dropPrimed() // opened on the connection before
}

// DropConnections closes every relayed connection but keeps listening.
// After a lost link the frontend's ZeroMQ sockets must see their
// connections end at once: they then queue messages and reconnect, where a
// relay half-open on a dead SSH channel would swallow the next message.
func (f *Forwarder) DropConnections() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
	f.dropPrimed()
}

func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

func (f *Forwarder) noteErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.firstErr == nil {
		f.firstErr = err
		close(f.failed)
	}
}

// DialError is the first failure to open a forward, if any; it explains a
// ready check that got no answer. A refusal by the SSH server wraps its
// *ssh.OpenChannelError, whose Reason says whether forwarding is
// prohibited there.
func (f *Forwarder) DialError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.firstErr
}

// Failed is closed with the first failure to open a forward (DialError),
// so that a wait on the tunnel can end at once.
func (f *Forwarder) Failed() <-chan struct{} { return f.failed }

// Forwards are the listeners, in the order of the targets, with the local
// ports they were bound to.
func (f *Forwarder) Forwards() []Forward { return f.forwards }

// Close stops the listeners, cuts every relayed connection and waits for
// the relays to finish, at most relayWait.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if !f.closed {
		close(f.stop)
	}
	f.closed = true
	f.dropPrimed()
	var errs []error
	for _, ln := range f.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	if !waitTimeout(&f.wg, relayWait) {
		errs = append(errs, fmt.Errorf("%w in %s", errRelaysStuck, relayWait))
	}
	return errors.Join(errs...)
}

// waitTimeout waits for wg, at most d; it reports whether wg was done.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
