package profiles

import (
	"errors"
	"fmt"
	"strings"
)

// CheckKernelCommand reports a kernel command that the "-f FILE" kq
// appends to it cannot follow: a trailing # comment, an unclosed quote or
// a trailing backslash would swallow it, and a command ending in ;, &, |,
// && or || would run it as a command of its own. It reads the command as
// a POSIX shell does, quotes and escapes included.
func CheckKernelCommand(cmd string) error {
	var quote rune // 0, '\'' or '"'
	escaped, wordStart := false, true
	last := "" // the last unquoted operator, if nothing followed it
	for _, r := range strings.TrimSpace(cmd) {
		switch {
		case escaped:
			escaped, wordStart, last = false, false, ""
		case quote == '\'':
			if r == '\'' {
				quote = 0
			}
		case r == '\\':
			escaped = true
		case quote == '"':
			if r == '"' {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote, wordStart, last = r, false, ""
		case r == '#' && wordStart:
			return errors.New("a # comment would swallow the -f FILE that kq appends; remove the comment")
		case strings.ContainsRune(";&|", r):
			last, wordStart = last+string(r), true
		case r == '(':
			last, wordStart = "(", true
		case r == ' ' || r == '\t' || r == '\n':
			wordStart = true
		default:
			wordStart, last = false, ""
		}
	}
	switch {
	case escaped:
		return errors.New("a trailing backslash would swallow the -f FILE that kq appends")
	case quote != 0:
		return fmt.Errorf("unclosed %c quote: it would swallow the -f FILE that kq appends", quote)
	case last != "":
		return fmt.Errorf("the command ends with %q, so the -f FILE that kq appends would not reach the kernel", last)
	}
	return nil
}
