package launcher

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

// remoteLib is kq's remote program; see the comments in remote.sh.
//
//go:embed remote.sh
var remoteLib string

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
	// ID names the remote files kernel-kq-<ID>.*.
	ID string
	// IP, when set, is passed as --ip so the kernel listens there (a
	// compute node's address) instead of its default 127.0.0.1.
	IP string
	// Linger is how long the kernel outlives the last kq session.
	Linger time.Duration
	// Keep leaves the kernel up with no kq session at all, until kq stop.
	Keep bool
}

// newKernelSpec is the spec a profile asks for. A literal kernel_ip is
// passed to the kernel as --ip; "auto" leaves the address to the kernel.
func newKernelSpec(p profiles.Profile, id string) KernelSpec {
	k := KernelSpec{Command: p.Kernel, RuntimeDir: p.RuntimeDir, Workdir: p.Workdir, Env: p.Env,
		ID: id, Linger: p.Linger, Keep: p.Keep}
	if p.KernelIP != "auto" {
		k.IP = p.KernelIP
	}
	return k
}

// forwardHost is where forwards go, as seen from the host: a literal
// kernelIP, the connection file's ip under "auto", else the host's
// loopback (also for a kernel bound to every address).
func forwardHost(kernelIP, fileIP string) string {
	switch {
	case kernelIP != "" && kernelIP != "auto":
		return kernelIP
	case kernelIP == "auto" && fileIP != "" && fileIP != "0.0.0.0":
		return fileIP
	}
	return "127.0.0.1"
}

// CommandLine is the kernel command as the remote shell runs it, with the
// connection file path in "$1".
func (k KernelSpec) CommandLine() string {
	cmd := strings.TrimSpace(k.Command)
	if k.IP != "" {
		cmd += " --ip=" + shQuote(k.IP)
	}
	return cmd + ` -f "$1"`
}

// startScript is the kernel's own start script (kernel-kq-ID.cmd), kept on
// the server so that kq restart can run it again. Every value is quoted
// data: a workdir or env value never runs as shell. A simple command is
// exec'ed (through env(1) when it begins with VAR=value assignments), so
// the recorded pid is the kernel's own.
func (k KernelSpec) startScript() string {
	var lines []string
	if k.Workdir != "" {
		d := shPath(k.Workdir)
		lines = append(lines, fmt.Sprintf(`cd -- %s || { printf 'cannot cd to workdir %%s\n' %s >&2; exit 1; }`, d, d))
	}
	for _, key := range slices.Sorted(maps.Keys(k.Env)) {
		lines = append(lines, "export "+key+"="+shQuote(k.Env[key]))
	}
	cmd := k.CommandLine()
	if !strings.ContainsAny(k.Command, ";&|\n()`") {
		if leadingAssignment.MatchString(k.Command) {
			cmd = "env " + cmd
		}
		cmd = "exec " + cmd
	}
	return strings.Join(append(lines, cmd), "\n")
}

// leadingAssignment matches a command that starts with VAR=value, which
// exec would take for the program's name.
var leadingAssignment = regexp.MustCompile(`^\s*[A-Za-z_][A-Za-z0-9_]*=`)

// remoteVars are the variables a remote op reads.
type remoteVars struct {
	rt, id  string
	linger  time.Duration
	keep    bool
	start   string // start_script, for op_start
	path    string // for op_cat and op_rm
	graceDS int    // tenths of a second, for op_stop
}

// remoteCommand is the one command line kq runs on a host, for every op:
// the program and its settings arrive on the session's stdin, so nothing
// secret is ever on a command line there, and a login shell of any syntax
// (csh and tcsh reject newlines inside quotes) only parses this.
const remoteCommand = "exec /bin/sh -s"

