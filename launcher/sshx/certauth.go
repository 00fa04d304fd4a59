package sshx

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

// hopKey names a hop for what the Authenticator remembers per hop.
func hopKey(s profiles.SSHSettings) string {
	return s.User + "@" + s.Address() + " " + s.Alias
}

// rememberCerts keeps the certificates about to be offered to hop s, so
// that a refusal can be explained by them.
func (a *Authenticator) rememberCerts(s profiles.SSHSettings, ids []identity) {
	var certs []identity
	for _, id := range ids {
		if id.cert != nil {
			certs = append(certs, id)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.certs == nil {
		a.certs = map[string][]identity{}
	}
	a.certs[hopKey(s)] = certs
}

// certRefusedError: the server refused every key offered, and at least
// one of them was a certificate. It says what is wrong with each
// certificate as far as kq can tell from here (expired, not yet valid,
// not for this user), or that the server refused a certificate that looks
// valid (an untrusted CA, a revoked certificate).
type certRefusedError struct {
	user   string
	issues []certIssue
	err    error // the handshake's own error
}

// certIssue is one offered certificate and what is wrong with it ("" when
// nothing is, as far as the certificate tells).
type certIssue struct {
	path    string
	cert    *ssh.Certificate
	problem string
}

func (e *certRefusedError) Error() string {
	var parts []string
	for _, i := range e.issues {
		name := i.path
		if name == "" {
			name = fmt.Sprintf("%q from the agent", i.cert.KeyId)
		}
		if i.problem != "" {
			parts = append(parts, fmt.Sprintf("certificate %s %s", name, i.problem))
			continue
		}
		parts = append(parts, fmt.Sprintf("server refused certificate %s (key ID %q, CA %s, principals: %s, valid until %s)",
			name, i.cert.KeyId, ssh.FingerprintSHA256(i.cert.SignatureKey), strings.Join(i.cert.ValidPrincipals, ", "),
			certTime(i.cert.ValidBefore)))
	}
	return strings.Join(parts, "; ")
}

func (e *certRefusedError) Unwrap() error { return e.err }

// hint says what to do about the first issue.
func (e *certRefusedError) hint() string {
	p := e.issues[0].problem
	switch {
	case strings.HasPrefix(p, "expired"), strings.HasPrefix(p, "is not valid before"):
		return "get a new certificate from your CA (check this machine's clock if it should be valid)"
	case strings.HasPrefix(p, "is not valid for user"):
		return fmt.Sprintf("log in as one of the certificate's principals (User in ssh config), or ask your CA for a certificate "+
			"naming %s; the server may also map principals with AuthorizedPrincipalsFile", e.user)
	case p != "":
		return "ask your CA for a certificate that names your login"
	}
	return "the server does not trust the certificate's CA (TrustedUserCAKeys) or has revoked it (RevokedKeys); " +
		"check with the host's admin"
}

// explainRefusal turns a handshake that ran out of keys, having offered
// certificates, into a certRefusedError; any other error is returned as
// it is.
func (a *Authenticator) explainRefusal(s profiles.SSHSettings, err error) error {
	if err == nil || errors.Is(err, errWrongPassphrase) || errors.Is(err, errNoPrompt) || !methodsExhausted(err) {
		return err
	}
	a.mu.Lock()
	certs := a.certs[hopKey(s)]
	a.mu.Unlock()
	if len(certs) == 0 {
		return err
	}
	ce := &certRefusedError{user: s.User, err: err}
	now := time.Now()
	for _, id := range certs {
		ce.issues = append(ce.issues, certIssue{path: id.path, cert: id.cert, problem: certProblem(id.cert, s.User, now)})
	}
	// The ones with a problem of their own come first: they are the likely
	// cause, and the hint follows the first.
	sortIssues(ce.issues)
	return ce
}

// sortIssues moves issues with a known problem before the others, keeping
// the order within each group.
func sortIssues(issues []certIssue) {
	var known, other []certIssue
	for _, i := range issues {
		if i.problem != "" {
			known = append(known, i)
		} else {
			other = append(other, i)
		}
	}
	copy(issues, append(known, other...))
}
