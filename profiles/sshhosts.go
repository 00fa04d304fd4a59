package profiles

import (
	"os"
	"path/filepath"
	"strings"
)

// Issue 12 point 5: shell completion offers the Host aliases of the ssh
// config, as ssh's own completion does. That read must never fail and
// never print: a missing file, an unreadable Include or a line the
// ssh_config parser would refuse only leaves out what it hides. So it is
// a line reader of its own (lineWords, with OpenSSH's quoting) rather than
// the parser, which gives up on a whole file for one bad line and keeps
// included files out of reach.

// systemSSHConfig is the system-wide ssh config, read after the user's as
// ssh reads it without -F; a variable so tests can point it elsewhere.
var systemSSHConfig = "/etc/ssh/ssh_config"

// HostAliases lists the concrete names on the Host lines of configFile,
// or of the user's and the system's ssh config when configFile is "", in
// file order with each Include inlined where it stands (relative paths
// are read from ~/.ssh, or /etc/ssh for the system file; globs and "~/"
// work; nesting stops at OpenSSH's depth). Patterns with "*" or "?" and
// negated ones ("!name") are left out, and so are words with blanks or
// commas: they name no host one could type.
// Files that cannot be read are skipped; the result has no duplicates.
func (r SSHResolver) HostAliases(configFile string) []string {
	files := []configSource{{r.expand("~/.ssh/config"), r.expand("~/.ssh")}, {systemSSHConfig, filepath.Dir(systemSSHConfig)}}
	if configFile != "" {
		files = []configSource{{r.expand(configFile), r.expand("~/.ssh")}}
	}
	a := &aliasReader{r: r, seen: map[string]bool{}, open: map[string]bool{}}
	for _, f := range files {
		a.file(f.path, f.includeDir, 0)
	}
	return a.out
}

// maxAliasFiles bounds how many files one HostAliases call reads, so
// Includes that fan out (each file including several that include
// several) cost a moment, not minutes, at every Tab.
const maxAliasFiles = 256

// aliasReader collects Host aliases across files and their Includes.
type aliasReader struct {
	r     SSHResolver
	seen  map[string]bool // aliases already in out
	open  map[string]bool // files being read: an Include loop ends there
	reads int
	out   []string
}

// file reads the aliases of one file, and of what it includes.
func (a *aliasReader) file(path, includeDir string, depth int) {
	if depth > maxIncludeDepth || a.open[path] || a.reads >= maxAliasFiles {
		return
	}
	a.reads++
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	a.open[path] = true
	defer delete(a.open, path)
	for _, line := range strings.Split(string(data), "\n") {
		key, args := lineWords(line)
		switch key {
		case "host":
			a.add(args)
		case "include":
			for _, p := range a.includePaths(args, includeDir) {
				a.file(p, includeDir, depth+1)
			}
		}
	}
}

// includePaths expands an Include line's arguments into files, as ssh
// does: "~/" is the home directory, other relative paths are under
// includeDir, and each argument is a glob (in lexical order).
func (a *aliasReader) includePaths(args []string, includeDir string) []string {
	var out []string
	for _, arg := range args {
		switch {
		case arg == "~" || strings.HasPrefix(arg, "~/"):
			arg = a.r.expand(arg)
		case !filepath.IsAbs(arg):
			arg = filepath.Join(includeDir, arg)
		}
		matches, err := filepath.Glob(arg)
		if err == nil {
			out = append(out, matches...)
		}
	}
	return out
}

// add keeps the concrete names among one Host line's patterns.
func (a *aliasReader) add(patterns []string) {
	for _, p := range patterns {
		if p == "" || strings.ContainsAny(p, "*?!, \t") || a.seen[p] {
			continue
		}
		a.seen[p] = true
		a.out = append(a.out, p)
	}
}

// lineWords splits an ssh_config line as OpenSSH's readconf does: the
// keyword (lower-cased) ends at a blank or "=", the arguments are quoted
// words (SplitArgs) up to one that starts with "#". A line with a bad
// quote gives nothing.
func lineWords(line string) (string, []string) {
	line = strings.TrimLeft(line, " \t\r")
	if line == "" || line[0] == '#' {
		return "", nil
	}
	end := strings.IndexAny(line, " \t=")
	if end < 0 {
		return strings.ToLower(line), nil
	}
	key, rest := line[:end], strings.TrimLeft(line[end:], " \t\r")
	rest = strings.TrimLeft(strings.TrimPrefix(rest, "="), " \t")
	words, err := SplitArgs(strings.TrimRight(rest, " \t\r"))
	if err != nil {
		return "", nil
	}
	for i, w := range words {
		if strings.HasPrefix(w, "#") {
			words = words[:i]
			break
		}
	}
	return strings.ToLower(key), words
}