// remoteProgram is one op as a POSIX sh program, as sent on stdin: the
// variables, the library and the call.
func remoteProgram(v remoteVars, op string) string {
	var b strings.Builder
	rt := ""
	if v.rt != "" {
		rt = shPath(v.rt)
	}
	keep := 0
	if v.keep {
		keep = 1
	}
	linger := int(v.linger / time.Second)
	fmt.Fprintf(&b, "rt=%s\nid=%s\nlinger=%d\nkeep=%d\nstart_script=%s\npath=%s\ngrace=%d\n",
		or(rt, "''"), shQuote(v.id), max(linger, 2), keep, shQuote(v.start), shQuote(v.path), v.graceDS)
	b.WriteString(remoteLib)
	// One line, so the shell has read all of the program before the op
	// runs and reads kq's lines itself.
	b.WriteString("\n" + op + "; exit\n")
	return b.String()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

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

// Protocol lines printed by remote.sh.
const (
	tagFile     = "KQ-FILE "
	tagPID      = "KQ-PID "
	tagError    = "KQ-ERROR "
	tagLog      = "KQ-LOG "
	tagBegin    = "KQ-JSON-BEGIN"
	tagEnd      = "KQ-JSON-END"
	tagFailed   = "KQ-FAILED"
	tagGone     = "KQ-GONE"
	tagStopped  = "KQ-STOPPED"
	tagDetach   = "KQ-DETACHED"
	tagReleased = "KQ-RELEASED"
	tagDone     = "KQ-DONE"
	tagTick     = "KQ-TICK"
	tagDied     = "KQ-DIED"
	tagEntry    = "KQ-ENTRY "
	tagListEnd  = "KQ-END"
)

// Deadlines of the remote side's steps: a link can die silently at any
// moment, and no wait on it may last for ever.
const (
	// sessionTimeout bounds opening a session and starting its command.
	sessionTimeout = 20 * time.Second
	// startTimeout bounds a kernel start; remote.sh gives up after 120 s.
	startTimeout = 150 * time.Second
	// opTimeout bounds a one-shot op (ls, stop, attach's lookup, ...).
	opTimeout = 45 * time.Second
)

// errKernelGone: the kernel a session wanted to hold is not running.
var errKernelGone = errors.New("kernel is gone")

// remoteError is a failure remote.sh reported in a KQ-ERROR line.
type remoteError struct{ msg string }

func (e *remoteError) Error() string { return e.msg }

// remoteKernel is one kq session's hold on a kernel: an SSH session running
// remote.sh's hold loop. kq writes a line every second (ping) so the
// server knows a kq is attached; the server reports the kernel's death.
type remoteKernel struct {
	sess   *ssh.Session
	stdin  io.WriteCloser
	lines  *lineQueue // stdout lines other than ticks
	stderr *limitedBuffer
	first  chan struct{} // closed with the first line: the program is read
	done   chan struct{} // closed when the session has ended
	died   chan struct{} // closed when the server reports the kernel dead
	read   chan struct{} // closed when all of stdout has been read

	// Path is the connection file on the remote host.
	Path string
	// PID is the kernel's process (and process group) id on the host.
	PID int
	// JSON is the connection file's content.
	JSON []byte

	waitErr error // how the session ended; read after done is closed

	mu        sync.Mutex
	closed    bool
	firstOnce sync.Once
	diedOnce  sync.Once
}

// openRemote runs one op on client: the constant command, then the
// program on its stdin. Opening the session and starting the command are
// bounded by sessionTimeout and by ctx.
func openRemote(ctx context.Context, client *ssh.Client, v remoteVars, op string) (*remoteKernel, error) {
	sess, err := newSession(ctx, client)
	if err != nil {
		return nil, err
	}
	rk := &remoteKernel{sess: sess, lines: newLineQueue(), stderr: &limitedBuffer{max: 8 << 10},
		first: make(chan struct{}), done: make(chan struct{}), died: make(chan struct{}), read: make(chan struct{})}
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
	err = within(ctx, sessionTimeout, "start remote command", func() error {
		if err := sess.Start(remoteCommand); err != nil {
			return err
		}
		_, err := io.WriteString(rk.stdin, remoteProgram(v, op))
		return err
	})
	if err != nil {
		sess.Close()
		return nil, err
	}
	go rk.readLines(stdout)
	go func() {
		rk.waitErr = sess.Wait()
		close(rk.done)
	}()
	return rk, nil
}

// newSession opens a session, giving up after sessionTimeout or when ctx
// ends; a session that opens too late is closed.
func newSession(ctx context.Context, client *ssh.Client) (*ssh.Session, error) {
	type result struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := client.NewSession()
		ch <- result{s, err}
	}()
	t := time.NewTimer(sessionTimeout)
	defer t.Stop()
	var err error
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("open session: %w", r.err)
		}
		return r.s, nil
	case <-t.C:
		err = fmt.Errorf("open session: no answer from the server in %s: %w", sessionTimeout, os.ErrDeadlineExceeded)
	case <-ctx.Done():
		err = fmt.Errorf("open session: %w", context.Cause(ctx))
	}
	go func() {
		if r := <-ch; r.s != nil {
			r.s.Close()
		}
	}()
	return nil, err
}

