package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// slowKernel starts the real kernel a second and a half late, so the live
// status line has something to wait for.
const slowKernel = "/bin/sh -c 'sleep 1.5; exec " + kernelCmd + ` "$@"' kq`

// TestOutputOnATerminal: on a terminal kq redraws one status line while
// it waits for the kernel and takes it away before the frontend runs;
// colour is there unless NO_COLOR; errors are painted.
func TestOutputOnATerminal(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.profileFor("kqtest", e.sshConfig, profile{
		"kernel": slowKernel, "frontend": []string{"/bin/sh", "-c", "echo FRONTEND-RAN; sleep 0.3", "{connection_file}"}})})

	r := e.startPTY([]string{"p"}, "TERM=xterm")
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit %d:\n%q", code, r.output())
	}
	out := r.drained("FRONTEND-RAN")
	if !strings.Contains(out, "\r\x1b[2K") || !strings.Contains(out, "kq: starting the kernel on kqtest") {
		t.Errorf("no live status line while the kernel started:\n%q", out)
	}
	if strings.Count(out, "waiting for its connection file (") < 5 {
		t.Errorf("the status line's clock was not redrawn while kq waited 1.5 s:\n%q", out)
	}
	if !strings.Contains(out, "\x1b[2m") {
		t.Errorf("no colour on a terminal:\n%q", out)
	}
	front := strings.Index(out, "FRONTEND-RAN")
	if front < 0 || strings.Contains(out[front:], "\x1b[2m") || strings.Contains(out[front:], "\r\x1b[2K") {
		t.Errorf("the status line was drawn while the frontend ran:\n%q", out)
	}

	r = e.startPTY([]string{"p"}, "TERM=xterm", "NO_COLOR=1")
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit %d:\n%q", code, r.output())
	}
	if out := r.output(); strings.Contains(out, "\x1b[2m") || strings.Contains(out, "\x1b[3") ||
		!strings.Contains(out, "kq: starting the kernel") {
		t.Errorf("NO_COLOR: want the status line without colour:\n%q", out)
	}

	r = e.startPTY([]string{"nope"}, "TERM=xterm")
	r.wait(t)
	if out := r.drained("unknown profile"); !strings.Contains(out, "\x1b[31;1mkq: error:\x1b[0m config") {
		t.Errorf("the error line is not painted on a terminal:\n%q", out)
	}
	r = e.startPTY([]string{"nope"}, "TERM=xterm", "NO_COLOR=1")
	r.wait(t)
	if out := r.drained("unknown profile"); strings.Contains(out, "\x1b") || !strings.Contains(out, "kq: error: config") {
		t.Errorf("NO_COLOR: escape codes in %q", out)
	}
	e.assertClean(nil, nil)
}

// TestOutputNotATerminal: into a pipe or a log, kq writes plain step lines
// with their times and never an escape code; -q leaves only errors.
func TestOutputNotATerminal(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.profileFor("kqtest", e.sshConfig, profile{"kernel": slowKernel})})
	r, code := e.runToEnd([]string{"p"}, "TERM=xterm")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, r.stderr)
	}
	errText := r.stderr.String()
	if strings.Contains(errText, "\x1b") || strings.Contains(errText, "\r") {
		t.Errorf("escape codes in stderr that is not a terminal:\n%q", errText)
	}
	for _, step := range []string{"kq: connected to ", "kq: kernel started on kqtest in ", "kq: forwarded 5 ports in ", "kq: ready in "} {
		if !strings.Contains(errText, step) {
			t.Errorf("no step line %q:\n%s", step, errText)
		}
	}
	r, code = e.runToEnd([]string{"-q", "p"})
	if code != 0 || r.stderr.String() != "" {
		t.Errorf("-q: exit %d, stderr %q; want nothing but errors", code, r.stderr)
	}
	r, code = e.runToEnd([]string{"-v", "p"})
	for _, detail := range []string{"kq: host kqtest", "kq: remote: exec /bin/sh -s on kqtest", "kq: frontend: "} {
		if !strings.Contains(r.stderr.String(), detail) {
			t.Errorf("-v: no %q (exit %d):\n%s", detail, code, r.stderr)
		}
	}
	e.assertClean(nil, nil)
}

// drained is the terminal's output once it holds want (the reader may lag
// behind the process's exit), or after two seconds.
func (r *ptyRun) drained(want string) string {
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(r.output(), want) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return r.output()
}
