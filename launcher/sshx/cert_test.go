package sshx

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher/kinds"
	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// certKit makes keys and certificates on disk, as ssh-keygen would, under
// one test CA.
type certKit struct {
	t   *testing.T
	dir string
	ca  ssh.Signer
}

func newCertKit(t *testing.T) *certKit {
	_, caPriv, _ := ed25519.GenerateKey(rand.Reader)
	ca, err := ssh.NewSignerFromKey(caPriv)
	if err != nil {
		t.Fatal(err)
	}
	return &certKit{t: t, dir: t.TempDir(), ca: ca}
}

// key writes name (encrypted when passphrase is set) and name.pub.
func (k *certKit) key(name, passphrase string) (ed25519.PrivateKey, string) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, name)
	if passphrase != "" {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, name, []byte(passphrase))
	}
	if err != nil {
		k.t.Fatal(err)
	}
	path := filepath.Join(k.dir, name)
	k.write(path, pemBytes(block))
	pub, _ := ssh.NewPublicKey(priv.Public())
	k.write(path+".pub", ssh.MarshalAuthorizedKey(pub))
	return priv, path
}

// cert signs priv's public key for principals, valid from..to, and writes
// it to path.
func (k *certKit) cert(priv ed25519.PrivateKey, path string, from, to time.Time, principals ...string) *ssh.Certificate {
	pub, _ := ssh.NewPublicKey(priv.Public())
	c := &ssh.Certificate{Key: pub, CertType: ssh.UserCert, KeyId: filepath.Base(path), ValidPrincipals: principals,
		ValidAfter: uint64(from.Unix()), ValidBefore: uint64(to.Unix())}
	if err := c.SignCert(rand.Reader, k.ca); err != nil {
		k.t.Fatal(err)
	}
	if path != "" {
		k.write(path, ssh.MarshalAuthorizedKey(c))
	}
	return c
}

func (k *certKit) write(path string, data []byte) {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		k.t.Fatal(err)
	}
}

// agentWith serves an in-process agent on a socket, holding each key
// followed by its certificate when it has one, as ssh-add adds them.
func (k *certKit) agentWith(keys []ed25519.PrivateKey, certs []*ssh.Certificate) string {
	ring := agent.NewKeyring()
	for i, priv := range keys {
		must(k.t, ring.Add(agent.AddedKey{PrivateKey: priv}))
		if certs[i] != nil {
			must(k.t, ring.Add(agent.AddedKey{PrivateKey: priv, Certificate: certs[i]}))
		}
	}
	sock := filepath.Join(k.dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		k.t.Fatal(err)
	}
	var wg sync.WaitGroup
	k.t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); _ = agent.ServeAgent(ring, c) }()
		}
	}()
	return sock
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// label names a public key as the order test expects it: "k" for the
// plain key of k, "k-cert" for its certificate; agent-held ones get
// "agent:" in front.
func label(names map[string]string, id identity) string {
	n := names[string(id.pub.Marshal())]
	if id.agent {
		n = "agent:" + n
	}
	return n
}

// offerFixture writes the keys and certificates TestOfferOrder offers
// and an agent holding decoy, a and a's certificate; names labels each
// public key.
func offerFixture(t *testing.T, k *certKit) (names map[string]string, sock, aPath, bPath, encPath, apub string) {
	now := time.Now()
	var a, b, enc ed25519.PrivateKey
	a, aPath = k.key("a", "")
	b, bPath = k.key("b", "")
	enc, encPath = k.key("enc", "pass")
	decoy, _ := k.key("decoy", "")
	aCert := k.cert(a, aPath+"-cert.pub", now.Add(-time.Hour), now.Add(time.Hour), "u")
	bCert := k.cert(b, filepath.Join(k.dir, "b-explicit-cert.pub"), now.Add(-time.Hour), now.Add(time.Hour), "u")
	k.cert(enc, encPath+"-cert.pub", now.Add(-time.Hour), now.Add(time.Hour), "u")
	// "apub" is a's public half alone; its private half is in the agent.
	apub = filepath.Join(k.dir, "apub")
	k.write(apub, mustRead(t, aPath+".pub"))
	k.write(apub+"-cert.pub", mustRead(t, aPath+"-cert.pub"))
	names = map[string]string{}
	for n, p := range map[string]string{"a": aPath, "b": bPath, "enc": encPath, "decoy": filepath.Join(k.dir, "decoy")} {
		pub, _, _, _, _ := ssh.ParseAuthorizedKey(mustRead(t, p+".pub"))
		names[string(pub.Marshal())] = n
		if c, err := loadUserCert(p + "-cert.pub"); err == nil {
			names[string(c.Marshal())] = n + "-cert"
		}
	}
	names[string(bCert.Marshal())] = "b-cert"
	sock = k.agentWith([]ed25519.PrivateKey{decoy, a}, []*ssh.Certificate{nil, aCert})
	return names, sock, aPath, bPath, encPath, apub
}

