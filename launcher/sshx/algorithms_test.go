package sshx

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kq-dev/kq/launcher/kinds"
	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

func TestApplyAlgorithms(t *testing.T) {
	for _, c := range []struct {
		name    string
		s       profiles.SSHSettings
		known   []string
		ciphers []string
		hostKey []string
		errWith string // "" means no error
	}{
		{name: "defaults", known: []string{"ssh-ed25519"}, hostKey: []string{"ssh-ed25519"}, ciphers: fastCiphers(hasAESHardware())},
		{name: "ssh -G default list is no preference", s: profiles.SSHSettings{Ciphers: openSSHDefaultCiphers},
			ciphers: fastCiphers(hasAESHardware())},
		{name: "policy cut to x/crypto", s: profiles.SSHSettings{Ciphers: []string{"chacha20-poly1305@openssh.com", "aes128-cbc", "no-such"}},
			ciphers: []string{"chacha20-poly1305@openssh.com", "aes128-cbc"}},
		{name: "nothing implemented", s: profiles.SSHSettings{Ciphers: []string{"blowfish-cbc", "no-such"}}, errWith: "Ciphers blowfish-cbc,no-such"},
		{name: "known within policy", s: profiles.SSHSettings{HostKeyAlgorithms: []string{"ecdsa-sha2-nistp256", "ssh-ed25519", "rsa-sha2-256"}},
			known: []string{"rsa-sha2-256", "ssh-ed25519"}, hostKey: []string{"ssh-ed25519", "rsa-sha2-256"}, ciphers: fastCiphers(hasAESHardware())},
		{name: "known outside policy", s: profiles.SSHSettings{HostKeyAlgorithms: []string{"ecdsa-sha2-nistp256"}},
			known: []string{"ssh-ed25519"}, hostKey: []string{"ecdsa-sha2-nistp256"}, ciphers: fastCiphers(hasAESHardware())},
		{name: "host key policy empty", s: profiles.SSHSettings{HostKeyAlgorithms: []string{"sk-ssh-ed25519@openssh.com"}}, errWith: "HostKeyAlgorithms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var cfg ssh.ClientConfig
			err := applyAlgorithms(&cfg, c.s, c.known)
			if c.errWith != "" {
				if err == nil || !strings.Contains(err.Error(), c.errWith) || !errors.Is(err, ErrNoAlgorithm) || !errors.Is(err, kinds.Usage) {
					t.Fatalf("err = %v, want one naming %q", err, c.errWith)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Ciphers, c.ciphers) || !reflect.DeepEqual(cfg.HostKeyAlgorithms, c.hostKey) {
				t.Fatalf("ciphers %v host keys %v", cfg.Ciphers, cfg.HostKeyAlgorithms)
			}
		})
	}
}

// TestCipherPreference: with no Ciphers in the config (nil, or OpenSSH's
// default list as ssh -G prints it) kq offers AES-GCM first where the CPU
// has AES instructions and ChaCha20-Poly1305 first where it has not, always
// within OpenSSH's default set; a list the config names keeps its order.
func TestCipherPreference(t *testing.T) {
	for _, hw := range []bool{true, false} {
		for _, configured := range [][]string{nil, openSSHDefaultCiphers} {
			got := cipherPreference(configured, hw)
			want := ssh.CipherChaCha20Poly1305
			if hw {
				want = ssh.CipherAES128GCM
			}
			if got[0] != want {
				t.Errorf("aes hardware %v, configured %v: first %s, want %s", hw, configured, got[0], want)
			}
			a, b := slices.Clone(got), slices.Clone(openSSHDefaultCiphers)
			slices.Sort(a)
			slices.Sort(b)
			if !slices.Equal(a, b) {
				t.Errorf("preference %v is not OpenSSH's default set %v", got, openSSHDefaultCiphers)
			}
		}
		named := []string{ssh.CipherAES128CTR, ssh.CipherChaCha20Poly1305}
		if got := cipherPreference(named, hw); !slices.Equal(got, named) {
			t.Errorf("named list reordered: %v", got)
		}
	}
}

func TestNegotiationFailed(t *testing.T) {
	for _, c := range []struct {
		ne   ssh.AlgorithmNegotiationError
		hint string
	}{
		{ssh.AlgorithmNegotiationError{What: "client to server cipher", SupportedAlgorithms: []string{"aes128-ctr"},
			RequestedAlgorithms: []string{"chacha20-poly1305@openssh.com"}}, "Ciphers +chacha20-poly1305@openssh.com"},
		{ssh.AlgorithmNegotiationError{What: "key exchange", SupportedAlgorithms: []string{"curve25519-sha256"},
			RequestedAlgorithms: []string{"sntrup761x25519-sha512@openssh.com"}}, "does not implement (sntrup761x25519-sha512@openssh.com)"},
	} {
		err := negotiationFailed("host h", &c.ne)
		var h interface{ Hint() string }
		if !errors.Is(err, ErrNoAlgorithm) || !errors.Is(err, kinds.Connect) || !errors.As(err, &h) || !strings.Contains(h.Hint(), c.hint) {
			t.Errorf("%v (hint %q), want hint with %q", err, h.Hint(), c.hint)
		}
		for _, a := range append(c.ne.SupportedAlgorithms, c.ne.RequestedAlgorithms...) {
			if !strings.Contains(err.Error(), a) {
				t.Errorf("%v does not name %s", err, a)
			}
		}
	}
}

