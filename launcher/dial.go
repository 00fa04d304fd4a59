package launcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kq-dev/kq/profiles"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// DefaultConnectTimeout bounds TCP connect plus SSH handshake when the ssh
// config sets no ConnectTimeout, so an unreachable host never hangs kq.
const DefaultConnectTimeout = 20 * time.Second

// hostKeyError explains a refused host key with what the user needs to
// decide: the key's fingerprint and the known_hosts line it contradicts.
type hostKeyError struct {
	address     string
	keyType     string
	fingerprint string
	changed     bool
	knownAt     []string // "file:line" of the keys on record
	files       []string
}

func (e *hostKeyError) Error() string {
	if e.changed {
		return fmt.Sprintf("host key for %s has CHANGED: server offers %s %s, known_hosts has a different key at %s",
			e.address, e.keyType, e.fingerprint, strings.Join(e.knownAt, ", "))
	}
	return fmt.Sprintf("host key for %s is unknown: server offers %s %s (not in %s)",
		e.address, e.keyType, e.fingerprint, strings.Join(e.files, ", "))
}

func (e *hostKeyError) hint() string {
	if e.changed {
		return "someone may be intercepting the connection, or the host was reinstalled; " +
			"check the fingerprint with the host's admin, then remove the old line (ssh-keygen -R HOST)"
	}
	return "connect once with ssh to verify and record the key, or add it to known_hosts after checking its fingerprint"
}

// hostKeyCallback checks keys against the known_hosts files in s. Missing
// files are skipped (no file at all means every host is unknown).
func hostKeyCallback(s profiles.SSHSettings) (ssh.HostKeyCallback, []string, error) {
	files := existing(s.KnownHostsFiles())
	var db *knownhosts.HostKeyDB
	if len(files) > 0 {
		var err error
		db, err = knownhosts.NewDB(files...)
		if err != nil {
			return nil, nil, fmt.Errorf("read known_hosts: %w", err)
		}
	}
	shown := files
	if len(shown) == 0 {
		shown = s.UserKnownHostsFiles
	}
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		he := &hostKeyError{address: hostname, keyType: key.Type(), fingerprint: ssh.FingerprintSHA256(key), files: shown}
		if db == nil {
			return he
		}
		err := db.HostKeyCallback()(hostname, remote, key)
		if err == nil {
			return nil
		}
		if knownhosts.IsHostKeyChanged(err) {
			he.changed = true
			var ke *xknownhosts.KeyError
			if errors.As(err, &ke) {
				for _, w := range ke.Want {
					he.knownAt = append(he.knownAt, fmt.Sprintf("%s:%d", w.Filename, w.Line))
				}
			}
			return he
		}
		if knownhosts.IsHostUnknown(err) {
			return he
		}
		return fmt.Errorf("check host key of %s: %w", hostname, err)
	}
	var algos []string
	if db != nil {
		algos = db.HostKeyAlgorithms(s.Address())
	}
	return cb, algos, nil
}

