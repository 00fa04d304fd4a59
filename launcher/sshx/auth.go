package sshx

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Authenticator holds what one run learns about credentials, so that a
// passphrase is asked at most once per key however many hops use it, and
// so that a reconnect asks nothing already answered. One serves every
// Dial of a run.
type Authenticator struct {
	// Note, when set, tells the user something about trust they should
	// know even when kq is quiet (a host key was recorded in known_hosts).
	Note func(format string, args ...any)
	// Verbose, when set, gets what -v shows: keys left out by policy,
	// identity files kq cannot load, settings kq cannot honour (such as
	// GSSAPIDelegateCredentials).
	Verbose func(format string, args ...any)
	// ProxyStderr, when set (kq -v), gets a ProxyCommand's stderr as it
	// comes; without it the stderr is only shown when the command fails.
	ProxyStderr io.Writer
	// Phase, when set, is told what each hop's dial waits for now
	// ("connecting to ...", "authenticating to ..."), for a status line.
	Phase func(format string, args ...any)
	// OnPrompt, when set, is called before every prompt; the func it
	// returns, after it (a status line steps aside meanwhile).
	OnPrompt func() (after func())
	// Dialed, when set, is called by Dial as each hop (0 the first) is
	// connected, host-key checked and authenticated (kq doctor times each).
	Dialed func(hop int)
	// NeverRecord refuses a host key known_hosts does not have, whatever
	// StrictHostKeyChecking says, and never writes known_hosts (kq doctor:
	// a check changes nothing).
	NeverRecord bool

	prompt Prompter
	// pause and resume bracket every prompt: the handshake deadline must
	// not run while the user types.
	pause, resume func()

	mu        sync.Mutex
	decrypted map[string]ssh.Signer // identity file -> decrypted key
	failed    map[string]error      // identity file -> why it cannot be used
	certs     map[string][]identity // hop -> the certificates offered to it (cert.go)
}

// NewAuthenticator asks its questions (passphrases, passwords,
// keyboard-interactive, unknown host keys) through p.
func NewAuthenticator(p Prompter) *Authenticator {
	return &Authenticator{prompt: p, pause: func() {}, resume: func() {},
		decrypted: map[string]ssh.Signer{}, failed: map[string]error{}}
}

// ask asks through the prompter with the handshake deadline paused; a hop
// with BatchMode never asks.
func (a *Authenticator) ask(s profiles.SSHSettings, question string, echo bool) (string, error) {
	if s.BatchMode {
		return "", fmt.Errorf("%w: BatchMode is set for %s", errNoPrompt, s.Alias)
	}
	a.pause()
	defer a.resume()
	if a.OnPrompt != nil {
		defer a.OnPrompt()()
	}
	return a.prompt.Ask(question, echo)
}

// phase reports what a dial waits for, when someone listens.
func (a *Authenticator) phase(format string, args ...any) {
	if a.Phase != nil {
		a.Phase(format, args...)
	}
}

// methods returns the auth methods for one hop, in the order of
// PreferredAuthentications (OpenSSH's order by default: public keys
// (agent, then identity files), keyboard-interactive, password), without
// those the hop's config switches off. The returned func closes the agent
// connection after the handshake. The agent is only ever used to sign
// here; it is never forwarded.
func (a *Authenticator) methods(s profiles.SSHSettings) ([]ssh.AuthMethod, func()) {
	byName := map[string]ssh.AuthMethod{}
	closeAgent := func() {}
	if s.GSSAPIAuthentication {
		byName["gssapi-with-mic"] = a.gssapiMethod(s)
	}
	if !s.NoPubkeyAuthentication {
		var signers []ssh.Signer
		signers, closeAgent = a.signers(s)
		var dropped []string
		signers, dropped = restrictSigners(signers, s.PubkeyAcceptedAlgorithms)
		for _, d := range dropped {
			a.verbose("%s: key %s not offered: PubkeyAcceptedAlgorithms excludes it", s.Alias, d)
		}
		if len(signers) > 0 {
			byName["publickey"] = ssh.PublicKeys(signers...)
		}
	}
	tries := s.NumberOfPasswordPrompts
	if tries < 1 {
		tries = 1
	}
	if s.KbdInteractiveAuthentication {
		byName["keyboard-interactive"] = ssh.RetryableAuthMethod(ssh.KeyboardInteractive(
			func(name, instruction string, questions []string, echos []bool) ([]string, error) {
				return a.keyboardInteractive(s, name, instruction, questions, echos)
			}), tries)
	}
	if s.PasswordAuthentication {
		byName["password"] = ssh.RetryableAuthMethod(ssh.PasswordCallback(func() (string, error) {
			return a.ask(s, fmt.Sprintf("%s@%s's password: ", s.User, s.HostName), false)
		}), tries)
	}
	return orderMethods(byName, s.PreferredAuthentications), closeAgent
}

