package profiles

// Issue 11, points 1 and 4, for the Go parser: values read with their
// quotes, and which of ProxyJump and ProxyCommand comes first.

import (
	"os"
	"path/filepath"
	"strings"

	sshconfig "github.com/kevinburke/ssh_config"
)

// defaultConfigs decodes the user's and the system's ssh config, as ssh
// reads them without -F; a missing or unreadable file is skipped (the
// lookup functions report parse errors).
func defaultConfigs(home string) []*sshconfig.Config {
	var out []*sshconfig.Config
	for _, f := range []string{filepath.Join(home, ".ssh", "config"), "/etc/ssh/ssh_config"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if cfg, err := sshconfig.DecodeBytes(data); err == nil {
			out = append(out, cfg)
		}
	}
	return out
}

// kvRaw is the value of kv as written, quotes included: the parser strips
// a pair of outer quotes from Value, which joins `"a" "b"` into one word.
// ProxyCommand keeps a "# ..." the parser took for a comment: OpenSSH
// gives the command the whole rest of the line.
func kvRaw(kv *sshconfig.KV) string {
	line := strings.TrimLeft(kv.String(), " \t")
	line = strings.TrimPrefix(line, kv.Key)
	if kv.Comment != "" && !strings.EqualFold(kv.Key, "ProxyCommand") {
		line = strings.TrimSuffix(line, "#"+kv.Comment)
	}
	line = strings.TrimLeft(line, " \t")
	line = strings.TrimLeft(strings.TrimPrefix(line, "="), " \t")
	return strings.TrimRight(line, " \t")
}

// rawEach calls fn with each (key, raw value) of the host's lines whose
// key is in keys, in file order. Lines from an Include come with the
// parser's unquoted value (its included files are not reachable).
func (l *sshLookup) rawEach(keys []string, fn func(key, val string)) {
	for _, cfg := range l.configs {
		for _, h := range cfg.Hosts {
			if !h.Matches(l.host) {
				continue
			}
			for _, n := range h.Nodes {
				l.rawNode(n, keys, fn)
			}
		}
	}
}

func (l *sshLookup) rawNode(n sshconfig.Node, keys []string, fn func(key, val string)) {
	for _, k := range keys {
		switch t := n.(type) {
		case *sshconfig.KV:
			if strings.EqualFold(t.Key, k) {
				fn(k, kvRaw(t))
			}
		case *sshconfig.Include:
			vals, _ := t.GetAll(l.host, k)
			for _, v := range vals {
				fn(k, v)
			}
		}
	}
}

// rawAll is every raw value of key, in order.
func (l *sshLookup) rawAll(key string) []string {
	var out []string
	l.rawEach([]string{key}, func(_, v string) { out = append(out, v) })
	if len(out) == 0 && len(l.configs) == 0 {
		out = l.all(key) // no file read here: what the parser knows
	}
	return out
}

// rawFirst is the first raw value of key (the one OpenSSH uses), or "".
func (l *sshLookup) rawFirst(key string) string {
	if all := l.rawAll(key); len(all) > 0 {
		return all[0]
	}
	return ""
}

// args splits a raw value into words as OpenSSH does; a bad quote is
// reported with the parser's other errors.
func (l *sshLookup) args(v string) []string {
	words, err := SplitArgs(v)
	l.errs = append(l.errs, err)
	return words
}

// firstArg is the one word of a single-path option.
func (l *sshLookup) firstArg(v string) string {
	if w := l.args(v); len(w) > 0 {
		return w[0]
	}
	return ""
}

// proxy returns the ProxyJump and ProxyCommand in effect, as OpenSSH
// decides: whichever is given first wins, except that "ProxyJump none"
// still lets a later ProxyCommand through (what ssh -G 9.2 prints).
// ProxyCommand keeps its line as written: the shell reads the quotes.
func (l *sshLookup) proxy() (jump, command string) {
	jumpSet, cmdSet := false, false
	l.rawEach([]string{"ProxyJump", "ProxyCommand"}, func(k, v string) {
		switch {
		case k == "ProxyCommand" && !cmdSet && !(jumpSet && !strings.EqualFold(jump, "none")):
			command, cmdSet = v, true
		case k == "ProxyJump" && !jumpSet && !cmdSet:
			jump, jumpSet = v, true
		}
	})
	if strings.EqualFold(command, "none") {
		command = ""
	}
	return jump, command
}
