package sshx

import "golang.org/x/crypto/ssh"

// Issue 11 point 6: which authentication methods, in which order.

// defaultMethodOrder is OpenSSH's PreferredAuthentications default.
var defaultMethodOrder = []string{"gssapi-with-mic", "hostbased", "publickey", "keyboard-interactive", "password"}

// orderMethods returns the methods of byName in the order preferred
// names them (OpenSSH's order when nil); a method preferred leaves out is
// not used, as with ssh. x/crypto tries them in this order, skipping those
// the server does not offer.
func orderMethods(byName map[string]ssh.AuthMethod, preferred []string) []ssh.AuthMethod {
	if preferred == nil {
		preferred = defaultMethodOrder
	}
	var out []ssh.AuthMethod
	seen := map[string]bool{}
	for _, name := range preferred {
		if m, ok := byName[name]; ok && !seen[name] {
			seen[name] = true
			out = append(out, m)
		}
	}
	return out
}