// TestOfferOrder: keys and certificates are offered in OpenSSH 9.2's order
// (checked against `ssh -v`'s "Will attempt key" lines): CertificateFile
// first, agent keys next (taking the place of the identity they match),
// then identity files, each followed by its "-cert.pub" unless a
// CertificateFile is set; IdentitiesOnly keeps only the agent keys and
// certificates that match a configured identity.
func TestOfferOrder(t *testing.T) {
	k := newCertKit(t)
	names, sock, aPath, bPath, encPath, apub := offerFixture(t, k)
	for _, tc := range []struct {
		name  string
		s     profiles.SSHSettings
		agent bool
		want  string
	}{
		{"ID-cert.pub after its key", profiles.SSHSettings{IdentityFiles: []string{aPath, bPath}}, false, "a a-cert b"},
		{"CertificateFile first, no -cert.pub then",
			profiles.SSHSettings{IdentityFiles: []string{aPath, bPath}, CertificateFiles: []string{filepath.Join(k.dir, "b-explicit-cert.pub")}},
			false, "b-cert a b"},
		{"encrypted key with its certificate", profiles.SSHSettings{IdentityFiles: []string{encPath}}, false, "enc enc-cert"},
		{"agent first, in its order", profiles.SSHSettings{IdentityFiles: []string{bPath}}, true, "agent:decoy agent:a agent:a-cert b"},
		{"IdentitiesOnly keeps the agent's key and certificate that match",
			profiles.SSHSettings{IdentityFiles: []string{apub}, IdentitiesOnly: true}, true, "agent:a agent:a-cert"},
		{"IdentitiesOnly: a CertificateFile signed by the agent through a matching IdentityFile",
			profiles.SSHSettings{IdentityFiles: []string{aPath + ".pub"}, CertificateFiles: []string{aPath + "-cert.pub"}, IdentitiesOnly: true},
			true, "a-cert agent:a"},
		{"IdentitiesOnly: a CertificateFile whose key only the agent has is left out, as ssh fails it",
			profiles.SSHSettings{IdentityFiles: []string{filepath.Join(k.dir, "none")}, CertificateFiles: []string{aPath + "-cert.pub"}, IdentitiesOnly: true},
			true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.IdentityAgent = "none"
			if tc.agent {
				tc.s.IdentityAgent = sock
			}
			p := &scripted{}
			signers, closeAgent := NewAuthenticator(p).signers(tc.s)
			defer closeAgent()
			ids := NewAuthenticator(p).offerList(tc.s, agentSigners(t, tc.s))
			var got []string
			for i, id := range ids {
				got = append(got, label(names, id))
				if !bytes.Equal(signers[i].PublicKey().Marshal(), id.pub.Marshal()) {
					t.Errorf("signer %d offers %s, want %s", i, signers[i].PublicKey().Type(), id.pub.Type())
				}
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("offered %q, want %q", strings.Join(got, " "), tc.want)
			}
			if len(p.asked) > 0 {
				t.Errorf("asked %q before any server accepted a key", p.asked)
			}
		})
	}
}

// agentSigners lists the agent's signers as signers() sees them.
func agentSigners(t *testing.T, s profiles.SSHSettings) []ssh.Signer {
	conn := dialAgent(s.IdentityAgent)
	if conn == nil {
		return nil
	}
	t.Cleanup(func() { conn.Close() })
	signers, err := agent.NewClient(conn).Signers()
	must(t, err)
	return signers
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}

// TestCertProblem: what kq can tell from the certificate alone, in the
// words the refusal uses.
func TestCertProblem(t *testing.T) {
	k := newCertKit(t)
	priv, _ := k.key("k", "")
	now := time.Unix(1_700_000_000, 0)
	forever := k.cert(priv, "", now.Add(-time.Hour), now, "alice")
	forever.ValidBefore = ssh.CertTimeInfinity
	for _, tc := range []struct {
		name string
		cert *ssh.Certificate
		want string
	}{
		{"valid", k.cert(priv, "", now.Add(-time.Hour), now.Add(time.Hour), "bob", "alice"), ""},
		{"valid forever", forever, ""},
		{"expired", k.cert(priv, "", now.Add(-2*time.Hour), now.Add(-time.Hour), "alice"),
			"expired at " + now.Add(-time.Hour).Format(time.RFC3339)},
		{"expires this second", k.cert(priv, "", now.Add(-time.Hour), now, "alice"), "expired at " + now.Format(time.RFC3339)},
		{"not yet valid", k.cert(priv, "", now.Add(time.Hour), now.Add(2*time.Hour), "alice"),
			"is not valid before " + now.Add(time.Hour).Format(time.RFC3339)},
		{"wrong principal", k.cert(priv, "", now.Add(-time.Hour), now.Add(time.Hour), "bob", "carol"),
			"is not valid for user alice (principals: bob, carol)"},
		{"no principals", noPrincipals(k.cert(priv, "", now.Add(-time.Hour), now.Add(time.Hour), "x")),
			"lists no principals (sshd's TrustedUserCAKeys refuses such a certificate)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := certProblem(tc.cert, "alice", now); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// caServer is an in-process SSH server that trusts only certificates of
// ca for user "u" (as sshd with TrustedUserCAKeys and AuthorizedKeysFile
// none), and counts the keys it was asked about.
func caServer(t *testing.T, ca ssh.PublicKey) (addr, knownHosts string, offered func() []string) {
	t.Helper()
	var mu sync.Mutex
	var types []string
	checker := &ssh.CertChecker{IsUserAuthority: func(auth ssh.PublicKey) bool {
		return bytes.Equal(auth.Marshal(), ca.Marshal())
	}}
	addr, knownHosts = kbdServerWith(t, &ssh.ServerConfig{
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			mu.Lock()
			types = append(types, key.Type())
			mu.Unlock()
			return checker.Authenticate(c, key)
		},
		MaxAuthTries: 6,
	})
	return addr, knownHosts, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), types...) }
}

