package profiles

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	sshconfig "github.com/kevinburke/ssh_config"
)

// Issue 11 point 8: the Go ssh_config parser (kevinburke/ssh_config) knows
// "Match all" and "Match host PATTERNS" only, reads "Match host a user b"
// as four host patterns, and fails on other criteria. So kq evaluates every
// Match line itself, before that parser sees the file: a Match that holds
// becomes "Host *", one that does not becomes "Host !*" (matches nothing).
// Include is inlined at the same time, so Match lines of included files are
// evaluated too. "Match exec" is refused by name: kq never runs commands
// found in ssh config.

// errMatchExec marks a config that needs "Match exec", which only ssh -G
// evaluates.
var errMatchExec = errors.New("Match exec is not supported without the ssh client (kq never runs commands from ssh config; install OpenSSH's client so kq uses ssh -G)")

// matchContext is what Match criteria are tested against. As in ssh,
// host and user are the HostName and User set by the lines read so far
// (first value wins), so a Match sees only what comes before it.
type matchContext struct {
	originalHost, host, user, localUser string
	hostSet, userSet                    bool
}

// maxIncludeDepth is OpenSSH's limit on nested Include.
const maxIncludeDepth = 16

// configSource is one ssh_config file with the directory its relative
// Include paths are read from.
type configSource struct {
	path, includeDir string
}

// flattenConfigs reads the files in order (first value wins, as in ssh),
// with Include inlined and Match evaluated, into one file for the parser.
func flattenConfigs(files []configSource, mc *matchContext) ([]byte, error) {
	var out bytes.Buffer
	for _, f := range files {
		data, err := os.ReadFile(f.path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out.WriteString("Host *\n")
		if err := flatten(&out, data, f.path, f.includeDir, mc, 0); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// flatten writes data to out with Include inlined and Match rewritten.
func flatten(out *bytes.Buffer, data []byte, file, includeDir string, mc *matchContext, depth int) error {
	if depth > maxIncludeDepth {
		return fmt.Errorf("%s: Include nested deeper than %d", file, maxIncludeDepth)
	}
	header, active := "Host *", true // the block the current lines belong to
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		key, args := configKeyword(line)
		switch key {
		case "match":
			var err error
			if active, err = evalMatch(args, mc); err != nil {
				return fmt.Errorf("%s:%d: %w", file, n, err)
			}
			header = map[bool]string{true: "Host *", false: "Host !*"}[active]
			line = header
		case "host":
			header, active = strings.TrimSpace(line), hostLineMatches(args, mc.originalHost)
		case "include":
			if err := inline(out, args, includeDir, mc, depth); err != nil {
				return fmt.Errorf("%s:%d: %w", file, n, err)
			}
			line = header // back in the including block
		case "hostname", "user":
			if active && len(args) > 0 {
				mc.set(key, args[0])
			}
		}
		out.WriteString(line + "\n")
	}
	return sc.Err()
}

// set records the first HostName or User an active block gives.
func (mc *matchContext) set(key, val string) {
	switch {
	case key == "hostname" && !mc.hostSet:
		mc.host, mc.hostSet = strings.ReplaceAll(val, "%h", mc.originalHost), true
	case key == "user" && !mc.userSet:
		mc.user, mc.userSet = val, true
	}
}

// hostLineMatches is a Host line's test: any pattern matches and no
// negated one does.
func hostLineMatches(patterns []string, host string) bool {
	return matchPatternList(strings.Join(patterns, ","), host)
}

// inline writes every file an Include line names, in glob order.
func inline(out *bytes.Buffer, args []string, includeDir string, mc *matchContext, depth int) error {
	for _, a := range args {
		if strings.HasPrefix(a, "~/") {
			if h, err := os.UserHomeDir(); err == nil {
				a = filepath.Join(h, a[2:])
			}
		} else if !filepath.IsAbs(a) {
			a = filepath.Join(includeDir, a)
		}
		paths, err := filepath.Glob(a)
		if err != nil {
			return fmt.Errorf("Include %s: %w", a, err)
		}
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("Include: %w", err)
			}
			if err := flatten(out, data, p, includeDir, mc, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// configKeyword splits an ssh_config line into its lowercase keyword and
// arguments ("Key value", "Key=value"); comments and blanks give "".
func configKeyword(line string) (string, []string) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return "", nil
	}
	key, rest, _ := strings.Cut(line, " ")
	if k, v, ok := strings.Cut(key, "="); ok {
		key, rest = k, v+" "+rest
	}
	if k, v, ok := strings.Cut(key, "\t"); ok {
		key, rest = k, v+" "+rest
	}
	rest = strings.TrimPrefix(strings.TrimSpace(rest), "=")
	if i := strings.Index(rest, " #"); i >= 0 {
		rest = rest[:i]
	}
	return strings.ToLower(key), strings.Fields(rest)
}

// evalMatch evaluates the criteria of one Match line; all must hold.
func evalMatch(args []string, mc *matchContext) (bool, error) {
	if len(args) == 0 {
		return false, errors.New("Match needs a criterion")
	}
	result := true
	for i := 0; i < len(args); i++ {
		crit := strings.ToLower(args[i])
		negate := strings.HasPrefix(crit, "!")
		crit = strings.TrimPrefix(crit, "!")
		var ok bool
		switch crit {
		case "all":
			ok = true
		case "final":
			ok = true // kq's one pass is the final one
		case "canonical":
			ok = false // kq never canonicalizes host names
		case "exec":
			return false, errMatchExec
		case "host", "originalhost", "user", "localuser":
			if i+1 >= len(args) {
				return false, fmt.Errorf("Match %s needs an argument", crit)
			}
			i++
			ok = matchPatternList(args[i], map[string]string{"host": mc.host, "originalhost": mc.originalHost,
				"user": mc.user, "localuser": mc.localUser}[crit])
		default:
			return false, fmt.Errorf("Match %s is not supported without the ssh client", crit)
		}
		if negate {
			ok = !ok
		}
		result = result && ok
	}
	return result, nil
}

// matchPatternList is OpenSSH's match_pattern_list: comma-separated
// patterns (*, ?), a matching "!pattern" vetoes, case-insensitive.
func matchPatternList(list, s string) bool {
	s = strings.ToLower(s)
	matched := false
	for _, p := range strings.Split(strings.ToLower(list), ",") {
		if neg := strings.HasPrefix(p, "!"); neg {
			if wildcard(p[1:], s) {
				return false
			}
		} else if wildcard(p, s) {
			matched = true
		}
	}
	return matched
}

// wildcard matches s against p, where * is any run and ? any one byte.
func wildcard(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if wildcard(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != p[0] {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return s == ""
}

// decodeFlat parses a flattened config.
func decodeFlat(data []byte) (*sshconfig.Config, error) {
	return sshconfig.Decode(bytes.NewReader(data))
}