// keyboardInteractive shows the server's prompts verbatim (2FA, OTP, Duo),
// each answered with echo as the server asks.
func (a *Authenticator) keyboardInteractive(s profiles.SSHSettings, name, instruction string, questions []string, echos []bool) ([]string, error) {
	answers := make([]string, len(questions))
	if len(questions) == 0 {
		return answers, nil // an information-only round
	}
	var header strings.Builder
	for _, l := range []string{name, instruction} {
		if l = strings.TrimSpace(l); l != "" {
			header.WriteString(l + "\n")
		}
	}
	for i, q := range questions {
		prompt := q
		if i == 0 {
			prompt = header.String() + q
		}
		ans, err := a.ask(s, prompt, echos[i])
		if err != nil {
			return nil, err
		}
		answers[i] = ans
	}
	return answers, nil
}

// signers collects agent keys (only the configured identities under
// IdentitiesOnly), identity files and user certificates, in OpenSSH's
// order (offerList). An encrypted identity file becomes a lazySigner: its
// public key (or its certificate) is offered, and the passphrase is asked
// only if the server accepts it.
func (a *Authenticator) signers(s profiles.SSHSettings) ([]ssh.Signer, func()) {
	var agentSigners []ssh.Signer
	closeAgent := func() {}
	if conn := dialAgent(s.IdentityAgent); conn != nil {
		closeAgent = func() { conn.Close() }
		agentSigners, _ = agent.NewClient(conn).Signers()
	}
	ids := a.offerList(s, agentSigners)
	a.rememberCerts(s, ids)
	signers := make([]ssh.Signer, len(ids))
	for i, id := range ids {
		signers[i] = id.signer
	}
	return signers, closeAgent
}

// dialAgent connects to IdentityAgent, or SSH_AUTH_SOCK by default.
func dialAgent(identityAgent string) net.Conn {
	sock := identityAgent
	if sock == "" || strings.EqualFold(sock, "SSH_AUTH_SOCK") {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if strings.HasPrefix(sock, "$") {
		sock = os.Getenv(strings.TrimPrefix(sock, "$"))
	}
	if sock == "" || strings.EqualFold(sock, "none") {
		return nil
	}
	conn, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return nil
	}
	return conn
}

