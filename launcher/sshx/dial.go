// Package sshx is kq's SSH transport: a chain of hops (ProxyJump) dialled
// over one TCP connection from here, each hop host-key checked against its
// known_hosts and authenticated with the agent, identity files,
// passphrases, passwords or keyboard-interactive; prompts that never hang
// (a terminal, SSH_ASKPASS, or an immediate failure); and keepalives with
// timers, because an x/crypto/ssh request blocks for ever on a dead link.
// It knows nothing of kernels or sessions: it gets resolved
// profiles.SSHSettings and marks its errors with package kinds.
package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kq-dev/kq/launcher/kinds"
	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

// defaultConnectTimeout bounds TCP connect plus SSH handshake when the ssh
// config sets no ConnectTimeout, so an unreachable host never hangs kq.
const defaultConnectTimeout = 20 * time.Second

// HopName describes a hop in errors: its name, its place in the chain and
// the settings it was resolved to, so a failure says which machine and
// which key, user and known_hosts were involved.
func HopName(s profiles.SSHSettings, i, n int) string {
	role := "host"
	if i < n-1 {
		role = fmt.Sprintf("jump host %d of %d", i+1, n-1)
	}
	ids := Existing(s.IdentityFiles)
	if len(ids) == 0 {
		ids = []string{"none found"}
	}
	kh := Existing(s.KnownHostsFiles())
	if len(kh) == 0 {
		kh = []string{"none found"}
	}
	return fmt.Sprintf("%s %s (%s@%s, identity files %s, known_hosts %s)", role, s.Alias, s.User, s.Address(),
		strings.Join(ids, " "), strings.Join(kh, " "))
}

// hopRole is "host NAME" or "jump host NAME".
func hopRole(s profiles.SSHSettings, i, n int) string {
	if i < n-1 {
		return "jump host " + s.Alias
	}
	return "host " + s.Alias
}

