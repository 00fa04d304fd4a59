package profiles

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// SSHHostAliases lists the literal Host aliases of the ssh config file at
// path and of the files it Includes (relative to ~/.ssh, globbed, nested
// at most 16 deep, as ssh does), in file order, each once. Patterns with
// wildcards or negations are not aliases. Unreadable files are skipped.
func SSHHostAliases(path string) []string {
	home, _ := os.UserHomeDir()
	seen := map[string]bool{}
	var out []string
	hostAliasesOf(path, filepath.Join(home, ".ssh"), 0, func(a string) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	})
	return out
}

func hostAliasesOf(path, sshDir string, depth int, add func(string)) {
	if depth > 16 {
		return
	}
	fh, err := os.Open(path)
	if err != nil {
		return
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		key, rest := splitConfigLine(sc.Text())
		switch key {
		case "host":
			for _, w := range strings.Fields(rest) {
				if !strings.ContainsAny(w, "*?!") {
					add(strings.Trim(w, `"`))
				}
			}
		case "include":
			for _, pat := range strings.Fields(rest) {
				pat = expandTilde(strings.Trim(pat, `"`))
				if !filepath.IsAbs(pat) {
					pat = filepath.Join(sshDir, pat)
				}
				files, _ := filepath.Glob(pat)
				for _, f := range files {
					hostAliasesOf(f, sshDir, depth+1, add)
				}
			}
		}
	}
}

// splitConfigLine is an ssh_config line's keyword (lower case) and the rest
// ("Key value", "Key=value"); comments and blank lines give "".
func splitConfigLine(line string) (key, rest string) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", ""
	}
	i := strings.IndexAny(line, " \t=")
	if i < 0 {
		return strings.ToLower(line), ""
	}
	rest = strings.TrimLeft(line[i:], " \t")
	rest = strings.TrimLeft(strings.TrimPrefix(rest, "="), " \t")
	return strings.ToLower(line[:i]), rest
}

func expandTilde(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}
