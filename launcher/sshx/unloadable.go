package sshx

import (
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/kq-dev/kq/launcher/kinds"
	"github.com/kq-dev/kq/profiles"
)

// Issue 11 point 8: what kq cannot do, it says. x/crypto cannot load FIDO
// (security key) private key files, which need a FIDO device to sign, nor
// PKCS#11 providers; ssh-agent can hold both, and agent keys work.

// skKeyType is the key type of an OpenSSH private key file whose key is a
// FIDO one ("sk-ssh-ed25519@openssh.com"), else "". It reads the public
// key in the file's clear header, which is there even when the key is
// encrypted.
func skKeyType(data []byte) string {
	t, _ := skPublicKey(data)
	return t
}

// skPublicKey is skKeyType with the public key's wire form.
func skPublicKey(data []byte) (string, []byte) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "OPENSSH PRIVATE KEY" {
		return "", nil
	}
	b, ok := strings.CutPrefix(string(block.Bytes), "openssh-key-v1\x00")
	if !ok {
		return "", nil
	}
	for range 3 { // cipher name, KDF name, KDF options
		if b, ok = skipString(b); !ok {
			return "", nil
		}
	}
	if len(b) < 4 {
		return "", nil
	}
	b = b[4:] // number of keys
	if len(b) < 4 {
		return "", nil
	}
	rest, ok := skipString(b)
	if !ok {
		return "", nil
	}
	pub := b[4 : len(b)-len(rest)]
	if len(pub) < 4 {
		return "", nil
	}
	n := binary.BigEndian.Uint32([]byte(pub[:4]))
	if uint64(len(pub)) < 4+uint64(n) {
		return "", nil
	}
	if t := pub[4 : 4+n]; strings.HasPrefix(t, "sk-") {
		return t, []byte(pub)
	}
	return "", nil
}

// skipString drops one SSH wire string (uint32 length, bytes).
func skipString(b string) (string, bool) {
	if len(b) < 4 {
		return "", false
	}
	n := binary.BigEndian.Uint32([]byte(b[:4]))
	if uint64(len(b)) < 4+uint64(n) {
		return "", false
	}
	return b[4+n:], true
}

// skFile is the FIDO key type of the identity file at path, else "".
func skFile(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return skKeyType(data)
}

// HopNotes lists what kq will not do for the hop that ssh would: FIDO
// identity files and a PKCS11Provider it cannot load, and the options it
// does not honour. --dry-run prints them, and -v at connect time.
func HopNotes(s profiles.SSHSettings) []string {
	notes := loadNotes(s)
	for _, u := range s.Unhonoured {
		notes = append(notes, "not honoured: "+u.String())
	}
	return notes
}

// loadNotes are the credentials the hop's config names that kq cannot
// load itself.
func loadNotes(s profiles.SSHSettings) []string {
	var notes []string
	for _, f := range Existing(s.IdentityFiles) {
		if t := skFile(f); t != "" {
			notes = append(notes, fmt.Sprintf("identity file %s is a FIDO key (%s), which kq cannot use from a file: "+
				"load it into ssh-agent (ssh-add %s); keys in the agent work", f, t, f))
		}
	}
	if s.PKCS11Provider != "" {
		notes = append(notes, fmt.Sprintf("PKCS11Provider %s: kq cannot load PKCS#11 providers: "+
			"add the token's keys to ssh-agent (ssh-add -s %s); keys in the agent work", s.PKCS11Provider, s.PKCS11Provider))
	}
	return notes
}

// explainUnloadable adds, to an authentication failure, the credentials
// of the hop that kq could not load, which ssh might have used.
func explainUnloadable(s profiles.SSHSettings, err error) error {
	notes := loadNotes(s)
	if len(notes) == 0 || !errors.Is(err, kinds.Auth) {
		return err
	}
	return kinds.With(kinds.Auth, strings.Join(notes, "; "), err)
}
