package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// xserver is an Xvfb display of one test, with xdotool and ImageMagick's
// import run on it.
type xserver struct {
	*helperProc
	t         *testing.T
	display   string
	artifacts string
	shots     []string
}

// startXvfb starts Xvfb on a display number it picks itself (-displayfd),
// with no TCP listener.
func startXvfb(t *testing.T, artifacts string) *xserver {
	t.Helper()
	r, w, err := os.Pipe()
	must(t, err)
	// Xvfb writes the number, then a newline: a closed pipe kills it.
	t.Cleanup(func() { r.Close() })
	cmd := exec.Command("/usr/bin/Xvfb", "-displayfd", "3", "-screen", "0", "1280x1024x24", "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	x := &xserver{helperProc: startHelper(t, "xvfb", artifacts, cmd), t: t, artifacts: artifacts}
	w.Close()
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		got <- strings.TrimSpace(line)
	}()
	select {
	case d := <-got:
		if _, err := strconv.Atoi(d); err != nil {
			t.Fatalf("Xvfb did not report a display (%q):\n%s", d, x.logText())
		}
		x.display = ":" + d
	case <-time.After(30 * time.Second):
		t.Fatalf("Xvfb did not start within 30s:\n%s", x.logText())
	}
	t.Logf("Xvfb on %s (pid %d)", x.display, cmd.Process.Pid)
	return x
}

// env is the environment of a program on this display.
func (x *xserver) env() []string {
	xdg := filepath.Join(x.artifacts, "xdg-runtime")
	_ = os.MkdirAll(xdg, 0o700)
	return []string{"DISPLAY=" + x.display, "XDG_RUNTIME_DIR=" + xdg, "QT_QPA_PLATFORM=xcb"}
}

