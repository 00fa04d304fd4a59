package launcher

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// KernelSpec is what the remote side needs to start one kernel.
type KernelSpec struct {
	// Command is the user's kernel command; "-f FILE" is appended.
	Command string
	// RuntimeDir is where the connection file goes; "" asks the server.
	RuntimeDir string
	// Workdir is the kernel's working directory; "" is the login directory.
	Workdir string
	// Env is exported to the kernel.
	Env map[string]string
	// ID names the remote files kernel-kq-<ID>.json and .log.
	ID string
	// IP, when set, is passed as --ip so the kernel listens there (a
	// compute node's address) instead of its default 127.0.0.1.
	IP string
}

// CommandLine is the kernel command as the remote shell runs it, with the
// connection file path in "$1".
func (k KernelSpec) CommandLine() string {
	cmd := k.Command
	if k.IP != "" {
		cmd += " --ip=" + shQuote(k.IP)
	}
	return cmd + ` -f "$1"`
}

// remoteKernel is a kernel started over one SSH session. The session runs
// a small POSIX sh supervisor that starts the kernel in its own process
// group, waits for the connection file, prints it, and then waits for a
// command on stdin. Everything happens in one round trip, and the key only
// ever travels inside the session's stdout, never on a command line.
type remoteKernel struct {
	sess   *ssh.Session
	stdin  io.WriteCloser
	lines  chan string // supervisor stdout, line by line; closed at EOF
	stderr *limitedBuffer
	done   chan struct{} // closed when the session has exited
	// Path is the connection file on the remote host.
	Path string
	// PID is the kernel's process (and process group) id on the host.
	PID int
	// JSON is the connection file's content.
	JSON []byte

	mu     sync.Mutex
	closed bool
}

// Protocol lines printed by the supervisor script.
const (
	tagFile    = "KQ-FILE "
	tagPID     = "KQ-PID "
	tagError   = "KQ-ERROR "
	tagLog     = "KQ-LOG "
	tagBegin   = "KQ-JSON-BEGIN"
	tagEnd     = "KQ-JSON-END"
	tagFailed  = "KQ-FAILED"
	tagStopped = "KQ-STOPPED"
	tagDetach  = "KQ-DETACHED"
)

// shQuote quotes s for a POSIX shell.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shPath quotes a path but lets a leading ~ expand to $HOME remotely.
func shPath(p string) string {
	if p == "~" {
		return `"$HOME"`
	}
	if strings.HasPrefix(p, "~/") {
		return `"$HOME"/` + shQuote(p[2:])
	}
	return shQuote(p)
}

