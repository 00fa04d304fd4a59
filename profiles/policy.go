package profiles

import (
	"path"
	"strconv"
	"strings"
)

// Issue 11 points 5 and 6: the algorithm policy, which authentication
// methods in which order, and how the TCP connection is made.

// OpenSSH 9.2's default algorithm lists, as ssh -G prints them. The Go
// parser (no ssh installed) resolves "+", "-" and "^" against these, as
// ssh resolves them against its own.
var openSSHDefaults = map[string][]string{
	"kexalgorithms": split("sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org," +
		"ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256," +
		"diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256"),
	"ciphers": split("chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com"),
	"macs": split("umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com," +
		"hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1"),
	"hostkeyalgorithms":        keyAlgos,
	"pubkeyacceptedalgorithms": keyAlgos,
}

var keyAlgos = split("ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256-cert-v01@openssh.com," +
	"ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521-cert-v01@openssh.com," +
	"sk-ssh-ed25519-cert-v01@openssh.com,sk-ecdsa-sha2-nistp256-cert-v01@openssh.com," +
	"rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com,ssh-ed25519," +
	"ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,sk-ssh-ed25519@openssh.com," +
	"sk-ecdsa-sha2-nistp256@openssh.com,rsa-sha2-512,rsa-sha2-256")

func split(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// applyPolicyDefaults sets OpenSSH's defaults for the options below whose
// zero value is not the default.
func applyPolicyDefaults(s *SSHSettings) {
	s.ConnectionAttempts = 1
	s.AddressFamily = "any"
}

// parsePolicyOption reads one ssh -G line of these options; it reports
// whether key was one of them.
func parsePolicyOption(s *SSHSettings, key, val string) bool {
	switch key {
	case "kexalgorithms":
		s.KexAlgorithms = split(val)
	case "ciphers":
		s.Ciphers = split(val)
	case "macs":
		s.MACs = split(val)
	case "hostkeyalgorithms":
		s.HostKeyAlgorithms = split(val)
	case "pubkeyacceptedalgorithms", "pubkeyacceptedkeytypes":
		s.PubkeyAcceptedAlgorithms = split(val)
	case "pubkeyauthentication":
		s.NoPubkeyAuthentication = isNo(val) // yes is also "unbound", "host-bound"
	case "preferredauthentications":
		s.PreferredAuthentications = split(val)
	case "connectionattempts":
		if n, err := strconv.Atoi(val); err == nil && n > 0 {
			s.ConnectionAttempts = n
		}
	case "addressfamily":
		s.AddressFamily = strings.ToLower(val)
	case "bindaddress":
		s.BindAddress = val
	case "tcpkeepalive":
		s.NoTCPKeepAlive = isNo(val)
	case "pkcs11provider":
		if !strings.EqualFold(val, "none") {
			s.PKCS11Provider = val
		}
	default:
		return false
	}
	return true
}

func isNo(v string) bool { return strings.EqualFold(v, "no") || strings.EqualFold(v, "false") }

// parserPolicy fills these options from the Go parser, resolving the
// algorithm lists as ssh does.
func parserPolicy(s *SSHSettings, l *sshLookup) {
	applyPolicyDefaults(s)
	for _, key := range []string{"KexAlgorithms", "Ciphers", "MACs", "HostKeyAlgorithms", "PubkeyAcceptedAlgorithms"} {
		v := l.rawStr(key)
		if v == "" && key == "PubkeyAcceptedAlgorithms" {
			v = l.rawStr("PubkeyAcceptedKeyTypes")
		}
		if v != "" {
			lk := strings.ToLower(key)
			parsePolicyOption(s, lk, strings.Join(ResolveAlgorithms(v, openSSHDefaults[lk]), ","))
		}
	}
	for _, key := range []string{"PubkeyAuthentication", "PreferredAuthentications", "ConnectionAttempts",
		"AddressFamily", "BindAddress", "TCPKeepAlive", "PKCS11Provider"} {
		if v := l.rawStr(key); v != "" {
			parsePolicyOption(s, strings.ToLower(key), v)
		}
	}
	s.Unhonoured = FindUnhonoured(func(key string) []string {
		if key == "localforward" || key == "remoteforward" || key == "dynamicforward" || key == "sendenv" || key == "setenv" {
			return l.all(key)
		}
		return []string{l.rawStr(key)}
	})
}

// ResolveAlgorithms applies an ssh_config algorithm value to OpenSSH's
// default list, as ssh does: "+a,b" appends, "-a,b*" removes (patterns
// allowed), "^a,b" puts them first, anything else replaces the list.
func ResolveAlgorithms(value string, defaults []string) []string {
	if value == "" {
		return defaults
	}
	names := split(value[1:])
	switch value[0] {
	case '+':
		out := append([]string(nil), defaults...)
		for _, n := range names {
			if !contains(out, n) {
				out = append(out, n)
			}
		}
		return out
	case '-':
		var out []string
		for _, d := range defaults {
			if !matchesAny(names, d) {
				out = append(out, d)
			}
		}
		return out
	case '^':
		out := append([]string(nil), names...)
		for _, d := range defaults {
			if !contains(out, d) {
				out = append(out, d)
			}
		}
		return out
	}
	return split(value)
}

func matchesAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok || p == s {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}