// xdotool runs xdotool on the display, bounded, and returns its output.
func (x *xserver) xdotool(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/xdotool", args...)
	cmd.Env = append(cleanEnv(), x.env()...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// do runs xdotool and fails the test if it fails.
func (x *xserver) do(args ...string) string {
	x.t.Helper()
	out, err := x.xdotool(args...)
	if err != nil {
		x.t.Fatalf("xdotool %q: %v: %s", args, err, out)
	}
	return out
}

// typeLine types text as a person would and presses Return.
func (x *xserver) typeLine(text string) {
	x.t.Helper()
	x.do("type", "--delay", "15", text)
	x.do("key", "Return")
}

// windows lists the visible windows whose name matches the regexp.
func (x *xserver) windows(name string) []string {
	out, _ := x.xdotool("search", "--onlyvisible", "--name", name)
	if out == "" {
		return nil
	}
	return strings.Fields(out)
}

// waitWindows waits until exactly n visible windows match name.
func (x *xserver) waitWindows(name string, n int, timeout time.Duration) []string {
	x.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		w := x.windows(name)
		if len(w) == n {
			return w
		}
		if time.Now().After(deadline) {
			x.screenshot("timeout-windows")
			x.t.Fatalf("want %d visible windows named %q within %s, have %v", n, name, timeout, w)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// screenshot saves the whole screen as NN-name.png in the artefacts dir.
func (x *xserver) screenshot(name string) {
	x.t.Helper()
	path := filepath.Join(x.artifacts, fmt.Sprintf("%02d-%s.png", len(x.shots)+1, name))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/import", "-window", "root", path)
	cmd.Env = append(cleanEnv(), x.env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		x.t.Errorf("screenshot %s: %v: %s", path, err, out)
		return
	}
	x.shots = append(x.shots, path)
	x.t.Logf("screenshot %s", path)
}

// waitFile waits until path holds content with the prefix and returns it.
// Content is never empty: a cell's open() creates the file empty, and its
// one write comes when the file object is closed.
func waitFile(t *testing.T, path, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(path)
		if err == nil && len(b) > 0 && strings.HasPrefix(string(b), prefix) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never held %q within %s (has %q, %v)", path, prefix, timeout, b, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const qtTitle = "Jupyter QtConsole"

// TestQtconsole: `kq p` with the default frontend (qtconsole owning its
// kernel through kq's transient kernelspec) under Xvfb, driven with
// xdotool as a person would: a cell sets a variable; Ctrl+C stops a
// running time.sleep(60) and the variable survives; Ctrl+. (and Yes)
// restarts into a fresh namespace with exactly one remote kernel; Ctrl+Q
// (and Quit) ends qtconsole, and kq exits 0 with nothing left.
func TestQtconsole(t *testing.T) {
	q := startQtconsole(t)
	q.setVariable()
	q.interruptSleep()
	second := q.restart()
	q.quit(second)
}

// qtconsoleRun is one TestQtconsole session: kq running qtconsole on an
// Xvfb display, its window, and the remote kernel it started with, which
// each phase compares against.
type qtconsoleRun struct {
	t     *testing.T
	e     *env
	x     *xserver
	r     *run
	win   string
	first []int
}

// startQtconsole runs `kq p` with the default frontend on a fresh display
// and waits, as a person would, for the window, one remote kernel, one kq
// kernel and the first prompt.
func startQtconsole(t *testing.T) *qtconsoleRun {
	e := newEnv(t, sshdtest.Options{})
	p := e.baseProfile()
	delete(p, "frontend") // the default: jupyter qtconsole --kernel {kernel}
	e.writeConfig(map[string]profile{"p": p})
	artifacts := artifactDir(t)
	t.Logf("artefacts in %s", artifacts)
	x := startXvfb(t, artifacts)
	r := e.start([]string{"p"}, x.env()...)
	t.Cleanup(func() {
		if t.Failed() {
			x.screenshot("at-failure")
			t.Logf("kq stderr:\n%s\nkq stdout:\n%s", r.stderr, r.stdout)
		}
	})
	q := &qtconsoleRun{t: t, e: e, x: x, r: r}

	q.win = x.waitWindows(qtTitle, 1, 90*time.Second)[0]
	q.first = e.waitRemoteKernels(t, 1, 90*time.Second)
	waitFor(t, 30*time.Second, "kq kernel", func() bool { return len(e.kqKernelProcs()) == 1 })
	time.Sleep(3 * time.Second) // the banner and first prompt
	x.screenshot("started")
	return q
}

// file is where a cell writes what it saw: qtconsole's output is pixels,
// so the cells report through files in the test's dir instead.
func (q *qtconsoleRun) file(name string) string { return filepath.Join(q.e.dir, name) }

// setVariable types the first cell, which sets the variable the interrupt
// must keep, and checks that it ran in the remote kernel.
func (q *qtconsoleRun) setVariable() {
	t, x := q.t, q.x
	// Keyboard focus follows the pointer on a bare X server.
	x.do("mousemove", "--window", q.win, "300", "300", "click", "1")
	x.typeLine(fmt.Sprintf("import os, time; kq_var = 42; open(%q, 'w').write(str(os.getpid()))", q.file("cell1")))
	if got := waitFile(t, q.file("cell1"), "", 60*time.Second); got != strconv.Itoa(q.first[0]) {
		t.Fatalf("the cell ran in pid %s, the remote kernel is %d", got, q.first[0])
	}
	x.screenshot("variable-set")
}

// interruptSleep presses Ctrl+C during a time.sleep(60): the sleep must
// end within seconds while the same remote kernel keeps the variable.
func (q *qtconsoleRun) interruptSleep() {
	t, x, first := q.t, q.x, q.first
	x.typeLine(fmt.Sprintf("open(%q, 'w').write('started'); time.sleep(60); open(%[1]q, 'w').write('slept')", q.file("cell2")))
	waitFile(t, q.file("cell2"), "started", 30*time.Second)
	waitFor(t, 10*time.Second, "the kernel to sleep", func() bool { return inSleep(first[0]) })
	time.Sleep(time.Second)
	x.screenshot("sleeping")
	start := time.Now()
	x.do("key", "ctrl+c")
	// Until its cell ends qtconsole shows no prompt and drops what is
	// typed; a person waits for the traceback and the next prompt.
	waitFor(t, 15*time.Second, "time.sleep to end after Ctrl+C", func() bool { return !inSleep(first[0]) })
	t.Logf("time.sleep ended %s after Ctrl+C", time.Since(start).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	x.typeLine(fmt.Sprintf("open(%q, 'w').write('after %%d' %% kq_var)", q.file("cell3")))
	if got := waitFile(t, q.file("cell3"), "", 30*time.Second); got != "after 42" {
		t.Errorf("after Ctrl+C the variable is %q", got)
	}
	if got := waitFile(t, q.file("cell2"), "", time.Second); got != "started" {
		t.Errorf("the sleeping cell was not interrupted: %q", got)
	}
	time.Sleep(500 * time.Millisecond)
	x.screenshot("interrupted")
	if now := q.e.waitRemoteKernels(t, 1, 5*time.Second); now[0] != first[0] {
		t.Errorf("Ctrl+C replaced the remote kernel %d by %d", first[0], now[0])
	}
}

// restart answers Yes to Ctrl+. and checks that a new remote kernel, and
// only it, runs the next cell in a fresh namespace; it returns that
// kernel, which must be gone at the end too.
func (q *qtconsoleRun) restart() []int {
	t, x := q.t, q.x
	x.do("key", "ctrl+period")
	x.waitWindows("Restart kernel", 1, 20*time.Second)
	x.screenshot("restart-dialog")
	x.do("key", "Return") // Yes is the default button
	second := q.e.waitRemoteKernels(t, 1, 90*time.Second, q.first...)
	x.typeLine(fmt.Sprintf("import os; open(%q, 'w').write('%%d %%r' %% (os.getpid(), globals().get('kq_var')))", q.file("cell4")))
	if got, want := waitFile(t, q.file("cell4"), "", 60*time.Second), fmt.Sprintf("%d None", second[0]); got != want {
		t.Errorf("after the restart the cell saw %q, want %q (a fresh namespace in the new kernel)", got, want)
	}
	time.Sleep(500 * time.Millisecond)
	x.screenshot("restarted")
	q.e.checkOneKernelAfterRestart(t, second, 5*time.Second)
	return second
}

// quit quits qtconsole and checks that kq exits 0 and leaves nothing of
// either kernel behind.
func (q *qtconsoleRun) quit(second []int) {
	t := q.t
	q.x.qtQuit(q.win)
	if code := q.r.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("kq exit %d after quitting qtconsole\nstderr:\n%s", code, q.r.stderr)
	}
	q.e.assertSessionGone(t, append(q.first, second...))
	t.Logf("screenshots: %s", strings.Join(q.x.shots, " "))
}

// qtQuit quits qtconsole as a person would: Ctrl+Q, or File > Quit when
// the key did not open the confirmation, then Return on its default
// button ("Quit": close the console and stop its kernel).
func (x *xserver) qtQuit(win string) {
	x.t.Helper()
	// A click makes the window Qt's active one again after the restart
	// dialog, so that its Ctrl+Q shortcut applies.
	x.do("mousemove", "--window", win, "300", "300", "click", "1")
	x.do("key", "ctrl+q")
	deadline := time.Now().Add(5 * time.Second)
	for len(x.windows(qtTitle)) < 2 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if len(x.windows(qtTitle)) < 2 {
		x.t.Logf("Ctrl+Q opened no confirmation; using File > Quit")
		x.do("mousemove", "--window", win, "20", "10", "click", "1")
		time.Sleep(time.Second)
		x.do("key", "q")
	}
	x.waitWindows(qtTitle, 2, 20*time.Second) // the window and its question
	x.screenshot("quit-dialog")
	x.do("key", "Return")
}

// inSleep reports whether pid's main thread waits in a sleep (Python's
// time.sleep is clock_nanosleep), as the kernel does while its cell runs
// time.sleep; an idle kernel waits in poll instead.
func inSleep(pid int) bool {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
	return strings.Contains(string(b), "nanosleep")
}
