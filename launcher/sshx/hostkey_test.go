package sshx

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

// TestHostKeyAnswer: "yes" and "no" in any case, or the fingerprint
// exactly as printed, as ssh reads them.
func TestHostKeyAnswer(t *testing.T) {
	const fp = "SHA256:AbCdEf0123+/xyz"
	for _, tc := range []struct {
		ans             string
		accept, decline bool
	}{
		{"yes", true, false},
		{" YES\r", true, false},
		{fp, true, false},
		{"  " + fp + "\t", true, false},
		{strings.ToLower(fp), false, false},
		{"SHA256:other", false, false},
		{"no", false, true},
		{"No", false, true},
		{"", false, false},
		{"y", false, false},
	} {
		accept, decline := hostKeyAnswer(tc.ans, fp)
		if accept != tc.accept || decline != tc.decline {
			t.Errorf("%q: accept %v decline %v, want %v %v", tc.ans, accept, decline, tc.accept, tc.decline)
		}
	}
}

// TestUnknownHostFingerprint: typing the fingerprint at the unknown-host
// prompt records the key; a lower-cased one is asked again, then "no"
// refuses it.
func TestUnknownHostFingerprint(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	fp := ssh.FingerprintSHA256(key)
	for _, tc := range []struct {
		name    string
		answers []string
		ok      bool
	}{
		{"fingerprint", []string{fp}, true},
		{"lower-cased, then no", []string{strings.ToLower(fp), "no"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kh := filepath.Join(t.TempDir(), "known_hosts")
			s := profiles.SSHSettings{Alias: "h", StrictHostKeyChecking: "ask", UserKnownHostsFiles: []string{kh}}
			p := &scripted{answers: tc.answers}
			he := &hostKeyError{address: "h:22", keyType: key.Type(), fingerprint: fp}
			err := NewAuthenticator(p).unknownHost(s, he, "h:22", key)
			data, _ := os.ReadFile(kh)
			recorded := strings.Contains(string(data), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))))
			if tc.ok && (err != nil || !recorded) {
				t.Fatalf("fingerprint answer refused: %v, known_hosts %q", err, data)
			}
			if !tc.ok && (!errors.As(err, &he) || !he.declined || recorded) {
				t.Fatalf("want declined, got %v, known_hosts %q", err, data)
			}
			if len(p.asked) != len(tc.answers) {
				t.Errorf("asked %d times, want %d: %q", len(p.asked), len(tc.answers), p.asked)
			}
		})
	}
}
