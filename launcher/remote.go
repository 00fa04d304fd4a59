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
	cmd := k.Command
	if k.IP != "" {
		cmd += " --ip=" + shQuote(k.IP)
	}
	return cmd + ` -f "$1"`
}

// startScript is the kernel's own start script (kernel-kq-ID.cmd), kept on
// the server so that kq restart can run it again. A simple command is
// exec'ed, so the recorded pid is the kernel's own.
func (k KernelSpec) startScript() string {
	var lines []string
	if k.Workdir != "" {
		lines = append(lines, fmt.Sprintf(`cd %s || { echo "kq: cannot cd to workdir %s" >&2; exit 1; }`,
			shPath(k.Workdir), strings.ReplaceAll(k.Workdir, `"`, ``)))
	}
	for _, key := range slices.Sorted(maps.Keys(k.Env)) {
		lines = append(lines, "export "+key+"="+shQuote(k.Env[key]))
	}
	cmd := k.CommandLine()
	if !strings.ContainsAny(k.Command, ";&|\n()`") {
		cmd = "exec " + cmd
	}
	return strings.Join(append(lines, cmd), "\n")
}

// remoteVars are the variables a remote op reads.
type remoteVars struct {
	rt, id  string
	linger  time.Duration
	keep    bool
	start   string // start_script, for op_start
	path    string // for op_cat and op_rm
	graceDS int    // tenths of a second, for op_stop
}

// remoteCommand is the command line for one op. No secret is ever part
// of it.
func remoteCommand(v remoteVars, op string) string {
	return "exec /bin/sh -c " + shQuote(remoteProgram(v, op))
}

// remoteProgram is one op as a POSIX sh program: the variables, the
// library and the call.
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
	b.WriteString("\n" + op + "\n")
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
)

// errKernelGone: the kernel a session wanted to hold is not running.
var errKernelGone = errors.New("kernel is gone")

// remoteKernel is one kq session's hold on a kernel: an SSH session running
// remote.sh's hold loop. kq writes a line every second (ping) so the
// server knows a kq is attached; the server reports the kernel's death.
type remoteKernel struct {
	sess   *ssh.Session
	stdin  io.WriteCloser
	lines  chan string // stdout lines other than ticks; closed at EOF
	stderr *limitedBuffer
	done   chan struct{} // closed when the session has ended
	died   chan struct{} // closed when the server reports the kernel dead
	read   chan struct{} // closed when all of stdout has been read

	// Path is the connection file on the remote host.
	Path string
	// PID is the kernel's process (and process group) id on the host.
	PID int
	// JSON is the connection file's content.
	JSON []byte

	mu       sync.Mutex
	closed   bool
	diedOnce sync.Once
}

// openRemote runs one op on client and starts reading its output.
func openRemote(client *ssh.Client, v remoteVars, op string) (*remoteKernel, error) {
	sess, err := client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open session: %w", err)
	}
	rk := &remoteKernel{sess: sess, lines: make(chan string, 256), stderr: &limitedBuffer{max: 8 << 10},
		done: make(chan struct{}), died: make(chan struct{}), read: make(chan struct{})}
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
	if err := sess.Start(remoteCommand(v, op)); err != nil {
		sess.Close()
		return nil, fmt.Errorf("start remote command: %w", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			switch line := sc.Text(); line {
			case tagTick:
			case tagDied:
				rk.diedOnce.Do(func() { close(rk.died) })
			default:
				select {
				case rk.lines <- line:
				default: // nobody listens for more than 256 lines: drop
				}
			}
		}
		close(rk.lines)
		close(rk.read)
	}()
	go func() {
		_ = sess.Wait()
		close(rk.done)
	}()
	return rk, nil
}

// startKernel starts a kernel and holds it for this session. On error
// nothing is left running remotely.
func startKernel(ctx context.Context, client *ssh.Client, k KernelSpec) (*remoteKernel, error) {
	rk, err := openRemote(client, remoteVars{rt: k.RuntimeDir, id: k.ID, linger: k.Linger, keep: k.Keep, start: k.startScript()}, "op_start")
	if err != nil {
		return nil, err
	}
	if err := rk.readJSON(ctx); err != nil {
		// The server knows the kernel's pid even if kq has not read it yet.
		if kerr := rk.kill(); kerr != nil && rk.PID != 0 {
			err = errors.Join(err, fmt.Errorf("stop the half-started kernel: %w", kerr))
		}
		rk.close()
		return nil, err
	}
	go rk.ping()
	return rk, nil
}

// attachKernel holds a running kq kernel (id in runtime dir rt) for a new
// session: a reconnect, or kq attach. A reconnect leaves the lost
// connection's server side alone: the kernel's ROUTER sockets hand the
// frontend's identities over to the new connections (ROUTER_HANDOVER, set
// by ipykernel since 4.8.1), and the old sshd goes once TCP gives up.
func attachKernel(ctx context.Context, client *ssh.Client, rt, id string) (*remoteKernel, error) {
	rk, err := openRemote(client, remoteVars{rt: rt, id: id}, "op_attach")
	if err != nil {
		return nil, err
	}
	if err := rk.readJSON(ctx); err != nil {
		rk.close()
		return nil, err
	}
	go rk.ping()
	return rk, nil
}

// ping writes a line every second until the session closes; each line
// tells the server's watchdog that this kq is still there.
func (rk *remoteKernel) ping() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-rk.done:
			return
		case <-t.C:
			rk.mu.Lock()
			closed := rk.closed
			rk.mu.Unlock()
			if closed {
				return
			}
			if _, err := io.WriteString(rk.stdin, "ping\n"); err != nil {
				return
			}
		}
	}
}

// readJSON reads the remote side's report up to the connection file.
func (rk *remoteKernel) readJSON(ctx context.Context) error {
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

// command sends one hold command and waits for its answer, the session's
// end, or the timeout.
func (rk *remoteKernel) command(cmd, want string, timeout time.Duration) error {
	rk.mu.Lock()
	closed := rk.closed
	rk.mu.Unlock()
	if closed {
		return fmt.Errorf("%s: session already closed", cmd)
	}
	if _, err := io.WriteString(rk.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("send %s to the server: %w", cmd, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-rk.lines:
			if !ok {
				return fmt.Errorf("%s: the server's side ended without confirming", cmd)
			}
			if line == want {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("%s: no answer from the server in %s", cmd, timeout)
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

// runOp runs a one-shot op and returns its output lines (without ticks).
func runOp(ctx context.Context, client *ssh.Client, v remoteVars, op string) ([]string, error) {
	rk, err := openRemote(client, v, op)
	if err != nil {
		return nil, err
	}
	defer rk.close()
	var out []string
	for {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case line, ok := <-rk.lines:
			if !ok {
				if s := strings.TrimSpace(rk.stderr.String()); s != "" && len(out) == 0 {
					return out, fmt.Errorf("%s: %s", op, lastLine(s))
				}
				return out, nil
			}
			out = append(out, line)
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
