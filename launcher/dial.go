package launcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
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
	var files []string
	for _, f := range s.KnownHostsFiles() {
		if _, err := os.Stat(f); err == nil {
			files = append(files, f)
		}
	}
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

// dial opens one authenticated, host-key-checked SSH connection to s.
// TCP connect and the handshake share one deadline, and ctx cancels both.
func dial(ctx context.Context, s profiles.SSHSettings) (*ssh.Client, error) {
	where := fmt.Sprintf("%s@%s", s.User, s.Address())
	timeout := s.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	cb, algos, err := hostKeyCallback(s)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", s.Address())
	if err != nil {
		if ctx.Err() != nil {
			return nil, withKind(ErrInterrupted, "", fmt.Errorf("connect to %s: %w", where, ctx.Err()))
		}
		return nil, withKind(errConnect, "check the host name and port, and that sshd runs there",
			fmt.Errorf("connect to %s: %w", where, err))
	}
	// Keys are loaded once the host is known to be there, so an unreachable
	// host is reported as such, as ssh does.
	auth, closeAgent, err := authMethods(s)
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer closeAgent()
	cfg := &ssh.ClientConfig{
		User:              s.User,
		Auth:              auth,
		HostKeyCallback:   cb,
		HostKeyAlgorithms: algos,
		Timeout:           timeout,
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, s.Address(), cfg)
	stop()
	if err != nil {
		conn.Close()
		return nil, classifyHandshake(ctx, where, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// errConnect marks a network failure before SSH spoke; it maps to the
// generic error exit code.
var errConnect = errors.New("connect failed")

func classifyHandshake(ctx context.Context, where string, err error) error {
	var he *hostKeyError
	switch {
	case errors.As(err, &he):
		return withKind(ErrHostKey, he.hint(), fmt.Errorf("ssh %s: %w", where, he))
	case ctx.Err() != nil:
		return withKind(ErrInterrupted, "", fmt.Errorf("ssh %s: %w", where, ctx.Err()))
	case strings.Contains(err.Error(), "unable to authenticate"):
		return withKind(ErrAuth, "check that your public key is in the server's authorized_keys, or that ssh-agent holds the right key",
			fmt.Errorf("ssh %s: server refused every key offered", where))
	case errors.Is(err, os.ErrDeadlineExceeded):
		return withKind(errConnect, "the host accepted TCP but did not complete the SSH handshake in time",
			fmt.Errorf("ssh %s: handshake timed out", where))
	}
	return withKind(errConnect, "", fmt.Errorf("ssh %s: %w", where, err))
}
