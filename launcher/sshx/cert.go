package sshx

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

// identity is one key kq may offer: a plain key or a user certificate,
// with the signer that proves it (nil while only its public half is known,
// say a .pub file whose private half is in the agent).
type identity struct {
	pub    ssh.PublicKey
	signer ssh.Signer
	path   string           // the file it came from; "" for agent keys
	cert   *ssh.Certificate // set when pub is a certificate
	agent  bool             // the agent signs
}

// offerList builds the keys to offer in OpenSSH's order (sshconnect2.c,
// pubkey_prepare): CertificateFile certificates first; then the agent's
// keys in the agent's order, a key that matches a configured identity
// taking that identity's place (under IdentitiesOnly only those); then the
// remaining identity files in order, each IdentityFile followed by its
// "-cert.pub" when no CertificateFile is set. A certificate without a
// private key to sign with is left out (ssh offers it and then fails).
func (a *Authenticator) offerList(s profiles.SSHSettings, agentSigners []ssh.Signer) []identity {
	files := a.fileIdentities(s)
	preferred := certFileIdentities(s.CertificateFiles)
	for _, as := range agentSigners {
		blob := as.PublicKey().Marshal()
		i := indexOf(files, blob)
		switch {
		case i >= 0:
			id := files[i]
			id.signer, id.agent = as, true // the agent signs, as ssh has it
			files = append(files[:i], files[i+1:]...)
			preferred = append(preferred, id)
		case !s.IdentitiesOnly:
			preferred = append(preferred, agentIdentity(as))
		}
	}
	return completeCerts(dedup(append(preferred, files...)))
}

// fileIdentities loads the IdentityFiles, each followed by the certificate
// OpenSSH loads beside it ("ID-cert.pub") when no CertificateFile is set.
func (a *Authenticator) fileIdentities(s profiles.SSHSettings) []identity {
	var out []identity
	for _, f := range s.IdentityFiles {
		signer, pub := a.identityFile(f, s)
		if pub == nil {
			continue
		}
		out = append(out, identity{pub: pub, signer: signer, path: f})
		if len(s.CertificateFiles) > 0 {
			continue
		}
		if cert, err := loadUserCert(f + "-cert.pub"); err == nil && bytes.Equal(cert.Key.Marshal(), pub.Marshal()) {
			out = append(out, identity{pub: cert, path: f + "-cert.pub", cert: cert})
		}
	}
	return out
}

// certFileIdentities loads CertificateFiles; files that are missing or
// hold no user certificate are skipped, as ssh skips them.
func certFileIdentities(paths []string) []identity {
	var out []identity
	for _, p := range paths {
		if cert, err := loadUserCert(p); err == nil {
			out = append(out, identity{pub: cert, path: p, cert: cert})
		}
	}
	return out
}

// agentIdentity is an agent key that no configured identity names.
func agentIdentity(as ssh.Signer) identity {
	id := identity{pub: as.PublicKey(), signer: as, agent: true}
	id.cert, _ = as.PublicKey().(*ssh.Certificate)
	return id
}

// completeCerts gives each certificate that has no signer yet (one from a
// file) the signer of a plain key of the list with the same public key:
// an identity file (a lazy one asks its passphrase only once the server
// has accepted the certificate) or an agent key. Identities left without
// a signer are dropped.
func completeCerts(ids []identity) []identity {
	out := ids[:0:0]
	for _, id := range ids {
		if id.cert != nil && id.signer == nil {
			id.signer = plainSigner(ids, id.cert.Key.Marshal())
			if id.signer != nil {
				cs, err := ssh.NewCertSigner(id.cert, id.signer)
				if err != nil {
					id.signer = nil
				} else {
					id.signer = cs
				}
			}
		}
		if id.signer != nil {
			out = append(out, id)
		}
	}
	return out
}

// plainSigner finds the signer of the plain key blob among ids.
func plainSigner(ids []identity, blob []byte) ssh.Signer {
	for _, id := range ids {
		if id.cert == nil && id.signer != nil && bytes.Equal(id.pub.Marshal(), blob) {
			return id.signer
		}
	}
	return nil
}

// dedup keeps the first of identities with the same public key (a key
// named twice, or given as a file and held by the agent).
func dedup(ids []identity) []identity {
	var out []identity
	for _, id := range ids {
		if indexOf(out, id.pub.Marshal()) < 0 {
			out = append(out, id)
		}
	}
	return out
}

func indexOf(ids []identity, blob []byte) int {
	for i, id := range ids {
		if bytes.Equal(id.pub.Marshal(), blob) {
			return i
		}
	}
	return -1
}

// errNotUserCert: a CertificateFile or "-cert.pub" that is not a user
// certificate (a plain key, a host certificate).
var errNotUserCert = errors.New("not a user certificate")

// loadUserCert reads a user certificate in authorized_keys form.
func loadUserCert(path string) (*ssh.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", path, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok || cert.CertType != ssh.UserCert {
		return nil, fmt.Errorf("certificate %s: %w", path, errNotUserCert)
	}
	return cert, nil
}

// certTime is a certificate time as ssh-keygen -L shows it, in local time.
func certTime(t uint64) string {
	if t > 1<<62 {
		return "forever"
	}
	return time.Unix(int64(t), 0).Format("2006-01-02T15:04:05Z07:00")
}

// certProblem says why sshd would refuse cert for user at now, as far as
// the certificate itself tells (sshd may also map principals through
// AuthorizedPrincipalsFile, or not trust the CA); "" when it looks valid.
func certProblem(cert *ssh.Certificate, user string, now time.Time) string {
	unix := now.Unix()
	switch {
	case int64(cert.ValidAfter) < 0 || unix < int64(cert.ValidAfter):
		return "is not valid before " + certTime(cert.ValidAfter)
	case cert.ValidBefore != ssh.CertTimeInfinity && (unix >= int64(cert.ValidBefore) || int64(cert.ValidBefore) < 0):
		return "expired at " + certTime(cert.ValidBefore)
	case len(cert.ValidPrincipals) == 0:
		return "lists no principals (sshd's TrustedUserCAKeys refuses such a certificate)"
	}
	for _, p := range cert.ValidPrincipals {
		if p == user {
			return ""
		}
	}
	return fmt.Sprintf("is not valid for user %s (principals: %s)", user, strings.Join(cert.ValidPrincipals, ", "))
}