// within runs fn, giving up after d or when ctx ends (fn goes on in the
// background: the caller closes what fn waits on).
func within(ctx context.Context, d time.Duration, what string, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("%s: no answer from the server in %s: %w", what, d, os.ErrDeadlineExceeded)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, context.Cause(ctx))
	}
}

// readLines reads the op's output. Ticks and the kernel's death are noted
// at once; every other line is queued, none is ever dropped.
func (rk *remoteKernel) readLines(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rk.firstOnce.Do(func() { close(rk.first) })
		switch line := sc.Text(); line {
		case tagTick:
		case tagDied:
			rk.diedOnce.Do(func() { close(rk.died) })
		default:
			rk.lines.push(line)
		}
	}
	rk.lines.end()
	close(rk.read)
}

// startKernel starts a kernel and holds it for this session from the
// start, so a kernel slower to start than linger is not taken for an
// abandoned one. On error nothing is left running remotely.
func startKernel(ctx context.Context, client *ssh.Client, k KernelSpec) (*remoteKernel, error) {
	rk, err := openRemote(ctx, client, remoteVars{rt: k.RuntimeDir, id: k.ID, linger: k.Linger, keep: k.Keep, start: k.startScript()}, "op_start")
	if err != nil {
		return nil, err
	}
	go rk.ping()
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := rk.readJSON(sctx); err != nil {
		// The server knows the kernel's pid even if kq has not read it yet.
		// A kernel that died has ended the session and is cleaned up there.
		if kerr := rk.kill(); kerr != nil && !rk.hasDied() && rk.PID != 0 {
			err = fmt.Errorf("%w; stopping the half-started kernel failed: %w", err, kerr)
		}
		rk.close()
		return nil, err
	}
	return rk, nil
}

// attachKernel holds a running kq kernel (id in runtime dir rt) for a new
// session: a reconnect, or kq attach. A reconnect leaves the lost
// connection's server side alone: the kernel's ROUTER sockets hand the
// frontend's identities over to the new connections (ROUTER_HANDOVER, set
// by ipykernel since 4.8.1), and the old sshd goes once TCP gives up.
func attachKernel(ctx context.Context, client *ssh.Client, rt, id string) (*remoteKernel, error) {
	rk, err := openRemote(ctx, client, remoteVars{rt: rt, id: id}, "op_attach")
	if err != nil {
		return nil, err
	}
	go rk.ping()
	actx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := rk.readJSON(actx); err != nil {
		rk.close()
		return nil, err
	}
	return rk, nil
}

// ping writes a line every second until the session closes; each line
// tells the server's watchdog that this kq is still there. It starts once
// the server has read the program (its first line), never before.
func (rk *remoteKernel) ping() {
	select {
	case <-rk.first:
	case <-rk.done:
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if !rk.send("ping") {
			return
		}
		select {
		case <-rk.done:
			return
		case <-t.C:
		}
	}
}