// authMethods offers the agent's keys and the identity files, in that order,
// honouring IdentitiesOnly. The agent connection, if any, is closed by the
// returned func after the handshake.
func authMethods(s profiles.SSHSettings) ([]ssh.AuthMethod, func(), error) {
	var fileSigners []ssh.Signer
	var filePubs [][]byte
	var skipped []string
	for _, f := range s.IdentityFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // ssh -G lists the default names whether they exist or not
		}
		signer, err := ssh.ParsePrivateKey(data)
		if err != nil {
			var pm *ssh.PassphraseMissingError
			if errors.As(err, &pm) {
				skipped = append(skipped, f)
				if pm.PublicKey != nil {
					filePubs = append(filePubs, pm.PublicKey.Marshal())
				}
				continue
			}
			return nil, nil, fmt.Errorf("identity file %s: %w", f, err)
		}
		fileSigners = append(fileSigners, signer)
		filePubs = append(filePubs, signer.PublicKey().Marshal())
	}
	var signers []ssh.Signer
	closeAgent := func() {}
	sock := s.IdentityAgent
	if sock == "" || strings.EqualFold(sock, "SSH_AUTH_SOCK") {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock != "" && !strings.EqualFold(sock, "none") {
		if conn, err := net.DialTimeout("unix", sock, 2*time.Second); err == nil {
			closeAgent = func() { conn.Close() }
			if agentSigners, err := agent.NewClient(conn).Signers(); err == nil {
				for _, as := range agentSigners {
					if s.IdentitiesOnly && !containsKey(filePubs, as.PublicKey().Marshal()) {
						continue
					}
					signers = append(signers, as)
				}
			}
		}
	}
	for _, fs := range fileSigners {
		if !containsSigner(signers, fs) {
			signers = append(signers, fs)
		}
	}
	_ = skipped // encrypted keys are offered through the agent only until passphrase prompts exist
	if len(signers) == 0 {
		closeAgent()
		return nil, nil, withKind(ErrAuth,
			"load a key into ssh-agent (ssh-add) or set IdentityFile for the host",
			fmt.Errorf("no usable key: no agent keys and no unencrypted identity file among %s",
				strings.Join(s.IdentityFiles, ", ")))
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, closeAgent, nil
}

func containsKey(list [][]byte, k []byte) bool {
	for _, l := range list {
		if bytes.Equal(l, k) {
			return true
		}
	}
	return false
}

func containsSigner(list []ssh.Signer, s ssh.Signer) bool {
	k := s.PublicKey().Marshal()
	for _, l := range list {
		if bytes.Equal(l.PublicKey().Marshal(), k) {
			return true
		}
	}
	return false
}

// hopName describes a hop in errors: its name, its place in the chain and
// the settings it was resolved to, so a failure says which machine and
// which key, user and known_hosts were involved.
func hopName(s profiles.SSHSettings, i, n int) string {
	role := "host"
	if i < n-1 {
		role = fmt.Sprintf("jump host %d of %d", i+1, n-1)
	}
	ids := existing(s.IdentityFiles)
	if len(ids) == 0 {
		ids = []string{"none found"}
	}
	kh := existing(s.KnownHostsFiles())
	if len(kh) == 0 {
		kh = []string{"none found"}
	}
	return fmt.Sprintf("%s %s (%s@%s, identity files %s, known_hosts %s)", role, s.Alias, s.User, s.Address(),
		strings.Join(ids, " "), strings.Join(kh, " "))
}

// existing filters paths to the files that exist: ssh -G lists every
// default identity file whether it is there or not.
func existing(paths []string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// chain is the SSH connections of a session, outermost first; the last one
// is the host's.
type chain struct {
	clients []*ssh.Client
}

// host is the connection to the profile's host.
func (c *chain) host() *ssh.Client { return c.clients[len(c.clients)-1] }

// Close closes the connections innermost first, as each one rides on the
// one before it.
func (c *chain) Close() error {
	var errs []error
	for i := len(c.clients) - 1; i >= 0; i-- {
		if err := ignoreClosed(c.clients[i].Close()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// dialChain opens the hops in order over one TCP connection from here: the
// first by TCP, each next one as a direct-tcpip channel through the one
// before. Each hop is host-key checked under its own name. A session is
// started on every jump host's connection: sshd switches Nagle's algorithm
// off only once a session exists, and a forwarding-only hop otherwise
// delays every small message by tens of milliseconds.
func dialChain(ctx context.Context, hops []profiles.SSHSettings) (*chain, error) {
	c := &chain{}
	for i, s := range hops {
		var via *ssh.Client
		if i > 0 {
			via = c.clients[i-1]
		}
		client, err := dialHop(ctx, via, s, hopName(s, i, len(hops)))
		if err != nil {
			c.Close()
			return nil, err
		}
		c.clients = append(c.clients, client)
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
// deadline, and ctx cancels both.
func dialHop(ctx context.Context, via *ssh.Client, s profiles.SSHSettings, name string) (*ssh.Client, error) {
	timeout := s.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	cb, algos, err := hostKeyCallback(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := connect(dctx, via, s.Address())
	if err != nil {
		return nil, classifyConnect(ctx, name, err)
	}
	// Keys are loaded once the host is known to be there, so an unreachable
	// host is reported as such, as ssh does.
	auth, closeAgent, err := authMethods(s)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer closeAgent()
	cfg := &ssh.ClientConfig{
		User:              s.User,
		Auth:              auth,
		HostKeyCallback:   cb,
		HostKeyAlgorithms: algos,
		Timeout:           timeout,
	}
	// A channel has no deadlines of its own: closing the connection is what
	// ends a handshake that runs out of time or is cancelled.
	var timedOut atomic.Bool
	stop := context.AfterFunc(dctx, func() {
		timedOut.Store(true)
		conn.Close()
	})
	c, chans, reqs, err := ssh.NewClientConn(conn, s.Address(), cfg)
	if !stop() || err != nil {
		conn.Close()
		if err == nil {
			c.Close()
			err = os.ErrDeadlineExceeded
		}
		if timedOut.Load() && ctx.Err() == nil {
			err = fmt.Errorf("%w: %w", os.ErrDeadlineExceeded, err)
		}
		return nil, classifyHandshake(ctx, name, err)
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// connect opens the byte stream to addr: TCP from here, or a direct-tcpip
// channel through via.
func connect(ctx context.Context, via *ssh.Client, addr string) (net.Conn, error) {
	if via == nil {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
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

func classifyConnect(ctx context.Context, name string, err error) error {
	var oce *ssh.OpenChannelError
	switch {
	case ctx.Err() != nil:
		return withKind(ErrInterrupted, "", fmt.Errorf("connect to %s: %w", name, ctx.Err()))
	case errors.As(err, &oce) && oce.Reason == ssh.Prohibited:
		return withKind(ErrForward, "the jump host's sshd_config has AllowTcpForwarding no (or a PermitOpen that excludes this host)",
			fmt.Errorf("connect to %s: the jump host before it forbids TCP forwarding: %w", name, err))
	case errors.As(err, &oce):
		return withKind(errConnect, "the jump host could not reach it: check HostName and Port as seen from the jump host",
			fmt.Errorf("connect to %s through the jump host: %w", name, err))
	case errors.Is(err, context.DeadlineExceeded):
		return withKind(errConnect, "the host did not answer in time; check the address, or raise ConnectTimeout",
			fmt.Errorf("connect to %s: timed out", name))
	}
	return withKind(errConnect, "check the host name and port, and that sshd runs there",
		fmt.Errorf("connect to %s: %w", name, err))
}

// errConnect marks a network failure before SSH spoke; it maps to the
// generic error exit code.
var errConnect = errors.New("connect failed")

func classifyHandshake(ctx context.Context, where string, err error) error {
	var he *hostKeyError
	switch {
	case errors.As(err, &he):
		return withKind(ErrHostKey, he.hint(), fmt.Errorf("%s: %w", where, he))
	case ctx.Err() != nil:
		return withKind(ErrInterrupted, "", fmt.Errorf("%s: %w", where, ctx.Err()))
	case strings.Contains(err.Error(), "unable to authenticate"):
		return withKind(ErrAuth, "check that your public key is in the server's authorized_keys, or that ssh-agent holds the right key",
			fmt.Errorf("%s: server refused every key offered", where))
	case errors.Is(err, os.ErrDeadlineExceeded):
		return withKind(errConnect, "the host accepted TCP but did not complete the SSH handshake in time",
			fmt.Errorf("%s: handshake timed out", where))
	}
	return withKind(errConnect, "", fmt.Errorf("%s: %w", where, err))
}