// supervisorScript is the remote program. It is plain POSIX sh so it runs
// on any Unix host; it polls with "sleep 0.1", which GNU, busybox and BSD
// sleep accept. Every loop is bounded.
func supervisorScript(k KernelSpec) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("umask 077")
	if k.RuntimeDir != "" {
		w("rt=%s", shPath(k.RuntimeDir))
	} else {
		w(`rt=$(jupyter --runtime-dir 2>/dev/null) || rt=`)
		w(`[ -n "$rt" ] || rt="$HOME/.local/share/jupyter/runtime"`)
	}
	w(`mkdir -p "$rt" || { echo "%scannot create runtime dir $rt"; exit 1; }`, tagError)
	w(`f="$rt/kernel-kq-%s.json"; log="$rt/kernel-kq-%s.log"`, k.ID, k.ID)
	w(`echo "%s$f"`, tagFile)
	if k.Workdir != "" {
		w(`cd %s || { echo "%scannot cd to workdir %s"; exit 1; }`, shPath(k.Workdir), tagError, strings.ReplaceAll(k.Workdir, `"`, ``))
	}
	for _, key := range slices.Sorted(maps.Keys(k.Env)) {
		w("export %s=%s", key, shQuote(k.Env[key]))
	}
	// The kernel is started from a subshell so that it is not our child:
	// init reaps it, and "kill -0" then tells the truth about it being
	// alive. setsid gives it its own process group to signal as a whole.
	w(`ss=; command -v setsid >/dev/null 2>&1 && ss=setsid`)
	w(`pid=$( ( $ss sh -c %s sh "$f" </dev/null >"$log" 2>&1 & echo $! ) )`, shQuote(k.CommandLine()))
	w(`echo "%s$pid"`, tagPID)
	w(`alive() { kill -0 "$pid" 2>/dev/null; }`)
	w(`waitgone() { j=0; while alive && [ $j -lt $1 ]; do sleep 0.1; j=$((j+1)); done; }`)
	// kill: TERM to the process group, KILL if it is still there 3s later.
	w(`kill_kernel() {`)
	w(`  if alive; then kill -TERM -"$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; waitgone 30; fi`)
	w(`  if alive; then kill -KILL -"$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null; waitgone 30; fi`)
	w(`  rm -f "$f" "$log"`)
	w(`}`)
	// The waiter reports the connection file, or why there is none, while
	// the supervisor itself listens on stdin from the start: whatever phase
	// kq is in when it goes away, EOF on stdin stops the kernel.
	w(`(`)
	w(`  i=0`)
	w(`  while :; do`)
	w(`    if [ -s "$f" ] && tail -c 2 "$f" | grep -q '}'; then echo %s; cat "$f"; echo; echo %s; exit 0; fi`, tagBegin, tagEnd)
	// A kernel started on another machine (ssh node, srun) may write its
	// file where this host cannot see it; its command may print the JSON
	// on standard output instead, from a "{" line to a "}" line.
	w(`    if grep -q '"shell_port"' "$log" 2>/dev/null && sed -n '/^{/,/^}/p' "$log" | grep -q '^}'; then`)
	w(`      echo "%sstandard output of the kernel command"; echo %s; sed -n '/^{/,/^}/p' "$log"; echo %s; exit 0; fi`, tagFile, tagBegin, tagEnd)
	w(`    if ! alive; then echo "%skernel command exited before writing $f"; tail -n 20 "$log" | sed 's/^/%s/'; echo %s; exit 1; fi`, tagError, tagLog, tagFailed)
	w(`    i=$((i+1)); if [ $i -gt 1200 ]; then echo "%sno connection file after 120s"; echo %s; exit 1; fi`, tagError, tagFailed)
	w(`    sleep 0.1`)
	w(`  done`)
	w(`) &`)
	w(`waiter=$!`)
	w(`while read -r cmd; do`)
	w(`  case "$cmd" in`)
	// stop: the kernel was asked to shut down; give it 3s before signals.
	w(`    stop) kill "$waiter" 2>/dev/null; waitgone 30; kill_kernel; echo %s; exit 0;;`, tagStopped)
	w(`    kill) kill "$waiter" 2>/dev/null; kill_kernel; echo %s; exit 0;;`, tagStopped)
	w(`    detach) kill "$waiter" 2>/dev/null; echo %s; exit 0;;`, tagDetach)
	w(`  esac`)
	w(`done`)
	// stdin closed without a command: kq is gone, and so is the kernel's user.
	w(`kill "$waiter" 2>/dev/null; kill_kernel`)
	return b.String()
}

// startKernel runs the supervisor on client and waits until the kernel has
// written its connection file. On error nothing is left running remotely.
func startKernel(ctx context.Context, client *ssh.Client, k KernelSpec) (*remoteKernel, error) {
	sess, err := client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open session: %w", err)
	}
	rk := &remoteKernel{sess: sess, lines: make(chan string, 64), stderr: &limitedBuffer{max: 8 << 10}, done: make(chan struct{})}
	rk.stdin, err = sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("session stdin: %w", err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("session stdout: %w", err)
	}
	sess.Stderr = rk.stderr
	if err := sess.Start("exec /bin/sh -c " + shQuote(supervisorScript(k))); err != nil {
		sess.Close()
		return nil, fmt.Errorf("start remote command: %w", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			rk.lines <- sc.Text()
		}
		close(rk.lines)
	}()
	go func() {
		_ = sess.Wait()
		close(rk.done)
	}()
	if err := rk.readStartup(ctx); err != nil {
		if rk.PID != 0 {
			if kerr := rk.kill(); kerr != nil {
				err = errors.Join(err, fmt.Errorf("stop the half-started kernel: %w", kerr))
			}
		}
		rk.close()
		return nil, err
	}
	return rk, nil
}