// send writes one line to the hold loop unless the session is closed.
func (rk *remoteKernel) send(line string) bool {
	rk.mu.Lock()
	closed := rk.closed
	rk.mu.Unlock()
	if closed {
		return false
	}
	_, err := io.WriteString(rk.stdin, line+"\n")
	return err == nil
}

// readJSON reads the remote side's report up to the connection file.
func (rk *remoteKernel) readJSON(ctx context.Context) error {
	var failure, logLines []string
	var json bytes.Buffer
	inJSON := false
	for {
		line, ok, err := rk.lines.next(ctx.Done())
		if err != nil {
			if ctx.Err() == context.DeadlineExceeded {
				return withKind(ErrKernel, "", fmt.Errorf("no connection file from the server in %s", startTimeout))
			}
			return withKind(ErrInterrupted, "", fmt.Errorf("start kernel: %w", context.Cause(ctx)))
		}
		if !ok || line == tagFailed {
			return rk.failure(failure, logLines)
		}
		switch {
		case line == tagGone:
			return withKind(ErrKernel, "", errKernelGone)
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
			failure = append(failure, redact(strings.TrimPrefix(line, tagError)))
		case strings.HasPrefix(line, tagLog):
			logLines = append(logLines, redact(strings.TrimPrefix(line, tagLog)))
		}
	}
}

// failure is the error for a start or attach the server gave up on.
func (rk *remoteKernel) failure(failure, logLines []string) error {
	msg := strings.Join(failure, "; ")
	if msg == "" {
		msg = "remote command ended unexpectedly"
		if s := strings.TrimSpace(rk.stderr.String()); s != "" {
			msg += ": " + redact(lastLine(s))
		}
	}
	if len(logLines) > 0 {
		msg += ": " + kernelLogSummary(logLines)
	}
	hint := kernelHint(logLines)
	if strings.Contains(msg, "runtime dir") {
		hint = "make the runtime dir private to you (chmod 700), or set runtime_dir: in the profile"
	}
	return withKind(ErrKernel, hint, errors.New(msg))
}

// keyValue finds a connection file's key in text the server relays (a
// kernel that printed its JSON, a Python dict in a traceback).
var keyValue = regexp.MustCompile(`(["']key["']\s*:\s*b?["'])[^"']*(["'])`)

