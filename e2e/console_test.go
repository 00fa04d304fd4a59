package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// tmuxSession is one test's tmux server (on its own socket) with one
// pane running a command, read and typed into as a person would.
type tmuxSession struct {
	t         *testing.T
	socket    string
	artifacts string
	snaps     int
}

// startTmux starts a tmux server on a private socket whose one pane runs
// the shell command; env is the environment of that server and pane.
func startTmux(t *testing.T, dir, artifacts, command string, env []string) *tmuxSession {
	t.Helper()
	s := &tmuxSession{t: t, socket: filepath.Join(dir, "tmux.sock"), artifacts: artifacts}
	cmd := exec.CommandContext(contextFor(t, 20*time.Second), "/usr/bin/tmux", "-S", s.socket, "-f", "/dev/null",
		"new-session", "-d", "-s", "kq", "-x", "160", "-y", "50", command)
	cmd.Env = append(env, "TERM=xterm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	pid, err := strconv.Atoi(s.run("display-message", "-p", "#{pid}"))
	if err != nil {
		t.Fatalf("tmux server pid: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.snapshot("at-failure")
		}
		_, _ = s.tmux("kill-server")
		if sshdtest.ProcessAlive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return s
}

func (s *tmuxSession) tmux(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/tmux", append([]string{"-S", s.socket}, args...)...).CombinedOutput()
	return strings.TrimRight(string(out), "\n"), err
}

func (s *tmuxSession) run(args ...string) string {
	s.t.Helper()
	out, err := s.tmux(args...)
	if err != nil {
		s.t.Fatalf("tmux %q: %v: %s", args, err, out)
	}
	return out
}

// screen is the pane's text, its history included.
func (s *tmuxSession) screen() string {
	out, _ := s.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "kq")
	return out
}

// snapshot keeps the pane's text as NN-name.txt in the artefacts dir.
func (s *tmuxSession) snapshot(name string) {
	s.snaps++
	path := filepath.Join(s.artifacts, fmt.Sprintf("%02d-%s.txt", s.snaps, name))
	if err := os.WriteFile(path, []byte(s.screen()), 0o644); err == nil {
		s.t.Logf("terminal snapshot %s", path)
	}
}

// send types keys into the pane (tmux send-keys syntax: "Enter", "C-c").
func (s *tmuxSession) send(keys ...string) {
	s.t.Helper()
	s.run(append([]string{"send-keys", "-t", "kq"}, keys...)...)
}

// typeLine types text literally and presses Enter.
func (s *tmuxSession) typeLine(text string) {
	s.t.Helper()
	s.run("send-keys", "-t", "kq", "-l", text)
	s.send("Enter")
}

// waitScreen waits until the pane shows want n times in all, and returns
// the screen.
func (s *tmuxSession) waitScreen(want string, n int, timeout time.Duration) string {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		scr := s.screen()
		if strings.Count(scr, want) >= n {
			return scr
		}
		if time.Now().After(deadline) {
			s.snapshot("timeout")
			s.t.Fatalf("the terminal never showed %q (%d times) within %s:\n%s", want, n, timeout, scr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFlushing waits until the pane shows want, pressing Enter on an
// empty line every few seconds meanwhile: after a KeyboardInterrupt has
// escaped jupyter console 6.4's interact(), it takes the interrupted
// cell's idle status for the next cell's and shows that cell's output
// only when it next reads IOPub, which an empty Enter makes it do.
func (s *tmuxSession) waitFlushing(want string, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	next := time.Now().Add(3 * time.Second)
	for !strings.Contains(s.screen(), want) {
		if time.Now().After(deadline) {
			s.snapshot("timeout")
			s.t.Fatalf("the terminal never showed %q within %s:\n%s", want, timeout, s.screen())
		}
		if time.Now().After(next) {
			s.t.Logf("%q not shown yet; pressing Enter to make jupyter console show pending output", want)
			s.send("Enter")
			next = time.Now().Add(3 * time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestConsole: `kq p` with `jupyter console --kernel {kernel}` as its
// frontend, in a tmux pane, typed into as a person would: a cell sets a
// variable; Ctrl-C at the terminal stops a running time.sleep(60) within
// seconds and the session goes on with its state; `exit` ends the console
// and kq exits 0 with nothing left on either side.
func TestConsole(t *testing.T) {
	c := startConsole(t, []string{"/usr/bin/jupyter", "console", "--kernel", "{kernel}"}, 1)
	c.setVariable()
	c.interruptSleep()
	c.exit()
	c.e.assertSessionGone(t, c.first)
}

// TestConsoleExisting: the same with `jupyter console --existing
// {connection_file}`, which does not own the kernel and cannot interrupt
// it: the Ctrl-C that reaches kq at the same terminal interrupts the
// remote kernel kq holds, and the session goes on with its state; Ctrl-D
// ends the console, and kq then stops the kernel and exits 0.
func TestConsoleExisting(t *testing.T) {
	c := startConsole(t, []string{"/usr/bin/jupyter", "console", "--existing", "{connection_file}"}, 0)
	c.setVariable()
	c.interruptSleep()
	c.exit()
	c.e.assertSessionGone(t, c.first)
}

// consoleRun is one TestConsole session: kq running jupyter console in a
// tmux pane, the file its shell writes kq's exit code to, and the remote
// kernel it started with, which each phase compares against.
type consoleRun struct {
	t         *testing.T
	e         *env
	s         *tmuxSession
	exitFile  string
	first     []int
	kqKernels int // kq kernel processes while it runs: 1 when the console owns its kernel
}

// startConsole runs `kq p` with jupyter console as its frontend in a tmux
// pane; the pane's shell outlives kq so that its exit code and last
// screen can still be read.
func startConsole(t *testing.T, frontend []string, kqKernels int) *consoleRun {
	e := newEnv(t, sshdtest.Options{})
	p := e.baseProfile()
	p["frontend"] = frontend
	e.writeConfig(map[string]profile{"p": p})
	artifacts := artifactDir(t)
	t.Logf("artefacts in %s", artifacts)
	exitFile := filepath.Join(e.dir, "kq-exit")
	command := fmt.Sprintf("%s --config %s p; echo $? > %s; sleep 600", kqBin, e.configFile, exitFile)
	env := append(cleanEnv(), "JUPYTER_RUNTIME_DIR="+e.localRT)
	s := startTmux(t, e.dir, artifacts, command, env)
	return &consoleRun{t: t, e: e, s: s, exitFile: exitFile, kqKernels: kqKernels}
}

// setVariable waits for the first prompt and one remote kernel, then sets
// the variable the interrupt must keep, checking that the cell ran in
// that kernel.
func (c *consoleRun) setVariable() {
	s := c.s
	s.waitScreen("In [1]:", 1, 90*time.Second)
	c.first = c.e.waitRemoteKernels(c.t, 1, 30*time.Second)
	s.snapshot("started")
	s.typeLine("import os; kq_var = 42; print('set', kq_var, os.getpid())")
	s.waitScreen(fmt.Sprintf("set 42 %d", c.first[0]), 1, 60*time.Second)
	s.snapshot("variable-set")
}

// interruptSleep presses Ctrl-C at the terminal during a time.sleep(60):
// the sleep must end within seconds while the same remote kernel, served
// by one kq kernel, keeps the variable.
func (c *consoleRun) interruptSleep() {
	t, e, s, first := c.t, c.e, c.s, c.first
	s.typeLine("import time; print('sleeping'); time.sleep(60); print('slept')")
	s.waitScreen("\nsleeping", 1, 30*time.Second)
	time.Sleep(time.Second)
	waitFor(t, 10*time.Second, "the kernel to sleep", func() bool { return inSleep(first[0]) })
	start := time.Now()
	s.send("C-c")
	waitFor(t, 15*time.Second, "time.sleep to end after Ctrl-C", func() bool { return !inSleep(first[0]) })
	t.Logf("time.sleep ended %s after Ctrl-C", time.Since(start).Round(time.Millisecond))
	s.waitScreen("In [3]:", 1, 30*time.Second)
	s.snapshot("interrupted")
	// jupyter console shows "In [3]:" at Ctrl-C, before the kernel has
	// answered the interrupted cell; ipykernel (stop_on_error) aborts the
	// requests it finds queued as it sends that error reply, so a line
	// typed within milliseconds of the interrupt comes back "aborted"
	// and prints nothing. A person takes longer than this to type it.
	time.Sleep(time.Second)
	s.typeLine("print('still', kq_var, os.getpid())")
	s.waitFlushing(fmt.Sprintf("still 42 %d", first[0]), 30*time.Second)
	s.waitFlushing("KeyboardInterrupt: ", 10*time.Second) // the kernel's traceback of the cell
	s.snapshot("state-kept")
	if strings.Contains(s.screen(), "\nslept") {
		t.Errorf("the sleeping cell ran to its end")
	}
	if now := e.waitRemoteKernels(t, 1, 5*time.Second); now[0] != first[0] {
		t.Errorf("Ctrl-C replaced the remote kernel %d by %d", first[0], now[0])
	}
	if n := len(e.kqKernelProcs()); n != c.kqKernels {
		t.Errorf("%d kq kernel processes, want %d", n, c.kqKernels)
	}
}

// exit types `exit` (with the Ctrl-D and "y" a person falls back on when
// jupyter console misses it) and checks that kq then exits 0.
func (c *consoleRun) exit() {
	t, s := c.t, c.s
	if c.kqKernels == 0 {
		// An --existing console leaves as a person leaves it: Ctrl-D and
		// "y", which keeps the kernel (`exit` would shut it down, and kq
		// would rightly report the kernel's end if the console then missed
		// its own ask_exit, as 6.4 does after an escaped Ctrl-C).
		s.send("C-d")
	} else {
		s.typeLine("exit")
	}
	if c.kqKernels > 0 && !waitExists(c.exitFile, 10*time.Second) {
		// jupyter console 6.4's interact() lets the terminal's KeyboardInterrupt
		// escape, so the interrupted cell's execute_reply arrives after it
		// gave up on it; it takes that reply for the next is_complete_reply
		// ("did not respond properly to an is_complete_request") and can
		// miss the ask_exit of `exit`. A person would then press Ctrl-D.
		t.Logf("jupyter console did not end on exit; pressing Ctrl-D:\n%s", s.screen())
		s.snapshot("exit-missed")
		s.send("C-d")
	}
	deadline := time.Now().Add(60 * time.Second)
	for !waitExists(c.exitFile, 200*time.Millisecond) {
		if scr := s.screen(); strings.HasSuffix(strings.TrimSpace(scr), "([y]/n)?") {
			s.typeLine("y")
		}
		if time.Now().After(deadline) {
			s.snapshot("no-exit")
			t.Fatalf("kq did not exit within 60s of exit:\n%s", s.screen())
		}
	}
	s.snapshot("exited")
	b, err := os.ReadFile(c.exitFile)
	must(t, err)
	if code := strings.TrimSpace(string(b)); code != "0" {
		t.Errorf("kq exit %s after exit in jupyter console:\n%s", code, s.screen())
	}
}

// waitExists waits up to timeout for path to exist.
func waitExists(path string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
