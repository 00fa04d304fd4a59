package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Dialer opens a connection as seen from the SSH server; *ssh.Client is one.
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
}

// forwarder relays every accepted local connection through one SSH
// connection. Listeners are bound first, on free ports of 127.0.0.1 only, so
// two sessions never collide and nothing is reachable from the network.
type forwarder struct {
	dialer    Dialer // guarded by mu: a reconnect swaps it
	forwards  []Forward
	listeners []net.Listener

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	firstErr error
	failed   chan struct{} // closed with the first failed forward
	closed   bool
	stop     chan struct{} // closed by close: ends the accept loops' backoff
	wg       sync.WaitGroup
}

// Bounds of the forwarder's waits.
const (
	// channelOpenTimeout bounds one direct-tcpip open: x/crypto waits for
	// the server's answer for ever, and a dead link never brings it.
	channelOpenTimeout = 20 * time.Second
	// relayWait bounds close's wait for the relays to end.
	relayWait = 5 * time.Second
	// acceptBackoffCap caps the pause after a temporary Accept error.
	acceptBackoffCap = time.Second
)

// errRelaysStuck: close gave up waiting for relayed connections.
var errRelaysStuck = errors.New("relayed connections did not end")

// Target names a remote port to forward.
type Target struct {
	Name string
	Host string
	Port int
}

// listenForwards binds one listener per target and starts relaying.
func listenForwards(d Dialer, targets []Target) (*forwarder, error) {
	var lns []net.Listener
	for _, t := range targets {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, withKind(ErrForward, "", fmt.Errorf("listen for %s: %w", t.Name, err))
		}
		lns = append(lns, ln)
	}
	return serveForwards(d, targets, lns), nil
}

// serveForwards relays each listener's connections to its target.
func serveForwards(d Dialer, targets []Target, lns []net.Listener) *forwarder {
	f := &forwarder{dialer: d, conns: map[net.Conn]struct{}{}, failed: make(chan struct{}),
		stop: make(chan struct{}), listeners: lns}
	for i, t := range targets {
		f.forwards = append(f.forwards, Forward{
			Name:   t.Name,
			Remote: net.JoinHostPort(t.Host, strconv.Itoa(t.Port)),
			Local:  lns[i].Addr().(*net.TCPAddr),
		})
	}
	for i, ln := range f.listeners {
		f.wg.Add(1)
		go f.serve(ln, f.forwards[i].Remote)
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
func (f *forwarder) accept(ln net.Listener, remote string) net.Conn {
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

func (f *forwarder) serve(ln net.Listener, remote string) {
	defer f.wg.Done()
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
			f.mu.Lock()
			d := f.dialer
			f.mu.Unlock()
			rc, err := d.Dial("tcp", remote)
			if err != nil {
				f.noteErr(fmt.Errorf("open forward to %s: %w", remote, err))
				local.Close()
				return
			}
			if !f.track(rc) {
				rc.Close()
				local.Close()
				return
			}
			defer f.untrack(rc)
			relay(local, rc)
		}()
	}
}

// relay copies both ways, passing a half-close on as a half-close, and
// closes both ends when both directions are done. When the remote end is
// an SSH channel that the server closed (not just half-closed), the local
// connection is closed as soon as everything the server sent is written,
// as ssh -L does.
func relay(a, b net.Conn) {
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		_, _ = io.Copy(b, a)
		closeWrite(b)
	}()
	_, _ = io.Copy(a, b)
	closeWrite(a)
	var closed <-chan struct{}
	if cc, ok := b.(interface{ Closed() <-chan struct{} }); ok {
		closed = cc.Closed()
	}
	select {
	case <-upDone:
	case <-closed:
		a.Close()
		<-upDone
	}
	a.Close()
	b.Close()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	c.Close()
}

// setDialer points new connections at a new SSH connection; the
// listeners, and so the local ports, stay as they are.
func (f *forwarder) setDialer(d Dialer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dialer = d
}

// dropConnections closes every relayed connection but keeps listening.
// After a lost link the frontend's ZeroMQ sockets must see their
// connections end at once: they then queue messages and reconnect, where a
// relay half-open on a dead SSH channel would swallow the next message.
func (f *forwarder) dropConnections() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
}

func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

func (f *forwarder) noteErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.firstErr == nil {
		f.firstErr = err
		close(f.failed)
	}
}

// dialError is the first failure to open a forward, if any; it explains a
// ready check that got no answer.
func (f *forwarder) dialError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.firstErr
}

