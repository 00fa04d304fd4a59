package sshx

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kq-dev/kq/launcher/kinds"
	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

// Issue 11 point 6: which authentication methods, in which order.

// defaultMethodOrder is OpenSSH's PreferredAuthentications default.
var defaultMethodOrder = []string{"gssapi-with-mic", "hostbased", "publickey", "keyboard-interactive", "password"}

// orderMethods returns the methods of byName in the order preferred
// names them (OpenSSH's order when nil); a method preferred leaves out is
// not used, as with ssh. x/crypto tries them in this order, skipping those
// the server does not offer.
func orderMethods(byName map[string]ssh.AuthMethod, preferred []string) []ssh.AuthMethod {
	var out []ssh.AuthMethod
	for _, name := range methodOrder(preferred, func(n string) bool { _, ok := byName[n]; return ok }) {
		out = append(out, byName[name])
	}
	return out
}

// methodOrder is the names of orderMethods: preferred (OpenSSH's order
// when nil), each once, those has knows.
func methodOrder(preferred []string, has func(string) bool) []string {
	if preferred == nil {
		preferred = defaultMethodOrder
	}
	var out []string
	seen := map[string]bool{}
	for _, name := range preferred {
		if has(name) && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}

// explainMethods adds, to an authentication failure on a hop whose config
// limits the methods, which ones it allowed: "refused every key" is
// misleading when no key was offered at all.
func explainMethods(s profiles.SSHSettings, err error) error {
	if !errors.Is(err, kinds.Auth) || (!s.NoPubkeyAuthentication && s.PreferredAuthentications == nil) {
		return err
	}
	allowed := methodOrder(s.PreferredAuthentications, func(n string) bool {
		switch n {
		case "publickey":
			return !s.NoPubkeyAuthentication
		case "password":
			return s.PasswordAuthentication
		case "keyboard-interactive":
			return s.KbdInteractiveAuthentication
		}
		return false
	})
	why := fmt.Sprintf("ssh config for %s allows only these methods: %s", s.Alias, strings.Join(allowed, ", "))
	if len(allowed) == 0 {
		why = fmt.Sprintf("ssh config for %s allows no method kq has", s.Alias)
	}
	if s.NoPubkeyAuthentication {
		why += " (PubkeyAuthentication no: no key was offered)"
	}
	return kinds.With(kinds.Auth, why, fmt.Errorf("%w (%s)", err, why))
}
