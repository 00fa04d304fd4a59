package sshx

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/kq-dev/kq/profiles"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyError explains a refused host key with what the user needs to
// decide: the key's fingerprint and the known_hosts line it contradicts.
type hostKeyError struct {
	address     string
	keyType     string
	fingerprint string
	changed     bool
	revoked     bool
	declined    bool
	knownAt     []string // "file:line" of the keys on record
	files       []string
	mode        string // StrictHostKeyChecking
	certProblem string // a trusted CA's certificate that is invalid (hostcert.go)
}

func (e *hostKeyError) Error() string {
	switch {
	case e.certProblem != "":
		return fmt.Sprintf("host certificate for %s %s: signed by the CA trusted at %s, but kq does not know the host's plain key %s %s",
			e.address, e.certProblem, strings.Join(e.knownAt, ", "), e.keyType, e.fingerprint)
	case e.revoked:
		return fmt.Sprintf("host key for %s is REVOKED: server offers %s %s, marked @revoked at %s",
			e.address, e.keyType, e.fingerprint, strings.Join(e.knownAt, ", "))
	case e.changed:
		return fmt.Sprintf("host key for %s has CHANGED: server offers %s %s, known_hosts has a different key at %s",
			e.address, e.keyType, e.fingerprint, strings.Join(e.knownAt, ", "))
	case e.declined:
		return fmt.Sprintf("host key for %s not accepted: %s %s", e.address, e.keyType, e.fingerprint)
	}
	return fmt.Sprintf("host key for %s is unknown: server offers %s %s (not in %s)",
		e.address, e.keyType, e.fingerprint, strings.Join(e.files, ", "))
}

// ErrUnknownHostKey: known_hosts has no key for the host (not a changed or
// revoked one). Test with errors.Is.
var ErrUnknownHostKey = errors.New("host key unknown")

// Is makes errors.Is(err, ErrUnknownHostKey) true for an unknown host.
func (e *hostKeyError) Is(target error) bool {
	return target == ErrUnknownHostKey && e.certProblem == "" && !e.revoked && !e.changed && !e.declined
}

func (e *hostKeyError) hint() string {
	switch {
	case e.certProblem != "":
		return "the host's certificate needs renewing or reissuing for this name by its admin (ssh-keygen -s CA -h -n NAME); " +
			"this is not a changed key, so do not remove known_hosts lines"
	case e.revoked:
		return "the key was revoked on purpose; ask the host's admin for the current one"
	case e.changed:
		return "someone may be intercepting the connection, or the host was reinstalled; " +
			"check the fingerprint with the host's admin, then remove the old line (ssh-keygen -R HOST)"
	case e.declined:
		return ""
	case e.mode == "yes":
		return "StrictHostKeyChecking is yes: add the key to known_hosts after checking its fingerprint"
	}
	return "run kq from a terminal to confirm the fingerprint, or connect once with ssh to record the key"
}

// hostKeyCallback checks keys against the hop's known_hosts files
// following its StrictHostKeyChecking: unknown hosts are refused (yes),
// recorded (accept-new, no), or confirmed on the terminal (ask); changed
// and revoked keys are always refused. The algorithms returned are those
// known_hosts already holds for the host, so the server is asked for a key
// kq can check instead of one that would look "changed".
func (a *Authenticator) hostKeyCallback(s profiles.SSHSettings) (ssh.HostKeyCallback, []string, error) {
	files := Existing(s.KnownHostsFiles())
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
		he := newHostKeyError(s, hostname, key, shown)
		if err := checkRevokedFile(s.RevokedHostKeys, key, he); err != nil {
			return err
		}
		if db != nil {
			var decided bool
			var err error
			if key, decided, err = judgeKnown(db, hostname, remote, key, he); decided {
				return err
			}
		}
		if cert, ok := key.(*ssh.Certificate); ok {
			key = cert.Key // nothing to check a CA against: record the plain key
			he.keyType, he.fingerprint = key.Type(), ssh.FingerprintSHA256(key)
		}
		return a.unknownHost(s, he, hostname, key)
	}
	var algos []string
	if db != nil {
		algos = db.HostKeyAlgorithms(knownHostsAddress(s))
	}
	return cb, algos, nil
}

// judgeKnown checks key against the known_hosts files. decided is false
// for a host they do not know (the caller applies StrictHostKeyChecking),
// with key then the one to record (a certificate's plain key once judged).
func judgeKnown(db *knownhosts.HostKeyDB, hostname string, remote net.Addr, key ssh.PublicKey, he *hostKeyError) (ssh.PublicKey, bool, error) {
	err := db.HostKeyCallback()(hostname, remote, key)
	if cert, ok := key.(*ssh.Certificate); ok && err != nil && !errors.As(err, new(*xknownhosts.RevokedError)) {
		// Issue 11, point 2: a certificate known_hosts did not
		// accept is judged by the key inside it (hostcert.go).
		key, err = judgeHostCert(db, hostname, remote, cert, he)
		he.keyType, he.fingerprint = key.Type(), ssh.FingerprintSHA256(key)
	}
	var revoked *xknownhosts.RevokedError
	switch {
	case err == nil:
		return key, true, nil
	case he.certProblem != "":
		return key, true, he
	case errors.As(err, &revoked):
		he.revoked = true
		he.knownAt = []string{fmt.Sprintf("%s:%d", revoked.Revoked.Filename, revoked.Revoked.Line)}
		return key, true, he
	case knownhosts.IsHostKeyChanged(err):
		he.changed = true
		var ke *xknownhosts.KeyError
		if errors.As(err, &ke) {
			for _, w := range ke.Want {
				he.knownAt = append(he.knownAt, fmt.Sprintf("%s:%d", w.Filename, w.Line))
			}
		}
		return key, true, he
	case !knownhosts.IsHostUnknown(err):
		return key, true, fmt.Errorf("check host key of %s: %w", hostname, err)
	}
	return key, false, nil
}