// identityFile loads one IdentityFile: a signer for a plain key, a
// lazySigner for an encrypted one, nil when it cannot sign (ssh -G lists
// the default names whether the files exist or not). pub is the file's
// public key whenever it is known, also from FILE.pub or a FILE that is a
// public key, so that IdentitiesOnly can pick that key from the agent.
func (a *Authenticator) identityFile(path string, hop profiles.SSHSettings) (ssh.Signer, ssh.PublicKey) {
	a.mu.Lock()
	if s, ok := a.decrypted[path]; ok {
		a.mu.Unlock()
		return s, s.PublicKey()
	}
	a.mu.Unlock()
	pubFromFile := func(p string) ssh.PublicKey {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			return nil
		}
		return pub
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, pubFromFile(path + ".pub")
	}
	if t, blob := skPublicKey(data); t != "" {
		// x/crypto cannot load it; its public half still picks the
		// agent's copy under IdentitiesOnly (see loadNotes).
		a.verbose("identity file %s is a FIDO key (%s): kq can only use it through ssh-agent (ssh-add %s)", path, t, path)
		if pub, err := ssh.ParsePublicKey(blob); err == nil {
			return nil, pub
		}
		return nil, pubFromFile(path + ".pub")
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err == nil {
		return signer, signer.PublicKey()
	}
	var pm *ssh.PassphraseMissingError
	if !errors.As(err, &pm) {
		if pub := pubFromFile(path); pub != nil {
			return nil, pub // the file is a public key; its private half is in the agent
		}
		return nil, pubFromFile(path + ".pub")
	}
	pub := pm.PublicKey
	if pub == nil { // older PEM keys do not carry it; the .pub file does
		pub = pubFromFile(path + ".pub")
	}
	if pub == nil {
		return nil, nil
	}
	return &lazySigner{a: a, path: path, pub: pub, pem: data, hop: hop}, pub
}

// decrypt asks for path's passphrase (NumberOfPasswordPrompts tries) and
// remembers the result for the rest of the run.
func (a *Authenticator) decrypt(l *lazySigner, s profiles.SSHSettings) (ssh.Signer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if signer, ok := a.decrypted[l.path]; ok {
		return signer, nil
	}
	if err, ok := a.failed[l.path]; ok {
		return nil, err
	}
	tries := s.NumberOfPasswordPrompts
	if tries < 1 {
		tries = 1
	}
	var err error
	for i := 0; i < tries; i++ {
		var pass string
		pass, err = a.ask(s, fmt.Sprintf("Enter passphrase for key '%s': ", l.path), false)
		if err != nil {
			break
		}
		var signer ssh.Signer
		signer, err = ssh.ParsePrivateKeyWithPassphrase(l.pem, []byte(pass))
		if err == nil {
			a.decrypted[l.path] = signer
			return signer, nil
		}
		if !errors.Is(err, x509.IncorrectPasswordError) {
			break
		}
		err = fmt.Errorf("%w for %s", errWrongPassphrase, l.path)
	}
	err = fmt.Errorf("identity file %s: %w", l.path, err)
	a.failed[l.path] = err
	return nil, err
}

// errWrongPassphrase: every passphrase typed for an identity file was
// wrong. x/crypto passes the signer's error up through the handshake, so
// the dial can tell it from the server refusing the key.
var errWrongPassphrase = errors.New("wrong passphrase")

// lazySigner stands for an encrypted identity file until the server has
// accepted its public key; only then does Sign ask for the passphrase.
type lazySigner struct {
	a    *Authenticator
	path string
	pub  ssh.PublicKey
	pem  []byte
	hop  profiles.SSHSettings
}

func (l *lazySigner) PublicKey() ssh.PublicKey { return l.pub }

func (l *lazySigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	s, err := l.a.decrypt(l, l.hop)
	if err != nil {
		return nil, err
	}
	return s.Sign(rand, data)
}

// SignWithAlgorithm keeps RSA keys on rsa-sha2-*: without it x/crypto
// would fall back to ssh-rsa (SHA-1), which current sshd refuses.
func (l *lazySigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s, err := l.a.decrypt(l, l.hop)
	if err != nil {
		return nil, err
	}
	if as, ok := s.(ssh.AlgorithmSigner); ok {
		return as.SignWithAlgorithm(rand, data, algorithm)
	}
	return s.Sign(rand, data)
}

// note tells the user something about trust they should know (a host key
// was recorded); it goes to the session's stderr even under -q.
func (a *Authenticator) note(format string, args ...any) {
	if a.Note != nil {
		a.Note(format, args...)
	}
}

// verbose reports what -v shows.
func (a *Authenticator) verbose(format string, args ...any) {
	if a.Verbose != nil {
		a.Verbose(format, args...)
	}
}