// TestEncryptedKeyCertificate: an encrypted key with a certificate beside
// it logs in to a CA-only server; the plain key is offered first (as ssh
// does) and refused without a prompt, and the passphrase is asked once,
// when the server has accepted the certificate.
func TestEncryptedKeyCertificate(t *testing.T) {
	k := newCertKit(t)
	enc, encPath := k.key("enc", "pass")
	now := time.Now()
	k.cert(enc, encPath+"-cert.pub", now.Add(-time.Hour), now.Add(time.Hour), "u")
	addr, kh, offered := caServer(t, k.ca.PublicKey())
	s := settingsFor(addr, "u", kh)
	s.IdentityFiles, s.IdentityAgent = []string{encPath}, "none"
	s.KbdInteractiveAuthentication, s.PasswordAuthentication = false, false
	p := &scripted{answers: []string{"pass"}}
	c, _, err := dialHop(context.Background(), NewAuthenticator(p), nil, s, "host ca")
	if err != nil {
		t.Fatalf("dial: %v (offered %q)", err, offered())
	}
	c.Close()
	if len(p.asked) != 1 {
		t.Errorf("asked %q, want the passphrase once", p.asked)
	}
	if got := offered(); len(got) < 2 || got[0] != ssh.KeyAlgoED25519 || got[1] != ssh.CertAlgoED25519v01 {
		t.Errorf("offered %q, want the plain key, then the certificate", got)
	}
}

// TestCertRefusalMessages: a refused login that offered a certificate says
// what is wrong with it, typed (certRefusedError) and marked kinds.Auth,
// and asks no passphrase for a certificate the server did not accept.
func TestCertRefusalMessages(t *testing.T) {
	k := newCertKit(t)
	other := newCertKit(t)
	now := time.Now()
	for _, tc := range []struct {
		name, want string
		make       func(priv ed25519.PrivateKey, path string)
	}{
		{"expired", "-cert.pub expired at ", func(priv ed25519.PrivateKey, path string) {
			k.cert(priv, path, now.Add(-2*time.Hour), now.Add(-time.Hour), "u")
		}},
		{"wrong principal", "-cert.pub is not valid for user u (principals: someone, else)", func(priv ed25519.PrivateKey, path string) {
			k.cert(priv, path, now.Add(-time.Hour), now.Add(time.Hour), "someone", "else")
		}},
		{"untrusted CA", "server refused certificate ", func(priv ed25519.PrivateKey, path string) {
			other.cert(priv, path, now.Add(-time.Hour), now.Add(time.Hour), "u")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			priv, path := k.key("enc-"+strings.ReplaceAll(tc.name, " ", "-"), "pass")
			tc.make(priv, path+"-cert.pub")
			addr, kh, _ := caServer(t, k.ca.PublicKey())
			s := settingsFor(addr, "u", kh)
			s.IdentityFiles, s.IdentityAgent = []string{path}, "none"
			s.KbdInteractiveAuthentication, s.PasswordAuthentication = false, false
			p := &scripted{answers: []string{"pass"}}
			_, _, err := dialHop(context.Background(), NewAuthenticator(p), nil, s, "host ca")
			var ce *certRefusedError
			if !errors.As(err, &ce) || !errors.Is(err, kinds.Auth) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a certRefusedError with %q", err, tc.want)
			}
			if len(p.asked) > 0 {
				t.Errorf("asked %q for a certificate the server refused", p.asked)
			}
		})
	}
}

func pemBytes(b *pem.Block) []byte { return pem.EncodeToMemory(b) }

// kbdServerWith serves cfg on a 127.0.0.1 port until the test ends, with a
// known_hosts file that trusts its host key.
func kbdServerWith(t *testing.T, cfg *ssh.ServerConfig) (addr, knownHosts string) {
	t.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	must(t, err)
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); serveKbd(c, cfg) }()
		}
	}()
	addr = ln.Addr().String()
	host, port, _ := net.SplitHostPort(addr)
	knownHosts = filepath.Join(t.TempDir(), "known_hosts")
	line := "[" + host + "]:" + port + " " + string(ssh.MarshalAuthorizedKey(hostSigner.PublicKey()))
	must(t, os.WriteFile(knownHosts, []byte(line), 0o600))
	return addr, knownHosts
}

// noPrincipals empties a signed certificate's principals (x/crypto will
// not sign such a certificate; ssh-keygen will).
func noPrincipals(c *ssh.Certificate) *ssh.Certificate {
	c.ValidPrincipals = nil
	return c
}