func (rk *remoteKernel) readStartup(ctx context.Context) error {
	var failure []string
	var logLines []string
	var json bytes.Buffer
	inJSON := false
	for {
		select {
		case <-ctx.Done():
			return withKind(ErrInterrupted, "", fmt.Errorf("start kernel: %w", ctx.Err()))
		case line, ok := <-rk.lines:
			if !ok || line == tagFailed {
				msg := strings.Join(failure, "; ")
				if msg == "" {
					msg = "remote command ended unexpectedly"
					if s := strings.TrimSpace(rk.stderr.String()); s != "" {
						msg += ": " + lastLine(s)
					}
				}
				if len(logLines) > 0 {
					msg += ": " + kernelLogSummary(logLines)
				}
				return withKind(ErrKernel, kernelHint(logLines), errors.New(msg))
			}
			switch {
			case inJSON && line == tagEnd:
				rk.JSON = bytes.TrimSpace(json.Bytes())
				return nil
			case inJSON:
				json.WriteString(line)
				json.WriteByte('\n')
			case line == tagBegin:
				inJSON = true
			case strings.HasPrefix(line, tagFile):
				rk.Path = strings.TrimPrefix(line, tagFile)
			case strings.HasPrefix(line, tagPID):
				rk.PID, _ = strconv.Atoi(strings.TrimPrefix(line, tagPID))
			case strings.HasPrefix(line, tagError):
				failure = append(failure, strings.TrimPrefix(line, tagError))
			case strings.HasPrefix(line, tagLog):
				logLines = append(logLines, strings.TrimPrefix(line, tagLog))
			}
		}
	}
}

// kernelLogSummary picks the most telling line of the kernel's output: the
// last one, which for a Python failure is the exception.
func kernelLogSummary(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if s := strings.TrimSpace(lines[i]); s != "" {
			return s
		}
	}
	return ""
}

func kernelHint(lines []string) string {
	all := strings.Join(lines, "\n")
	switch {
	case strings.Contains(all, "No module named") && strings.Contains(all, "ipykernel"):
		return "install ipykernel on the server (pip install ipykernel, or apt install python3-ipykernel), or point kernel: at a python that has it"
	case strings.Contains(all, "not found"):
		return "the kernel command was not found on the server's PATH; use an absolute path in kernel:"
	}
	return "run the profile's kernel command on the server by hand to see why it fails"
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// command sends one supervisor command and waits for its answer, the
// session's end, or the timeout.
func (rk *remoteKernel) command(cmd, want string, timeout time.Duration) error {
	if _, err := io.WriteString(rk.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("send %s to remote supervisor: %w", cmd, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-rk.lines:
			if !ok {
				return fmt.Errorf("%s: remote supervisor ended without confirming", cmd)
			}
			if line == want {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("%s: no answer from remote supervisor in %s", cmd, timeout)
		}
	}
}

// stop ends a kernel that was sent shutdown_request: a grace period for it
// to exit by itself, then TERM and KILL to its process group; its remote
// files are removed.
func (rk *remoteKernel) stop() error {
	defer rk.close()
	return rk.command("stop", tagStopped, 20*time.Second)
}

// kill is stop without the grace period, for a kernel that was never asked
// to shut down (it failed to start, or cannot be reached).
func (rk *remoteKernel) kill() error {
	defer rk.close()
	return rk.command("kill", tagStopped, 20*time.Second)
}

// detach leaves the kernel running and ends the supervisor.
func (rk *remoteKernel) detach() error {
	defer rk.close()
	return rk.command("detach", tagDetach, 10*time.Second)
}

func (rk *remoteKernel) close() {
	rk.mu.Lock()
	defer rk.mu.Unlock()
	if rk.closed {
		return
	}
	rk.closed = true
	rk.stdin.Close()
	select {
	case <-rk.done:
	case <-time.After(5 * time.Second):
	}
	rk.sess.Close()
	go func() { // drain so the scanner goroutine can finish
		for range rk.lines {
		}
	}()
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.buf.Len(); room > 0 {
		if len(p) > room {
			l.buf.Write(p[:room])
		} else {
			l.buf.Write(p)
		}
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
