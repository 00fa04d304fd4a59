package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/transport"
)

// zmq4 (v0.17) performs the ZMTP handshake on a plain net.Conn with no
// deadline and no context, so a peer that accepts TCP but never greets (a
// tunnel whose far side is dead does exactly that) would hang Dial forever,
// and a failed handshake leaves its net.Conn open. Its one hook is the
// transport registry: these private transports dial like the standard ones
// but tie each connection's lifetime to the socket's context, which is the
// caller's ctx and is also cancelled by Close.
const (
	tcpScheme = "kq-wire-tcp"
	ipcScheme = "kq-wire-ipc"
)

var registerTransports = sync.OnceValue(func() error {
	return errors.Join(
		zmq4.RegisterTransport(tcpScheme, ctxTransport{network: "tcp"}),
		zmq4.RegisterTransport(ipcScheme, ctxTransport{network: "unix"}),
	)
})

// ctxTransport is a zmq4 transport whose connections close when the dialling
// context ends.
type ctxTransport struct{ network string }

// Dial connects and arranges for the connection to be closed when ctx ends,
// which interrupts a handshake or a read that would otherwise block forever.
func (t ctxTransport) Dial(ctx context.Context, d transport.Dialer, addr string) (net.Conn, error) {
	c, err := d.DialContext(ctx, t.network, addr)
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { _ = c.Close() })
	if watch, ok := ctx.Value(watchKey{}).(func(net.Conn) net.Conn); ok {
		return watch(c), nil // a kept connection's (kept.go)
	}
	return c, nil
}

// watchKey carries, in a socket's context, what wraps its connection.
type watchKey struct{}

// Listen is refused: kq only ever connects to kernels.
func (t ctxTransport) Listen(context.Context, string) (net.Listener, error) {
	return nil, errors.New("listening is not supported")
}

// Addr normalises an address the way the standard transport does.
func (t ctxTransport) Addr(ep string) (string, error) {
	return transport.New(t.network).Addr(ep)
}

// privateEndpoint checks endpoint and maps it to the private transport, so a
// malformed endpoint fails at once instead of being retried until ctx ends.
func privateEndpoint(endpoint string) (string, error) {
	scheme, addr, ok := strings.Cut(endpoint, "://")
	if !ok {
		return "", fmt.Errorf("endpoint %q: want tcp://HOST:PORT or ipc://PATH", endpoint)
	}
	switch scheme {
	case "tcp":
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return "", fmt.Errorf("endpoint %q: %w", endpoint, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("endpoint %q: port %q is not in 1..65535", endpoint, port)
		}
		if host == "" || host == "*" {
			return "", fmt.Errorf("endpoint %q: no host to connect to", endpoint)
		}
		return tcpScheme + "://" + addr, nil
	case "ipc":
		if addr == "" {
			return "", fmt.Errorf("endpoint %q: empty path", endpoint)
		}
		return ipcScheme + "://" + addr, nil
	default:
		return "", fmt.Errorf("endpoint %q: transport %q is not supported (want tcp or ipc)", endpoint, scheme)
	}
}

// Connection attempts back off from dialFirstDelay to dialMaxDelay; at most
// maxDialAttempts are made (about five minutes) even if ctx has no deadline.
const (
	dialFirstDelay  = 50 * time.Millisecond
	dialMaxDelay    = time.Second
	maxDialAttempts = 300
	// maxCommands bounds how many ZMTP commands (not messages) recv skips.
	maxCommands = 100
)

var discard = log.New(io.Discard, "", 0)

// conn is one DEALER (or SUB) socket connected to one kernel socket.
type conn struct {
	sock     zmq4.Socket
	endpoint string
}

// dial opens a DEALER socket bound to ctx and connects it to endpoint,
// retrying until ctx ends because the kernel or the tunnel may not be
// accepting yet.
func dial(ctx context.Context, endpoint string) (*conn, error) {
	return dialSocket(ctx, endpoint, zmq4.NewDealer)
}

// dialSocket is dial for a socket that newSocket makes (DEALER, SUB).
func dialSocket(ctx context.Context, endpoint string, newSocket func(context.Context, ...zmq4.Option) zmq4.Socket) (*conn, error) {
	if err := registerTransports(); err != nil {
		return nil, fmt.Errorf("register zmq transports: %w", err)
	}
	private, err := privateEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	// The socket's context is ctx: zmq4 then ends Recv, Send and dials when
	// ctx does, and our transport closes the connection.
	sock := newSocket(ctx,
		zmq4.WithLogger(discard),
		zmq4.WithDialerMaxRetries(0), // we retry, interruptibly
	)
	delay := dialFirstDelay
	var last error
	for range maxDialAttempts {
		err := sock.Dial(private)
		if err == nil {
			return &conn{sock: sock, endpoint: endpoint}, nil
		}
		last = &cleanError{msg: strings.ReplaceAll(err.Error(), private, endpoint), err: err}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = sock.Close()
			return nil, fmt.Errorf("connect: %w (last attempt: %w)", ctx.Err(), last)
		case <-t.C:
		}
		delay = min(2*delay, dialMaxDelay)
	}
	_ = sock.Close()
	return nil, fmt.Errorf("connect: gave up after %d attempts: %w", maxDialAttempts, last)
}

// cleanError shows zmq4's error with the private transport name replaced by
// the endpoint the caller gave, and still unwraps to the original.
type cleanError struct {
	msg string
	err error
}

func (e *cleanError) Error() string { return e.msg }
func (e *cleanError) Unwrap() error { return e.err }

// send queues one multipart message.
func (c *conn) send(ctx context.Context, frames [][]byte) error {
	if err := c.sock.SendMulti(zmq4.NewMsgFrom(frames...)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return nil
}

// recv returns the frames of the next message, skipping ZMTP commands.
func (c *conn) recv(ctx context.Context) ([][]byte, error) {
	for range maxCommands {
		msg, err := c.sock.Recv()
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return nil, fmt.Errorf("connection closed by the kernel: %w", err)
		case err != nil:
			return nil, err
		case msg.Type == zmq4.CmdMsg:
			continue
		}
		return msg.Frames, nil
	}
	return nil, fmt.Errorf("%d ZMTP commands in a row and no message", maxCommands)
}

// close closes the socket. Its error is dropped: the exchange is over, and
// the connection may already have been closed by ctx ending.
func (c *conn) close() {
	_ = c.sock.Close()
}