// newHostKeyError starts the explanation of a refusal; a HostKeyAlias is
// named with the address it stands for.
func newHostKeyError(s profiles.SSHSettings, hostname string, key ssh.PublicKey, files []string) *hostKeyError {
	he := &hostKeyError{address: hostname, keyType: key.Type(), fingerprint: ssh.FingerprintSHA256(key),
		files: files, mode: s.StrictHostKeyChecking}
	if s.HostKeyAlias != "" {
		he.address = s.HostKeyAlias + " (HostKeyAlias of " + s.Address() + ")"
	}
	return he
}

// knownHostsAddress is the name the host key is looked up and recorded
// under (issue 11, point 3): the HostKeyAlias alone when there is one (as
// OpenSSH, which then adds no port: "alias", not "[alias]:2222"), else
// "[host]:port" ("host" on port 22). An alias written as known_hosts
// writes a host on another port ("[host]:2222") is that name as it stands,
// as OpenSSH takes it.
func knownHostsAddress(s profiles.SSHSettings) string {
	if a := s.HostKeyAlias; a != "" {
		if _, _, err := net.SplitHostPort(a); err == nil && strings.HasPrefix(a, "[") {
			return a
		}
		return net.JoinHostPort(a, "22")
	}
	return s.Address()
}

// unknownHost decides about a host known_hosts has no key for.
func (a *Authenticator) unknownHost(s profiles.SSHSettings, he *hostKeyError, hostname string, key ssh.PublicKey) error {
	if a.NeverRecord {
		return he
	}
	switch s.StrictHostKeyChecking {
	case "yes":
		return he
	case "accept-new", "no":
	default: // ask
		question := fmt.Sprintf("The authenticity of host '%s' can't be established.\n%s key fingerprint is %s.\n"+
			"Are you sure you want to continue connecting (yes/no)? ", hostname, keyTypeName(key), ssh.FingerprintSHA256(key))
		for i := 0; ; i++ {
			ans, err := a.ask(s, question, true)
			if err != nil {
				return he // no terminal: refuse, as ssh does
			}
			accept, decline := hostKeyAnswer(ans, ssh.FingerprintSHA256(key))
			if accept {
				break
			}
			if decline || i >= 2 {
				he.declined = true
				return he
			}
			question = "Please type 'yes', 'no' or the fingerprint: "
		}
	}
	file, err := appendKnownHost(s, hostname, key)
	if err != nil {
		return fmt.Errorf("record host key of %s: %w", hostname, err)
	}
	a.note("permanently added %s (%s) to %s", hostname, keyTypeName(key), file)
	return nil
}

// hostKeyAnswer reads an answer to the unknown-host question as ssh does:
// "yes" or "no" in any case, or the fingerprint itself, which is base64
// and so compared exactly as typed (only surrounding blanks are dropped).
func hostKeyAnswer(ans, fingerprint string) (accept, decline bool) {
	ans = strings.TrimSpace(ans)
	switch {
	case ans == fingerprint, strings.EqualFold(ans, "yes"):
		return true, false
	case strings.EqualFold(ans, "no"):
		return false, true
	}
	return false, false
}

// keyTypeName is OpenSSH's short name for a key type ("ED25519").
func keyTypeName(key ssh.PublicKey) string {
	t := strings.TrimPrefix(key.Type(), "ssh-")
	t = strings.TrimSuffix(strings.Split(t, "-cert")[0], "@openssh.com")
	if strings.HasPrefix(t, "ecdsa") {
		return "ECDSA"
	}
	return strings.ToUpper(t)
}

// appendKnownHost adds key for hostname to the first UserKnownHostsFile,
// with the host name hashed when HashKnownHosts is set, as ssh writes it.
func appendKnownHost(s profiles.SSHSettings, hostname string, key ssh.PublicKey) (string, error) {
	if len(s.UserKnownHostsFiles) == 0 {
		return "", errors.New("no UserKnownHostsFile")
	}
	file := s.UserKnownHostsFiles[0]
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", err
	}
	host := knownhosts.Normalize(hostname)
	if s.HashKnownHosts {
		host = xknownhosts.HashHostname(host)
	}
	line := host + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))) + "\n"
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	// Start on a line of our own even if the file lacks a final newline.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		if last, err := lastByte(file); err == nil && last != '\n' {
			line = "\n" + line
		}
	}
	_, werr := f.WriteString(line)
	return file, errors.Join(werr, f.Close())
}

func lastByte(path string) (byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b := make([]byte, 1)
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	_, err = f.ReadAt(b, st.Size()-1)
	return b[0], err
}
