package sshx

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

func newPub(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCheckRevokedFile: a key listed in the file is revoked, naming the
// line; an unlisted key passes; a missing file, a KRL and a line that is
// no key refuse, since the key could not be checked.
func TestCheckRevokedFile(t *testing.T) {
	dir := t.TempDir()
	revoked, other := newPub(t), newPub(t)
	list := filepath.Join(dir, "revoked")
	if err := os.WriteFile(list, append([]byte("# comment\n\n"), ssh.MarshalAuthorizedKey(revoked)...), 0o600); err != nil {
		t.Fatal(err)
	}
	krl := filepath.Join(dir, "krl")
	bad := filepath.Join(dir, "bad")
	_ = os.WriteFile(krl, append(append([]byte(nil), krlMagic...), 1, 2, 3), 0o600)
	_ = os.WriteFile(bad, []byte("not a key\n"), 0o600)

	he := &hostKeyError{}
	if err := checkRevokedFile(list, revoked, he); !errors.As(err, new(*hostKeyError)) || !he.revoked || len(he.knownAt) != 1 {
		t.Errorf("listed key: %v %+v", err, he)
	}
	if err := checkRevokedFile(list, other, &hostKeyError{}); err != nil {
		t.Errorf("unlisted key: %v", err)
	}
	for _, f := range []string{"", "none"} {
		if err := checkRevokedFile(f, revoked, &hostKeyError{}); err != nil {
			t.Errorf("%q: %v", f, err)
		}
	}
	for _, f := range []string{filepath.Join(dir, "missing"), krl, bad} {
		if err := checkRevokedFile(f, other, &hostKeyError{}); !errors.Is(err, errRevokedUnreadable) {
			t.Errorf("%s: %v, want errRevokedUnreadable", f, err)
		}
	}
}