// Existing filters paths to the files that exist: ssh -G lists every
// default identity file whether it is there or not. A dry run shows what a
// dial would use with it.
func Existing(paths []string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Chain is the SSH connections of a session, outermost first; the last one
// is the host's. All of them ride on one TCP connection from here.
type Chain struct {
	clients []*ssh.Client
	names   []string    // "jump host login", "host gpu": for errors
	proxies []io.Closer // ProxyCommand processes, ended by Close
}

// name is hop i's name in errors.
func (c *Chain) name(i int) string {
	if i < len(c.names) {
		return c.names[i]
	}
	return fmt.Sprintf("hop %d", i+1)
}

// newChain makes a chain of connections already made, outermost first,
// so that code written for a dialled chain can run on a bare connection.
func newChain(clients ...*ssh.Client) *Chain {
	return &Chain{clients: clients}
}

// Host is the connection to the profile's host, the last hop.
func (c *Chain) Host() *ssh.Client { return c.clients[len(c.clients)-1] }

// Close closes the connections innermost first, as each one rides on the
// one before it. Connections already closed (by a watch that found the
// link dead, say) are not an error.
func (c *Chain) Close() error {
	var errs []error
	for i := len(c.clients) - 1; i >= 0; i-- {
		if err := ignoreClosed(c.clients[i].Close()); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range c.proxies {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// ignoreClosed drops the errors of closing what is already closed.
func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Dial opens the hops in order over one TCP connection from here: the
// first by TCP, each next one as a direct-tcpip channel through the one
// before. Each hop is host-key checked under its own name. A session is
// started on every jump host's connection: sshd switches Nagle's algorithm
// off only once a session exists, and a forwarding-only hop otherwise
// delays every small message by tens of milliseconds.
// A failure is marked with a kind (kinds.Auth, kinds.HostKey,
// kinds.Forward, kinds.Interrupted, kinds.Connect) and names the hop.
func Dial(ctx context.Context, a *Authenticator, hops []profiles.SSHSettings) (*Chain, error) {
	c := &Chain{}
	for i, s := range hops {
		var via *ssh.Client
		if i > 0 {
			via = c.clients[i-1]
		}
		client, proxy, err := dialRetrying(ctx, a, via, s, HopName(s, i, len(hops)))
		if err != nil {
			c.Close()
			return nil, err
		}
		c.clients = append(c.clients, client)
		c.names = append(c.names, hopRole(s, i, len(hops)))
		if proxy != nil {
			c.proxies = append(c.proxies, proxy)
		}
		if a.Dialed != nil {
			a.Dialed(i)
		}
		if i < len(hops)-1 {
			go nudgeNoDelay(client)
		}
	}
	return c, nil
}

// nudgeNoDelay runs "true" on a jump host; its outcome does not matter
// (a host may forbid commands and still forward).
func nudgeNoDelay(c *ssh.Client) {
	sess, err := c.NewSession()
	if err != nil {
		return
	}
	defer sess.Close()
	_ = sess.Run("true")
}

// dialHop opens one authenticated, host-key-checked SSH connection to s,
// directly (via == nil) or through via. Connect and handshake share one
// deadline, which stands still while the user answers a prompt; ctx
// cancels all of it.
func dialHop(ctx context.Context, a *Authenticator, via *ssh.Client, s profiles.SSHSettings, name string) (*ssh.Client, io.Closer, error) {
	timeout := s.ConnectTimeout
	if timeout <= 0 {
		timeout = defaultConnectTimeout
	}
	cb, algos, err := a.hostKeyCallback(s)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	cfg := &ssh.ClientConfig{User: s.User, HostKeyCallback: cb}
	if err := applyAlgorithms(cfg, s, algos); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	a.phase("connecting to %s (%s)", s.Alias, s.Address())
	raw, err := connect(ctx, via, s, timeout, a.ProxyStderr)
	if err != nil {
		return nil, nil, classifyConnect(ctx, name, err)
	}
	conn := net.Conn(&heardConn{Conn: raw})
	if _, isProxy := raw.(*proxyConn); isProxy {
		conn = raw
	}
	a.phase("authenticating to %s as %s", s.Alias, s.User)
	proxy, _ := conn.(*proxyConn)
	// Keys are loaded once the host is known to be there, so an unreachable
	// host is reported as such, as ssh does.
	auth, closeAgent := a.methods(s)
	defer closeAgent()
	cfg.Auth = auth
	c, chans, reqs, timedOut, err := handshake(ctx, a, conn, knownHostsAddress(s), cfg, timeout)
	if proxy != nil {
		defer proxy.handshakeDone()
	}
	if err != nil {
		if hc, ok := conn.(*heardConn); ok && !timedOut && ctx.Err() == nil {
			if said, dropped := hc.unbannered(); dropped {
				err = &droppedError{said: said, err: err} // closed before its banner: sshd's MaxStartups
			}
		}
		err = a.explainRefusal(s, handshakeError(ctx, conn, proxy, err, timedOut)) // certificates
		return nil, nil, explainUnloadable(s, explainMethods(s, classifyHandshake(ctx, name, err)))
	}
	client := ssh.NewClient(c, chans, reqs)
	if proxy != nil {
		return client, proxy, nil
	}
	return client, nil, nil
}

// handshake runs the SSH handshake on conn within timeout, which stands
// still while the user answers a prompt; ctx cancels it. A channel has no
// deadlines of its own: closing the connection is what ends a handshake
// that runs out of time or is cancelled.
func handshake(ctx context.Context, a *Authenticator, conn net.Conn, addr string, cfg *ssh.ClientConfig,
	timeout time.Duration) (c ssh.Conn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, timedOut bool, err error) {
	var fired atomic.Bool
	dl := newPausableDeadline(timeout, func() {
		fired.Store(true)
		conn.Close()
	})
	a.pause, a.resume = dl.pause, dl.resume
	defer func() { a.pause, a.resume = func() {}, func() {} }()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err = ssh.NewClientConn(conn, addr, cfg)
	expired := !dl.stop()
	if !stop() || expired || err != nil {
		if err == nil {
			c.Close()
			err = os.ErrDeadlineExceeded
		}
		return nil, nil, nil, fired.Load(), err
	}
	return c, chans, reqs, false, nil
}

// handshakeError closes the connection of a failed, expired or cancelled
// handshake and says why it failed; a ProxyCommand that exited is the
// reason when nothing else is.
func handshakeError(ctx context.Context, conn net.Conn, proxy *proxyConn, err error, timedOut bool) error {
	if proxy != nil {
		if err != nil && !timedOut && ctx.Err() == nil && !isTrustOrAuth(err) {
			err = proxy.failure(err)
		}
		proxy.handshakeDone()
	}
	conn.Close()
	if err == nil {
		err = os.ErrDeadlineExceeded
	}
	if timedOut && ctx.Err() == nil {
		err = fmt.Errorf("%w: %w", os.ErrDeadlineExceeded, err)
	}
	return err
}

// isTrustOrAuth says err is the server's or known_hosts' answer, not a
// broken byte stream.
func isTrustOrAuth(err error) bool {
	var he *hostKeyError
	return errors.As(err, &he) || errors.Is(err, errNeverAsks) || errors.Is(err, errNoPrompt) ||
		errors.Is(err, errWrongPassphrase) || methodsExhausted(err)
}

// methodsExhausted reports x/crypto's failure for having tried every auth
// method the server would take: it has no type, only the text "unable to
// authenticate", so this is the one place that reads it.
func methodsExhausted(err error) bool {
	return err != nil && strings.Contains(err.Error(), "unable to authenticate")
}

// pausableDeadline calls fire once d has run out, not counting the time
// between pause and resume.
type pausableDeadline struct {
	mu      sync.Mutex
	timer   *time.Timer
	left    time.Duration
	started time.Time
	done    bool
}

func newPausableDeadline(d time.Duration, fire func()) *pausableDeadline {
	p := &pausableDeadline{left: d, started: time.Now()}
	p.timer = time.AfterFunc(d, func() {
		p.mu.Lock()
		p.done = true
		p.mu.Unlock()
		fire()
	})
	return p
}

func (p *pausableDeadline) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.timer.Stop() {
		p.left -= time.Since(p.started)
	}
}

func (p *pausableDeadline) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done {
		p.started = time.Now()
		p.timer.Reset(max(p.left, time.Second))
	}
}

// stop ends the deadline; it reports false if it had already fired.
func (p *pausableDeadline) stop() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timer.Stop()
	return !p.done
}

// connect opens the byte stream to s within timeout: its ProxyCommand's
// pipes (proxycommand.go), TCP from here (see dialTCP), or a direct-tcpip
// channel through via.
func connect(ctx context.Context, via *ssh.Client, s profiles.SSHSettings, timeout time.Duration, proxyStderr io.Writer) (net.Conn, error) {
	if s.ProxyCommand != "" {
		return startProxy(s.ProxyCommand, s.Address(), proxyStderr)
	}
	if via == nil {
		return dialTCP(ctx, s, timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := s.Address()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := via.Dial("tcp", addr)
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		go func() { // a late success must not leak a channel
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// classifyConnect names what went wrong before SSH spoke and marks it
// with its kind.
func classifyConnect(ctx context.Context, name string, err error) error {
	var oce *ssh.OpenChannelError
	switch {
	case ctx.Err() != nil:
		return kinds.With(kinds.Interrupted, "", fmt.Errorf("connect to %s: %w", name, ctx.Err()))
	case errors.As(err, &oce) && oce.Reason == ssh.Prohibited:
		return kinds.With(kinds.Forward, "the jump host's sshd_config has AllowTcpForwarding no (or a PermitOpen that excludes this host)",
			fmt.Errorf("connect to %s: the jump host before it forbids TCP forwarding: %w", name, err))
	case errors.As(err, &oce):
		return kinds.With(kinds.Connect, "the jump host could not reach it: check HostName and Port as seen from the jump host",
			fmt.Errorf("connect to %s through the jump host: %w", name, err))
	case errors.Is(err, context.DeadlineExceeded):
		return kinds.With(kinds.Connect, "the host did not answer in time; check the address, or raise ConnectTimeout",
			fmt.Errorf("connect to %s: timed out", name))
	}
	return kinds.With(kinds.Connect, "check the host name and port, and that sshd runs there",
		fmt.Errorf("connect to %s: %w", name, err))
}

// classifyHandshake names what went wrong in an SSH handshake and marks it
// with its kind.
func classifyHandshake(ctx context.Context, where string, err error) error {
	var he *hostKeyError
	var ke *krbError
	var ce *certRefusedError
	var ne *ssh.AlgorithmNegotiationError
	switch {
	case errors.As(err, &ne):
		return negotiationFailed(where, ne)
	case errors.As(err, &he):
		return kinds.With(kinds.HostKey, he.hint(), fmt.Errorf("%s: %w", where, he))
	case errors.As(err, &ke):
		return kinds.With(kinds.Auth, ke.hint, fmt.Errorf("%s: %w", where, ke))
	case errors.As(err, &ce):
		return kinds.With(kinds.Auth, ce.hint(), fmt.Errorf("%s: %w", where, ce))
	case ctx.Err() != nil:
		return kinds.With(kinds.Interrupted, "", fmt.Errorf("%s: %w", where, ctx.Err()))
	// The server's disconnect message is text only: x/crypto's
	// disconnect type is unexported and its reason code (2, protocol
	// error) says nothing of why.
	case strings.Contains(err.Error(), "Too many authentication failures"):
		return kinds.With(kinds.Auth, "too many keys were offered before the right one (the agent holds many?); "+
			"set IdentitiesOnly yes and IdentityFile for this host in ssh config",
			fmt.Errorf("%s: server refused after too many authentication attempts", where))
	case errors.Is(err, errRevokedUnreadable):
		return kinds.With(kinds.HostKey, "fix or remove RevokedHostKeys in ssh config; kq never connects to a host it could not check",
			fmt.Errorf("%s: %w", where, err))
	case errors.Is(err, errNeverAsks):
		return kinds.With(kinds.Auth, "load the key into ssh-agent (ssh-add) where the kernel manager sees SSH_AUTH_SOCK, or use an unencrypted key; run kq PROFILE once at a terminal so the host key is known",
			fmt.Errorf("%s: authentication needs an answer: %w", where, err))
	case errors.Is(err, errNoPrompt):
		return kinds.With(kinds.Auth, "load the key into ssh-agent (ssh-add), run kq from a terminal, or set SSH_ASKPASS",
			fmt.Errorf("%s: authentication needs an answer kq cannot ask for: %w", where, err))
	case errors.Is(err, errWrongPassphrase) || methodsExhausted(err):
		return kinds.With(kinds.Auth, "check that your public key is in the server's authorized_keys, or that ssh-agent holds the right key",
			fmt.Errorf("%s: server refused every key offered", where))
	case errors.Is(err, os.ErrDeadlineExceeded):
		return kinds.With(kinds.Connect, "the host accepted TCP but did not complete the SSH handshake in time",
			fmt.Errorf("%s: handshake timed out", where))
	}
	return kinds.With(kinds.Connect, "", fmt.Errorf("%s: %w", where, err))
}
