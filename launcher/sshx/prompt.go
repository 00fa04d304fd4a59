package sshx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/term"
)

// errNoPrompt is returned when kq would have to ask the user something but
// may not: no terminal, BatchMode, or SSH_ASKPASS_REQUIRE=never. kq fails at
// once instead of hanging on a prompt nobody sees.
var errNoPrompt = errors.New("cannot ask: no terminal (and no SSH_ASKPASS)")

// Prompter asks the user one question. With echo false the answer is not
// shown as it is typed. An error means there is nobody to ask: the dial
// then fails at once instead of hanging.
type Prompter interface {
	Ask(question string, echo bool) (string, error)
}

// promptEnv is what decides how kq may ask, read once per run.
type promptEnv struct {
	stdinIsTerminal bool
	askpass         string // SSH_ASKPASS
	require         string // SSH_ASKPASS_REQUIRE: "", never, prefer, force
	display         bool   // DISPLAY or WAYLAND_DISPLAY set
}

// NewPrompter picks how kq asks, from the environment and whether stdin
// is a terminal (see newPrompter). Release it with ClosePrompter.
func NewPrompter(stdinIsTerminal bool) Prompter {
	return newPrompter(promptEnvFromOS(stdinIsTerminal))
}

func promptEnvFromOS(stdinIsTerminal bool) promptEnv {
	return promptEnv{
		stdinIsTerminal: stdinIsTerminal,
		askpass:         os.Getenv("SSH_ASKPASS"),
		require:         strings.ToLower(os.Getenv("SSH_ASKPASS_REQUIRE")),
		display:         os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "",
	}
}

// newPrompter follows ssh(1): SSH_ASKPASS_REQUIRE=force always uses the
// askpass program, prefer uses it when a display is set, never forbids it;
// otherwise the terminal is used when there is one, and the askpass program
// when there is none but a display is set.
func newPrompter(e promptEnv) Prompter {
	askpass := e.askpass
	if e.require == "never" {
		askpass = ""
	}
	if askpass != "" && (e.require == "force" || (e.require == "prefer" && e.display)) {
		return &askpassPrompter{program: askpass}
	}
	if e.stdinIsTerminal {
		if t := openTTY(); t != nil {
			return t
		}
	}
	if askpass != "" && e.display {
		return &askpassPrompter{program: askpass}
	}
	return noPrompter{}
}

// NoPrompts is the prompter of a kq that must never ask (kq kernel, run by
// a kernel manager with no terminal): every question fails at once.
func NoPrompts() Prompter { return neverPrompter{} }

// errNeverAsks: a kq that is never to prompt was asked to.
var errNeverAsks = fmt.Errorf("%w: kq kernel and kq doctor never ask", errNoPrompt)

type neverPrompter struct{}

func (neverPrompter) Ask(string, bool) (string, error) { return "", errNeverAsks }

type noPrompter struct{}

func (noPrompter) Ask(string, bool) (string, error) { return "", errNoPrompt }

// ttyPrompter asks on the controlling terminal, not on stdin/stdout, which
// belong to the frontend.
type ttyPrompter struct {
	mu  sync.Mutex
	in  *os.File
	out io.Writer
}

func openTTY() *ttyPrompter {
	if runtime.GOOS == "windows" {
		if term.IsTerminal(int(os.Stdin.Fd())) {
			return &ttyPrompter{in: os.Stdin, out: os.Stderr}
		}
		return nil
	}
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil
	}
	return &ttyPrompter{in: f, out: f}
}

func (t *ttyPrompter) Ask(question string, echo bool) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := io.WriteString(t.out, question); err != nil {
		return "", fmt.Errorf("write prompt: %w", err)
	}
	if !echo {
		b, err := term.ReadPassword(int(t.in.Fd()))
		_, _ = io.WriteString(t.out, "\n")
		if err != nil {
			return "", fmt.Errorf("read answer: %w", err)
		}
		return string(b), nil
	}
	// One byte at a time, so nothing typed after the line is swallowed.
	var line []byte
	buf := make([]byte, 1)
	for {
		n, err := t.in.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				break
			}
			line = append(line, buf[0])
		}
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				break
			}
			return "", fmt.Errorf("read answer: %w", err)
		}
	}
	return strings.TrimRight(string(line), "\r"), nil
}

// askpassPrompter runs SSH_ASKPASS with the question as its argument and
// takes its standard output as the answer, as ssh does.
type askpassPrompter struct {
	mu      sync.Mutex
	program string
}

func (a *askpassPrompter) Ask(question string, echo bool) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cmd := exec.Command(a.program, strings.TrimSpace(question))
	cmd.Env = os.Environ()
	if echo {
		// ssh's hint to askpass programs that the answer is not secret.
		cmd.Env = append(cmd.Env, "SSH_ASKPASS_PROMPT=confirm")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: SSH_ASKPASS %s: %v", errNoPrompt, a.program, err)
	}
	return strings.TrimRight(string(out), "\r\n"), nil
}

// ClosePrompter releases the terminal a prompter from NewPrompter opened,
// if it opened one.
func ClosePrompter(p Prompter) {
	if t, ok := p.(*ttyPrompter); ok && t.in != os.Stdin {
		t.in.Close()
	}
}