// redact removes connection-file keys from a line kq relays from the
// server, so the key never reaches kq's output.
func redact(s string) string {
	return keyValue.ReplaceAllString(s, "${1}<redacted>${2}")
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
	case strings.Contains(all, "cannot cd to workdir"):
		return "create that directory on the server, or fix workdir: in the profile"
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

// command sends one hold command and waits for its answer, the session's
// end, or the timeout (which also covers waiting for the server to have
// read the program).
func (rk *remoteKernel) command(cmd, want string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	select {
	case <-rk.first:
	case <-rk.read:
		return fmt.Errorf("%s: the server's side ended without confirming", cmd)
	case <-ctx.Done():
		return fmt.Errorf("%s: no answer from the server in %s", cmd, timeout)
	}
	if !rk.send(cmd) {
		return fmt.Errorf("%s: cannot reach the server's side", cmd)
	}
	for {
		line, ok, err := rk.lines.next(ctx.Done())
		switch {
		case err != nil:
			return fmt.Errorf("%s: no answer from the server in %s", cmd, timeout)
		case !ok:
			return fmt.Errorf("%s: the server's side ended without confirming", cmd)
		case line == want:
			return nil
		}
	}
}

// endedByDeath waits (briefly) until the ended session's output is read,
// and reports whether it ended because the kernel died: the server says so
// just before it ends the session.
func (rk *remoteKernel) endedByDeath() bool {
	select {
	case <-rk.read:
	case <-time.After(2 * time.Second):
	}
	return rk.hasDied()
}

// hasDied reports whether the server said the kernel died; its watchdog
// then removes its files, and there is nothing left to stop.
func (rk *remoteKernel) hasDied() bool {
	select {
	case <-rk.died:
		return true
	default:
		return false
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

// detach leaves the kernel running for good (until kq stop).
func (rk *remoteKernel) detach() error {
	defer rk.close()
	return rk.command("detach", tagDetach, 10*time.Second)
}

// release ends this session's hold; the kernel lingers or stays as it was
// set up.
func (rk *remoteKernel) release() error {
	defer rk.close()
	return rk.command("release", tagReleased, 10*time.Second)
}

func (rk *remoteKernel) close() {
	rk.mu.Lock()
	if rk.closed {
		rk.mu.Unlock()
		return
	}
	rk.closed = true
	rk.mu.Unlock()
	rk.stdin.Close()
	select {
	case <-rk.done:
	case <-time.After(5 * time.Second):
	}
	rk.sess.Close()
}

// runOp runs a one-shot op and returns its output lines (without ticks),
// all of them. A KQ-ERROR line becomes a *remoteError. The op has
// opTimeout unless ctx ends sooner.
func runOp(ctx context.Context, client *ssh.Client, v remoteVars, op string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	rk, err := openRemote(ctx, client, v, op)
	if err != nil {
		return nil, err
	}
	defer rk.close()
	rk.stdin.Close() // the program is all the op reads
	var out []string
	var failed error
	for {
		line, ok, err := rk.lines.next(ctx.Done())
		switch {
		case err != nil:
			return out, fmt.Errorf("%s: %w", op, context.Cause(ctx))
		case !ok && failed != nil:
			return out, failed
		case !ok && rk.cutShort():
			return out, fmt.Errorf("%s: the server's side ended before the op finished", op)
		case !ok:
			if s := strings.TrimSpace(rk.stderr.String()); s != "" && len(out) == 0 {
				return out, fmt.Errorf("%s: %s", op, redact(lastLine(s)))
			}
			return out, nil
		case strings.HasPrefix(line, tagError) && failed == nil:
			failed = &remoteError{msg: redact(strings.TrimPrefix(line, tagError))}
		}
		out = append(out, line)
	}
}

// cutShort reports a session that ended without an exit status: the
// connection or sshd went away in the middle of the op.
func (rk *remoteKernel) cutShort() bool {
	select {
	case <-rk.done:
	case <-time.After(2 * time.Second):
		return true // output ended, but the session did not: it is stuck
	}
	var missing *ssh.ExitMissingError
	return errors.As(rk.waitErr, &missing)
}

// lineQueue holds an op's output lines until they are read, without limit:
// a burst (a runtime dir with many connection files) loses nothing, and
// the reader of the session never blocks on it. It has one consumer at a
// time.
type lineQueue struct {
	mu    sync.Mutex
	queue []string
	eof   bool
	wake  chan struct{}
}

func newLineQueue() *lineQueue { return &lineQueue{wake: make(chan struct{}, 1)} }

func (q *lineQueue) push(line string) {
	q.mu.Lock()
	q.queue = append(q.queue, line)
	q.mu.Unlock()
	q.notify()
}

// end marks the end of the output.
func (q *lineQueue) end() {
	q.mu.Lock()
	q.eof = true
	q.mu.Unlock()
	q.notify()
}

func (q *lineQueue) notify() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// errGaveUp: next stopped waiting because its cancel channel fired.
var errGaveUp = errors.New("gave up waiting")

// next returns the next line; ok is false once the output has ended and
// every line was read. It waits until cancel fires, then returns errGaveUp.
func (q *lineQueue) next(cancel <-chan struct{}) (line string, ok bool, err error) {
	for {
		q.mu.Lock()
		if len(q.queue) > 0 {
			line = q.queue[0]
			q.queue = q.queue[1:]
			q.mu.Unlock()
			return line, true, nil
		}
		eof := q.eof
		q.mu.Unlock()
		if eof {
			return "", false, nil
		}
		select {
		case <-q.wake:
		case <-cancel:
			return "", false, errGaveUp
		}
	}
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
