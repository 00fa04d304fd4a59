package sshx

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// judgeHostCert decides about a host certificate that known_hosts did not
// accept as it is, as ssh does (sshconnect.c, check_host_key): the key
// inside it is judged as a plain host key. x/crypto counts
// @cert-authority lines among a host's known keys, which would make any
// such plain key look CHANGED; here they are left out. A certificate
// signed by a CA that known_hosts trusts for the host but invalid
// (expired, not for this name) is refused with its own message when the
// plain key is not known either, where ssh would go on to treat the host
// as new. It returns the plain key and the verdict on it; he is filled in
// and returned for an invalid certificate.
func judgeHostCert(db *knownhosts.HostKeyDB, hostname string, remote net.Addr, cert *ssh.Certificate,
	he *hostKeyError) (ssh.PublicKey, error) {
	cas := caBlobs(db, hostname)
	err := db.HostKeyCallback()(hostname, remote, cert.Key)
	var ke *xknownhosts.KeyError
	if !errors.As(err, &ke) {
		return cert.Key, err // known (accepted), revoked, or unreadable
	}
	var plain, trusting []xknownhosts.KnownKey
	for _, w := range ke.Want {
		switch {
		case !cas[string(w.Key.Marshal())]:
			plain = append(plain, w)
		case bytes.Equal(w.Key.Marshal(), cert.SignatureKey.Marshal()):
			trusting = append(trusting, w)
		}
	}
	if len(plain) > 0 || len(trusting) == 0 {
		return cert.Key, &xknownhosts.KeyError{Want: plain} // changed, or unknown
	}
	he.certProblem = hostCertProblem(cert, hostname, time.Now())
	for _, w := range trusting {
		he.knownAt = append(he.knownAt, fmt.Sprintf("%s:%d", w.Filename, w.Line))
	}
	return cert.Key, he
}

// caBlobs is the set of keys that @cert-authority lines name for hostname.
func caBlobs(db *knownhosts.HostKeyDB, hostname string) map[string]bool {
	out := map[string]bool{}
	for _, k := range db.HostKeys(hostname) {
		if k.Cert {
			out[string(k.Marshal())] = true
		}
	}
	return out
}

// hostCertProblem says why a host certificate from a trusted CA is not
// valid for hostname ("host:port") at now, in the words of the refusal.
func hostCertProblem(cert *ssh.Certificate, hostname string, now time.Time) string {
	host, _, err := net.SplitHostPort(hostname)
	if err != nil {
		host = hostname
	}
	unix := now.Unix()
	switch {
	case cert.CertType != ssh.HostCert:
		return "is not a host certificate"
	case int64(cert.ValidAfter) < 0 || unix < int64(cert.ValidAfter):
		return "is not valid before " + certTime(cert.ValidAfter)
	case cert.ValidBefore != ssh.CertTimeInfinity && (unix >= int64(cert.ValidBefore) || int64(cert.ValidBefore) < 0):
		return "expired at " + certTime(cert.ValidBefore)
	}
	for _, p := range cert.ValidPrincipals {
		if p == host {
			return "is not valid (its signature, or a critical option kq does not know)"
		}
	}
	return fmt.Sprintf("is not valid for %s (principals: %s)", host, strings.Join(cert.ValidPrincipals, ", "))
}
