package sshx

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/kq-dev/kq/profiles"
)

// Issue 11 point 6: how the TCP connection to the first hop is made.

// dialTCP connects to s as ssh does: AddressFamily picks IPv4 or IPv6,
// BindAddress the local address, TCPKeepAlive the kernel's keepalives,
// and ConnectionAttempts tries that many times, a second apart, each
// attempt within timeout (ConnectTimeout).
func dialTCP(ctx context.Context, s profiles.SSHSettings, timeout time.Duration) (net.Conn, error) {
	d, network, err := tcpDialer(ctx, s)
	if err != nil {
		return nil, err
	}
	attempts := max(s.ConnectionAttempts, 1)
	for i := 1; ; i++ {
		actx, cancel := context.WithTimeout(ctx, timeout)
		c, err := d.DialContext(actx, network, s.Address())
		cancel()
		if err == nil {
			return newReadBuffered(c), nil
		}
		if i >= attempts || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Second):
		}
	}
}

// tcpDialer is the dialer and network for s's TCP options.
func tcpDialer(ctx context.Context, s profiles.SSHSettings) (*net.Dialer, string, error) {
	network := map[string]string{"inet": "tcp4", "inet6": "tcp6"}[s.AddressFamily]
	if network == "" {
		network = "tcp"
	}
	d := &net.Dialer{}
	if s.NoTCPKeepAlive {
		d.KeepAlive = -1
	}
	if s.BindAddress == "" {
		return d, network, nil
	}
	ip := net.ParseIP(s.BindAddress)
	if ip == nil {
		ips, err := net.DefaultResolver.LookupIP(ctx, "ip", s.BindAddress)
		if err != nil || len(ips) == 0 {
			return nil, "", fmt.Errorf("BindAddress %s: %w", s.BindAddress, err)
		}
		ip = ips[0]
	}
	d.LocalAddr = &net.TCPAddr{IP: ip}
	return d, network, nil
}

// readBufferSize is the read buffer under x/crypto's transport. x/crypto
// reads each packet through a 4 KiB bufio.Reader, so a 32 KiB packet
// costs several read system calls; with this buffer beneath it, one read
// takes in every packet the socket holds (up to 256 KiB) while output
// streams, and the rest are memory copies.
const readBufferSize = 256 << 10

// readBuffered is a connection whose reads go through a large buffer;
// everything else is the connection's own.
type readBuffered struct {
	net.Conn
	r *bufio.Reader
}

func newReadBuffered(c net.Conn) net.Conn {
	return &readBuffered{Conn: c, r: bufio.NewReaderSize(c, readBufferSize)}
}

func (c *readBuffered) Read(p []byte) (int, error) { return c.r.Read(p) }