// close stops the listeners, cuts every relayed connection and waits for
// the relays to finish.
func (f *forwarder) close() error {
	f.mu.Lock()
	if !f.closed {
		close(f.stop)
	}
	f.closed = true
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

// probeForwarding asks the host to open a forward to a port that nothing
// listens on. A host that forwards answers "connect failed"; one whose
// sshd forbids forwarding answers "administratively prohibited", and then
// kq stops before starting anything there.
func probeForwarding(ctx context.Context, c *ssh.Client, name string) error {
	pctx, cancel := context.WithTimeout(ctx, channelOpenTimeout)
	defer cancel()
	conn, err := sshDialer{c}.dial(pctx, "127.0.0.1:1")
	if err == nil {
		conn.Close()
		return nil
	}
	var oce *ssh.OpenChannelError
	switch {
	case errors.As(err, &oce) && oce.Reason == ssh.Prohibited:
		return withKind(ErrForward, "the host's sshd_config has AllowTcpForwarding no (or a PermitOpen list); kq needs local forwarding",
			fmt.Errorf("%s forbids TCP forwarding: %w", name, err))
	case errors.As(err, &oce): // refused: forwarding works
		return nil
	case ctx.Err() != nil:
		return withKind(ErrInterrupted, "", fmt.Errorf("probe forwarding on %s: %w", name, context.Cause(ctx)))
	}
	return withKind(errConnect, "", fmt.Errorf("probe forwarding on %s: %w", name, err))
}

// sshDialer opens direct-tcpip channels itself, rather than through
// ssh.Client.Dial, to learn when the server closes a channel for good:
// EOF from the server is passed on as a half-close, but CLOSE closes the
// local connection entirely, as ssh -L does. A ZeroMQ peer never sees a
// half-open connection into which its next message would vanish.
type sshDialer struct{ c *ssh.Client }

// directTCPIP is the RFC 4254 7.2 channel-open payload.
type directTCPIP struct {
	Addr     string
	Port     uint32
	OrigAddr string
	OrigPort uint32
}

// Dial opens a direct-tcpip channel to addr, giving the server
// channelOpenTimeout to answer.
func (d sshDialer) Dial(network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), channelOpenTimeout)
	defer cancel()
	return d.dial(ctx, addr)
}

func (d sshDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", portStr, err)
	}
	ch, reqs, err := openChannel(ctx, d.c, "direct-tcpip", ssh.Marshal(&directTCPIP{
		Addr: host, Port: uint32(port), OrigAddr: "127.0.0.1", OrigPort: 0}))
	if err != nil {
		return nil, err
	}
	cc := &channelConn{Channel: ch, closed: make(chan struct{}), remote: addr}
	go func() {
		for req := range reqs { // closed once the channel is closed
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
		close(cc.closed)
	}()
	return cc, nil
}

// openChannel is OpenChannel bounded by ctx. A channel the server opens
// after ctx ended is closed.
func openChannel(ctx context.Context, c ssh.Conn, kind string, payload []byte) (ssh.Channel, <-chan *ssh.Request, error) {
	type result struct {
		ch   ssh.Channel
		reqs <-chan *ssh.Request
		err  error
	}
	res := make(chan result, 1)
	go func() {
		ch, reqs, err := c.OpenChannel(kind, payload)
		res <- result{ch, reqs, err}
	}()
	select {
	case r := <-res:
		return r.ch, r.reqs, r.err
	case <-ctx.Done():
		go func() {
			if r := <-res; r.err == nil {
				go ssh.DiscardRequests(r.reqs)
				r.ch.Close()
			}
		}()
		return nil, nil, fmt.Errorf("open %s channel: %w", kind, context.Cause(ctx))
	}
}

// channelConn is an SSH channel as a net.Conn that also says when the
// channel has been closed.
type channelConn struct {
	ssh.Channel
	closed chan struct{}
	remote string
}

// Closed is closed when the server closed the channel.
func (c *channelConn) Closed() <-chan struct{}          { return c.closed }
func (c *channelConn) LocalAddr() net.Addr              { return dummyAddr("ssh-local") }
func (c *channelConn) RemoteAddr() net.Addr             { return dummyAddr(c.remote) }
func (c *channelConn) SetDeadline(time.Time) error      { return nil }
func (c *channelConn) SetReadDeadline(time.Time) error  { return nil }
func (c *channelConn) SetWriteDeadline(time.Time) error { return nil }

type dummyAddr string

func (a dummyAddr) Network() string { return "ssh" }
func (a dummyAddr) String() string  { return string(a) }
