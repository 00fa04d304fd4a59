package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/kq-dev/kq/launcher/kinds"
	"golang.org/x/crypto/ssh"
)

var (
	_ Dialer = SSH{}
	_ Dialer = (*ssh.Client)(nil)
)

// Probe asks the host to open a forward to a port that nothing
// listens on. A host that forwards answers "connect failed"; one whose
// sshd forbids forwarding answers "administratively prohibited", and then
// kq stops before starting anything there.
// name is the host as errors should call it.
func Probe(ctx context.Context, c *ssh.Client, name string) error {
	pctx, cancel := context.WithTimeout(ctx, channelOpenTimeout)
	defer cancel()
	conn, err := SSH{Client: c}.DialContext(pctx, "tcp", "127.0.0.1:1")
	if err == nil {
		conn.Close()
		return nil
	}
	var oce *ssh.OpenChannelError
	switch {
	case errors.As(err, &oce) && oce.Reason == ssh.Prohibited:
		return kinds.With(kinds.Forward, "the host's sshd_config has AllowTcpForwarding no (or a PermitOpen list); kq needs local forwarding",
			fmt.Errorf("%s forbids TCP forwarding: %w", name, err))
	case errors.As(err, &oce): // refused: forwarding works
		return nil
	case ctx.Err() != nil:
		return kinds.With(kinds.Interrupted, "", fmt.Errorf("probe forwarding on %s: %w", name, context.Cause(ctx)))
	}
	return kinds.With(kinds.Connect, "", fmt.Errorf("probe forwarding on %s: %w", name, err))
}

// SSH is the Dialer of a forward through an SSH connection. It opens
// direct-tcpip channels itself, rather than through ssh.Client.Dial, to
// learn when the server closes a channel for good: EOF from the server is
// passed on as a half-close, but CLOSE closes the local connection
// entirely, as ssh -L does. A ZeroMQ peer never sees a half-open
// connection into which its next message would vanish. Every channel open
// is bounded in time: x/crypto waits for the server's answer for ever.
type SSH struct {
	// Client is the connection to open channels on.
	Client *ssh.Client
}

// directTCPIP is the RFC 4254 7.2 channel-open payload.
type directTCPIP struct {
	Addr     string
	Port     uint32
	OrigAddr string
	OrigPort uint32
}

// Dial opens a direct-tcpip channel to addr ("host:port" as seen from the
// server), giving the server channelOpenTimeout to answer. network is
// always TCP.
func (d SSH) Dial(network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), channelOpenTimeout)
	defer cancel()
	return d.DialContext(ctx, network, addr)
}

// DialContext is Dial bounded by ctx instead. A refusal by the server is
// an *ssh.OpenChannelError.
func (d SSH) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", portStr, err)
	}
	ch, reqs, err := openChannel(ctx, d.Client, "direct-tcpip", ssh.Marshal(&directTCPIP{
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
