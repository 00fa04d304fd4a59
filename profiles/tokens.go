package profiles

// Issue 11, point 4: OpenSSH's %-tokens and ${VAR} in file options and
// ProxyCommand, and quoted values with spaces.

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrToken marks a value with a %-token or ${VAR} OpenSSH would refuse (an
// unknown token, an unset variable); ssh fails the connection then, and so
// does kq.
var ErrToken = errors.New("bad token")

// Tokens are the values OpenSSH substitutes for %-tokens (ssh_config(5),
// TOKENS) for one host.
type Tokens struct {
	Home      string // %d, also "~"
	LocalUser string // %u
	UID       string // %i
	LocalHost string // %l (gethostname, with the domain if it has one)
	Host      string // %h: HostName
	Original  string // %n: the name as given
	Port      string // %p
	User      string // %r: the remote user
	KeyAlias  string // %k: HostKeyAlias, else %n
}

// fileTokens are the tokens CertificateFile, IdentityAgent, IdentityFile
// and UserKnownHostsFile accept; proxyTokens those of ProxyCommand (%k is
// not in 9.2's man page, but ssh expands it there).
const (
	fileTokens  = "%CdhiklLnpru"
	proxyTokens = "%hknpr"
)

// tokens builds the token values of s; original is the host as written.
func (r SSHResolver) tokens(s SSHSettings, original string) Tokens {
	host, _ := os.Hostname()
	t := Tokens{Home: r.home(), LocalUser: r.currentUser(), UID: strconv.Itoa(os.Getuid()), LocalHost: host,
		Host: s.HostName, Original: original, Port: strconv.Itoa(s.Port), User: s.User, KeyAlias: s.HostKeyAlias}
	if t.KeyAlias == "" {
		t.KeyAlias = original
	}
	return t
}

// ConnHash is %C: the SHA1 of %l%h%p%r in hex, as OpenSSH 9.2 makes it.
func (t Tokens) ConnHash() string {
	sum := sha1.Sum([]byte(t.LocalHost + t.Host + t.Port + t.User))
	return hex.EncodeToString(sum[:])
}

func (t Tokens) value(c byte) string {
	switch c {
	case '%':
		return "%"
	case 'C':
		return t.ConnHash()
	case 'd':
		return t.Home
	case 'h':
		return t.Host
	case 'i':
		return t.UID
	case 'k':
		return t.KeyAlias
	case 'l':
		return t.LocalHost
	case 'L':
		short, _, _ := strings.Cut(t.LocalHost, ".")
		return short
	case 'n':
		return t.Original
	case 'p':
		return t.Port
	case 'r':
		return t.User
	case 'u':
		return t.LocalUser
	}
	return ""
}

// expand substitutes the %-tokens in allowed and, when env is set,
// ${VAR}, in one pass as OpenSSH's percent_dollar_expand does (what a
// substitution yields is not expanded again).
func (t Tokens) expand(v, allowed string, env bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch {
		case env && strings.HasPrefix(v[i:], "${"):
			end := strings.IndexByte(v[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("%w: %q: ${ without }", ErrToken, v)
			}
			name := v[i+2 : i+end]
			val, ok := os.LookupEnv(name)
			if !ok || name == "" {
				return "", fmt.Errorf("%w: %q: environment variable ${%s} is not set", ErrToken, v, name)
			}
			b.WriteString(val)
			i += end
		case v[i] == '%':
			if i+1 >= len(v) || !strings.ContainsRune(allowed, rune(v[i+1])) {
				return "", fmt.Errorf("%w: %q: unknown token %%%s", ErrToken, v, v[i+1:min(i+2, len(v))])
			}
			b.WriteString(t.value(v[i+1]))
			i++
		default:
			b.WriteByte(v[i])
		}
	}
	return b.String(), nil
}

// ExpandFile expands a file option (IdentityFile, CertificateFile,
// IdentityAgent, UserKnownHostsFile) as ssh does when it connects: a
// leading "~" first, then %-tokens and ${VAR}.
func (r SSHResolver) ExpandFile(t Tokens, v string) (string, error) {
	if v == "none" {
		return v, nil
	}
	return t.expand(r.expand(v), fileTokens, true)
}

// ExpandProxyCommand expands ProxyCommand's tokens (%h %k %n %p %r %%);
// ${VAR} is left to the shell that runs it.
func (t Tokens) ExpandProxyCommand(v string) (string, error) {
	return t.expand(v, proxyTokens, false)
}

// SplitArgs splits an ssh_config value into words as OpenSSH's argv_split
// does: blanks separate words, double or single quotes keep blanks inside
// a word (and are removed), and a backslash escapes a quote or a
// backslash.
func SplitArgs(v string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && i+1 < len(v) && strings.IndexByte(`"'\`, v[i+1]) >= 0 && (quote == 0 || v[i+1] == quote || v[i+1] == '\\'):
			cur.WriteByte(v[i+1])
			i++
			inWord = true
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote, inWord = c, true
		case c == ' ' || c == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("%w: %q: unterminated quote", ErrToken, v)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// splitPrinted splits a list `ssh -G` printed joined by blanks, after
// expanding every path itself (UserKnownHostsFile, GlobalKnownHostsFile):
// a path with blanks in it cannot be told from two paths there, so a new
// path starts only at a word that starts with "/" or "~", which every
// expanded path does unless it is relative. A path whose blank is
// followed by "/" is still split.
func splitPrinted(v string) []string {
	var out []string
	for _, w := range strings.Split(v, " ") {
		if len(out) > 0 && (w == "" || (w[0] != '/' && w[0] != '~')) {
			out[len(out)-1] += " " + w
			continue
		}
		out = append(out, w)
	}
	return out
}

// expandTokens expands what is still raw in s: IdentityFile and
// ProxyCommand always (ssh -G prints them raw), and IdentityAgent and
// UserKnownHostsFile when they come from the Go parser (ssh -G expands
// those itself, and expanding twice would eat a literal "%%").
func (r SSHResolver) expandTokens(s *SSHSettings, original string, parser bool) error {
	t := r.tokens(*s, original)
	var errs []error
	file := func(option, v string) string {
		out, err := r.ExpandFile(t, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", option, err))
		}
		return out
	}
	for i, f := range s.IdentityFiles {
		s.IdentityFiles[i] = file("IdentityFile", f)
	}
	if parser {
		for i, f := range s.UserKnownHostsFiles {
			s.UserKnownHostsFiles[i] = file("UserKnownHostsFile", f)
		}
		// SSH_AUTH_SOCK and $VAR name a variable that holds the socket.
		if a := s.IdentityAgent; a != "" && a != "SSH_AUTH_SOCK" && !(strings.HasPrefix(a, "$") && !strings.HasPrefix(a, "${")) {
			s.IdentityAgent = file("IdentityAgent", a)
		}
	}
	if strings.EqualFold(s.ProxyCommand, "none") {
		s.ProxyCommand = ""
	}
	if s.ProxyCommand != "" {
		var err error
		if s.ProxyCommand, err = t.ExpandProxyCommand(s.ProxyCommand); err != nil {
			errs = append(errs, fmt.Errorf("ProxyCommand: %w", err))
		}
	}
	return errors.Join(errs...)
}