func TestOrderMethods(t *testing.T) {
	has := func(n string) bool { return n == "publickey" || n == "keyboard-interactive" || n == "password" }
	for _, c := range []struct {
		preferred, want []string
	}{
		{nil, []string{"publickey", "keyboard-interactive", "password"}},
		{[]string{"password", "publickey"}, []string{"password", "publickey"}},
		{[]string{"gssapi-with-mic", "password", "password"}, []string{"password"}},
		{[]string{}, nil},
	} {
		if got := methodOrder(c.preferred, has); !reflect.DeepEqual(got, c.want) {
			t.Errorf("methodOrder(%v) = %v, want %v", c.preferred, got, c.want)
		}
	}
	byName := map[string]ssh.AuthMethod{"password": ssh.Password("x"), "publickey": ssh.Password("y")}
	if got := orderMethods(byName, []string{"password"}); len(got) != 1 {
		t.Errorf("orderMethods kept %d methods, want 1", len(got))
	}
}

func TestRestrictSigners(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ed, _ := ssh.NewSignerFromKey(edPriv)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	rs, _ := ssh.NewSignerFromKey(rk)
	for _, c := range []struct {
		accepted []string
		want     []string // key types kept
		rsaAlgos []string // the RSA signer's algorithms, when restricted
	}{
		{nil, []string{"ssh-ed25519", "ssh-rsa"}, nil},
		{[]string{"ssh-ed25519"}, []string{"ssh-ed25519"}, nil},
		{[]string{"rsa-sha2-512"}, []string{"ssh-rsa"}, []string{"rsa-sha2-512"}},
		{[]string{"ecdsa-sha2-nistp256"}, nil, nil},
	} {
		kept, dropped := restrictSigners([]ssh.Signer{ed, rs}, c.accepted)
		var got []string
		for _, k := range kept {
			got = append(got, k.PublicKey().Type())
			if ms, ok := k.(ssh.MultiAlgorithmSigner); ok && c.rsaAlgos != nil && k.PublicKey().Type() == "ssh-rsa" && !reflect.DeepEqual(ms.Algorithms(), c.rsaAlgos) {
				t.Errorf("%v: RSA algorithms %v", c.accepted, ms.Algorithms())
			}
		}
		if !reflect.DeepEqual(got, c.want) || len(got)+len(dropped) != 2 {
			t.Errorf("%v: kept %v dropped %v, want %v", c.accepted, got, dropped, c.want)
		}
	}
}

// skPrivateKey crafts an unencrypted OpenSSH private key file holding an
// sk-ssh-ed25519 key, in the layout ssh-keygen writes (PROTOCOL.key and
// PROTOCOL.u2f): making a real one needs a FIDO device.
func skPrivateKey(t *testing.T) []byte {
	t.Helper()
	str := func(b []byte) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...) }
	pubKey, _, _ := ed25519.GenerateKey(rand.Reader)
	typ := []byte("sk-ssh-ed25519@openssh.com")
	pub := append(append(str(typ), str(pubKey)...), str([]byte("ssh:"))...)
	priv := append(binary.BigEndian.AppendUint32(nil, 7), binary.BigEndian.AppendUint32(nil, 7)...)
	priv = append(append(append(priv, str(typ)...), str(pubKey)...), str([]byte("ssh:"))...)
	priv = append(append(append(append(priv, 0x01), str([]byte("handle"))...), str(nil)...), str([]byte("test"))...)
	for i := byte(1); len(priv)%8 != 0; i++ {
		priv = append(priv, i)
	}
	b := []byte("openssh-key-v1\x00")
	b = append(append(append(b, str([]byte("none"))...), str([]byte("none"))...), str(nil)...)
	b = append(append(append(b, binary.BigEndian.AppendUint32(nil, 1)...), str(pub)...), str(priv)...)
	return pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: b})
}

func TestSKKeyType(t *testing.T) {
	if got := skKeyType(skPrivateKey(t)); got != "sk-ssh-ed25519@openssh.com" {
		t.Fatalf("skKeyType = %q", got)
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(edPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := skKeyType(pem.EncodeToMemory(block)); got != "" {
		t.Fatalf("skKeyType(ed25519) = %q", got)
	}
	if _, err := ssh.ParsePrivateKey(skPrivateKey(t)); err == nil {
		t.Log("x/crypto now loads sk key files: loadNotes can go")
	}
	_, blob := skPublicKey(skPrivateKey(t))
	if pub, err := ssh.ParsePublicKey(blob); err != nil || pub.Type() != "sk-ssh-ed25519@openssh.com" {
		t.Fatalf("public key: %v %v", pub, err)
	}
}
