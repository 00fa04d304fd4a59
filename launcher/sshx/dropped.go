package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

// Retries of a connection the server closed before it sent a byte: what
// sshd does beyond MaxStartups (10:30:100 by default) unauthenticated
// connections, so 50 sessions started at once all get in.
const (
	droppedRetries = 8
	droppedBackoff = 50 * time.Millisecond
	droppedMax     = 2 * time.Second
)

// heardConn keeps the first bytes the server sends, to tell whether it
// sent its version banner ("SSH-2.0-...") before the connection ended.
// sshd past MaxStartups writes "Exceeded MaxStartups" and closes.
type heardConn struct {
	net.Conn
	mu    sync.Mutex
	first []byte
	done  atomic.Bool // bannered, or enough heard
}

const heardMax = 256

func (c *heardConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.done.Load() {
		c.mu.Lock()
		c.first = append(c.first, p[:min(n, heardMax-len(c.first))]...)
		if len(c.first) >= heardMax || bytes.Contains(c.first, []byte("SSH-")) {
			c.done.Store(true)
		}
		c.mu.Unlock()
	}
	return n, err
}

// unbannered is what the server sent if it never sent its banner, and
// whether that is so.
func (c *heardConn) unbannered() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if bytes.Contains(c.first, []byte("SSH-")) || len(c.first) >= heardMax {
		return "", false
	}
	return strings.TrimSpace(string(c.first)), true
}

// droppedError is a handshake that failed because the server closed the
// connection before its version banner.
type droppedError struct {
	said string // what it sent instead, if anything
	err  error
}

func (e *droppedError) Error() string {
	if e.said != "" {
		return fmt.Sprintf("the server closed the connection before its banner, saying %q (sshd's MaxStartups): %v", e.said, e.err)
	}
	return fmt.Sprintf("the server closed the connection before its banner (sshd's MaxStartups?): %v", e.err)
}

func (e *droppedError) Unwrap() error { return e.err }

// dialRetrying is dialHop, tried again with backoff and jitter while the
// server drops the connection before its banner; any other failure, or a
// hop behind a ProxyCommand (a command is not re-run), is final at once.
func dialRetrying(ctx context.Context, a *Authenticator, via *ssh.Client, s profiles.SSHSettings, name string) (*ssh.Client, io.Closer, error) {
	wait := droppedBackoff
	for attempt := 1; ; attempt++ {
		client, proxy, err := dialHop(ctx, a, via, s, name)
		var de *droppedError
		if err == nil || !errors.As(err, &de) || s.ProxyCommand != "" || attempt > droppedRetries {
			return client, proxy, err
		}
		d := wait/2 + rand.N(wait)
		if a.Verbose != nil {
			a.Verbose("%s: %v; trying again in %s (%d of %d)", s.Alias, de, d.Round(time.Millisecond), attempt, droppedRetries)
		}
		select {
		case <-ctx.Done():
			return nil, nil, err
		case <-time.After(d):
		}
		wait = min(2*wait, droppedMax)
	}
}
