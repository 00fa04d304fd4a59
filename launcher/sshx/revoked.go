package sshx

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
)

// krlMagic opens an OpenSSH key revocation list (PROTOCOL.krl), a binary
// format kq cannot read.
var krlMagic = []byte("SSHKRL\n\x00")

// errRevokedUnreadable: RevokedHostKeys names a file kq cannot check a key
// against; as ssh does, kq then refuses rather than connect unchecked.
var errRevokedUnreadable = errors.New("RevokedHostKeys cannot be checked")

// checkRevokedFile refuses a host key (or a host certificate's key or CA)
// listed in the RevokedHostKeys file, as ssh does: a file of public keys,
// one per line. A missing or unreadable file, or a KRL, refuses too.
func checkRevokedFile(path string, key ssh.PublicKey, he *hostKeyError) error {
	if path == "" || path == "none" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: %w", errRevokedUnreadable, err)
	}
	if bytes.HasPrefix(data, krlMagic) {
		return fmt.Errorf("%w: %s is a key revocation list (KRL), which kq cannot read; list revoked keys as public keys, one per line", errRevokedUnreadable, path)
	}
	candidates := []ssh.PublicKey{key}
	if cert, ok := key.(*ssh.Certificate); ok {
		candidates = append(candidates, cert.Key, cert.SignatureKey)
	}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		revoked, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return fmt.Errorf("%w: %s:%d: %w", errRevokedUnreadable, path, i+1, err)
		}
		for _, k := range candidates {
			if bytes.Equal(k.Marshal(), revoked.Marshal()) {
				he.revoked = true
				he.knownAt = []string{fmt.Sprintf("%s:%d (RevokedHostKeys)", path, i+1)}
				return he
			}
		}
	}
	return nil
}
