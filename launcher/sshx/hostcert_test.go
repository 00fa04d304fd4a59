package sshx

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

// hostCert signs key as a host certificate for principals, valid from..to.
func hostCert(t *testing.T, ca ssh.Signer, key ssh.PublicKey, from, to time.Time, principals ...string) *ssh.Certificate {
	c := &ssh.Certificate{Key: key, CertType: ssh.HostCert, KeyId: "host", ValidPrincipals: principals,
		ValidAfter: uint64(from.Unix()), ValidBefore: uint64(to.Unix())}
	must(t, c.SignCert(rand.Reader, ca))
	return c
}

// TestHostCertificates: a host certificate is judged as ssh judges it. A
// trusted CA's valid certificate is accepted; an invalid one (expired, for
// another name) is refused with its own message, never as CHANGED, unless
// the plain key is known; a certificate of a CA nobody trusts is judged by
// its plain key (known, unknown, or really changed).
func TestHostCertificates(t *testing.T) {
	k, other := newCertKit(t), newCertKit(t)
	hostPub, _, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := ssh.NewPublicKey(hostPub)
	wrongPub, _, _ := ed25519.GenerateKey(rand.Reader)
	wrong, _ := ssh.NewPublicKey(wrongPub)
	now := time.Now()
	valid := hostCert(t, k.ca, key, now.Add(-time.Hour), now.Add(time.Hour), "127.0.0.1")
	expired := hostCert(t, k.ca, key, now.Add(-2*time.Hour), now.Add(-time.Hour), "127.0.0.1")
	elsewhere := hostCert(t, k.ca, key, now.Add(-time.Hour), now.Add(time.Hour), "gpu.example.org")
	untrusted := hostCert(t, other.ca, key, now.Add(-time.Hour), now.Add(time.Hour), "127.0.0.1")
	caLine := "@cert-authority * " + string(ssh.MarshalAuthorizedKey(k.ca.PublicKey()))
	plainLine := "[127.0.0.1]:2222 " + string(ssh.MarshalAuthorizedKey(key))
	wrongLine := "[127.0.0.1]:2222 " + string(ssh.MarshalAuthorizedKey(wrong))
	for _, tc := range []struct {
		name, knownHosts string
		cert             *ssh.Certificate
		want             string // "" accepted, else a part of the error
	}{
		{"trusted CA", caLine, valid, ""},
		{"expired", caLine, expired, "host certificate for 127.0.0.1:2222 expired at "},
		{"another name", caLine, elsewhere, "is not valid for 127.0.0.1 (principals: gpu.example.org)"},
		{"expired, plain key known", caLine + plainLine, expired, ""},
		{"untrusted CA, plain key known", caLine + plainLine, untrusted, ""},
		{"untrusted CA, only a CA line", caLine, untrusted, "is unknown"},
		{"untrusted CA, plain key changed", caLine + wrongLine, untrusted, "has CHANGED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kh := filepath.Join(t.TempDir(), "known_hosts")
			must(t, os.WriteFile(kh, []byte(tc.knownHosts), 0o600))
			s := profiles.SSHSettings{Alias: "h", HostName: "127.0.0.1", Port: 2222, StrictHostKeyChecking: "yes",
				UserKnownHostsFiles: []string{kh}}
			cb, _, err := NewAuthenticator(&scripted{}).hostKeyCallback(s)
			must(t, err)
			err = cb("127.0.0.1:2222", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}, tc.cert)
			var he *hostKeyError
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "":
			case !errors.As(err, &he) || !strings.Contains(err.Error(), tc.want):
				t.Fatalf("got %v, want a hostKeyError with %q", err, tc.want)
			case strings.Contains(tc.want, "host certificate") && (he.changed || strings.Contains(he.hint(), "ssh-keygen -R")):
				t.Fatalf("an invalid certificate reads as a changed key: %v (hint %q)", err, he.hint())
			}
		})
	}
}
