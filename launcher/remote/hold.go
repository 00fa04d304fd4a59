package remote

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kq-dev/kq/launcher/kinds"
)

// Deadlines of the remote side's steps: a link can die silently at any
// moment, and no wait on it may last for ever.
const (
	// startTimeout bounds a kernel start; remote.sh gives up after 120 s.
	startTimeout = 150 * time.Second
	// opTimeout bounds a one-shot op (ls, stop, attach's lookup, ...) and
	// taking hold of a running kernel.
	opTimeout = 45 * time.Second
	// answerTimeout bounds the answer to a hold command when the caller's
	// context has no deadline.
	answerTimeout = 20 * time.Second
)

// ErrGone: the kernel an op wanted is not running.
var ErrGone = errors.New("kernel is gone")

// Hold is one kq session's hold on a kernel: the remote command running
// remote.sh's hold loop. kq writes a line every second (ping) so the
// server's watchdog knows a kq is attached; the server reports the
// kernel's death.
type Hold struct {
	proc   Process
	lines  *lineQueue // output lines other than ticks
	stderr *limitedBuffer
	first  chan struct{} // closed with the first line: the program is read
	done   chan struct{} // closed when the command has ended
	died   chan struct{} // closed when the server reports the kernel dead
	read   chan struct{} // closed when all of the output has been read
	p      parser        // what the op reported

	// Path is the connection file on the remote host.
	Path string
	// PID is the kernel's process (and process group) id on the host.
	PID int
	// JSON is the connection file's content.
	JSON []byte
	// Warm says the kernel is a spare this session took (warm: 1), not
	// one it started.
	Warm bool

	onSched   atomic.Pointer[func(string)] // a batch job's status lines
	lastSched atomic.Pointer[string]       // the last one, for a late OnSched
	lastLine  atomic.Int64                 // unix nanos of the last line (ticks too)

	waitErr   error // how the command ended; read after done is closed
	mu        sync.Mutex
	writeMu   sync.Mutex // one line at a time on stdin
	cmdMu     sync.Mutex // one command at a time
	closed    bool
	firstOnce sync.Once
	diedOnce  sync.Once
}

// open runs one op: the constant command, then the program on its stdin,
// both bounded by ctx and the runner's own deadlines.
func open(ctx context.Context, r Runner, v vars, op string) (*Hold, error) {
	h := &Hold{lines: newLineQueue(), stderr: &limitedBuffer{max: 8 << 10},
		first: make(chan struct{}), done: make(chan struct{}), died: make(chan struct{}), read: make(chan struct{})}
	proc, err := r.Start(ctx, Command, h.stderr)
	if err != nil {
		return nil, err
	}
	h.proc = proc
	prog := program(v, op)
	if err := within(ctx, sessionTimeout, "send the remote program", func() error {
		_, err := io.WriteString(proc.Stdin(), prog)
		return err
	}); err != nil {
		proc.Close()
		return nil, err
	}
	go h.readLines(proc.Stdout())
	go func() {
		h.waitErr = proc.Wait()
		close(h.done)
	}()
	return h, nil
}

// readLines reads the op's output. Ticks and the kernel's death are noted
// at once; every other line is queued, none is ever dropped.
func (h *Hold) readLines(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		h.firstOnce.Do(func() { close(h.first) })
		h.lastLine.Store(time.Now().UnixNano())
		switch line := sc.Text(); {
		case line == tagTick:
		case line == tagDied:
			h.diedOnce.Do(func() { close(h.died) })
		case strings.HasPrefix(line, tagSched):
			h.sched(strings.TrimPrefix(line, tagSched))
		default:
			h.lines.push(line)
		}
	}
	h.lines.end()
	close(h.read)
}

// sched hands a batch job's status line to OnSched's function, or keeps it
// for one set later.
func (h *Hold) sched(line string) {
	h.lastSched.Store(&line)
	if fn := h.onSched.Load(); fn != nil {
		(*fn)(line)
	}
}

// OnSched sets the receiver of the batch job's status lines (see
// KernelSpec.OnSched); the last line already received is given at once.
func (h *Hold) OnSched(fn func(string)) {
	h.onSched.Store(&fn)
	if l := h.lastSched.Load(); l != nil {
		fn(*l)
	}
}

// Start starts a kernel and holds it for this session from the start, so
// a kernel slower to start than linger is not taken for an abandoned one.
// On error nothing is left running remotely. A kernel in a batch job
// (k.Job) waits for the queue as long as k.Job.QueueTimeout says, or as
// long as ctx lasts, while the server's side keeps talking.
func Start(ctx context.Context, r Runner, k KernelSpec) (*Hold, error) {
	v := vars{rt: k.RuntimeDir, id: k.ID, linger: k.Linger, keep: k.Keep, start: k.StartScript(),
		preset: k.Preset, owner: k.Owner, warm: k.Warm && k.Preset == nil && k.Job == nil}
	if v.warm {
		v.flavor = k.Flavor()
	}
	limit := startTimeout
	if k.Job != nil {
		v.adopt = k.Owner != "" && len(k.Preset) > 0
		v.wait, limit = -1, 0
		if q := k.Job.QueueTimeout; q > 0 {
			v.wait, limit = q, q+startTimeout-120*time.Second
		}
	}
	h, err := open(ctx, r, v, "op_start")
	if err != nil {
		return nil, err
	}
	if k.OnSched != nil {
		h.OnSched(k.OnSched)
	}
	go h.ping()
	sctx, cancel := ctx, context.CancelFunc(func() {})
	if limit > 0 {
		sctx, cancel = context.WithTimeout(ctx, limit)
	}
	defer cancel()
	if err := h.waitJSON(sctx); err != nil {
		if errors.Is(err, errSilent) {
			// Nothing answers there, so nothing would answer a kill: the
			// server's watchdog stops what started, as after a lost link.
			h.Abandon()
			return nil, err
		}
		// The server knows the kernel's pid even if kq has not read it yet.
		// A kernel that died has ended the session and is cleaned up there.
		if kerr := h.Stop(context.Background(), false); kerr != nil && !h.HasDied() && h.PID != 0 {
			err = fmt.Errorf("%w; stopping the half-started kernel failed: %w", err, kerr)
		}
		return nil, err
	}
	return h, nil
}

// Attach holds a running kq kernel (id in runtime dir rt) for a new
// session: a reconnect, or kq attach. A reconnect leaves the lost
// connection's server side alone: the kernel's ROUTER sockets hand the
// frontend's identities over to the new connections (ROUTER_HANDOVER, set
// by ipykernel since 4.8.1), and the old sshd goes once TCP gives up.
func Attach(ctx context.Context, r Runner, rt, id string) (*Hold, error) {
	return holdRunning(ctx, r, vars{rt: rt, id: id}, "op_attach")
}

// holdRunning runs op (op_attach, op_claimed) on a running kq kernel and
// holds it once its connection file has come.
func holdRunning(ctx context.Context, r Runner, v vars, op string) (*Hold, error) {
	h, err := open(ctx, r, v, op)
	if err != nil {
		return nil, err
	}
	go h.ping()
	actx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := h.waitJSON(actx); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// ping writes a line every second until the session closes; each line
// tells the server's watchdog that this kq is still there. It starts once
// the server has read the program (its first line), never before.
func (h *Hold) ping() {
	select {
	case <-h.first:
	case <-h.done:
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if !h.send("ping") {
			return
		}
		select {
		case <-h.done:
			return
		case <-t.C:
		}
	}
}

// send writes one line to the hold loop unless the hold is closed; lines
// from the pinger and from commands never interleave.
func (h *Hold) send(line string) bool {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return false
	}
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	_, err := io.WriteString(h.proc.Stdin(), line+"\n")
	return err == nil
}

// silentLimit: a server's side that says nothing at all (not even its
// ticks) for this long is taken for a dead link during a start (a var
// for tests).
var silentLimit = 60 * time.Second

// waitJSON reads the remote side's report up to the connection file. The
// wait ends with ctx, or when the server's side falls silent.
func (h *Hold) waitJSON(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go h.watchSilence(ctx, cancel)
	for {
		line, ok, err := h.lines.next(ctx.Done())
		if err != nil {
			if errors.Is(context.Cause(ctx), errSilent) {
				return kinds.With(kinds.Kernel, h.silentHint(), fmt.Errorf("start kernel: %w for %s", errSilent, silentLimit))
			}
			if ctx.Err() == context.DeadlineExceeded {
				return kinds.With(kinds.Kernel, "", fmt.Errorf("no connection file from the server in %s", startTimeout))
			}
			return kinds.With(kinds.Interrupted, "", fmt.Errorf("start kernel: %w", context.Cause(ctx)))
		}
		if !ok {
			return h.failure()
		}
		switch h.p.feed(line) {
		case tagFailed:
			return h.failure()
		case tagGone:
			return kinds.With(kinds.Kernel, "", ErrGone)
		case tagEnd:
			h.Path, h.PID, h.JSON, h.Warm = h.p.file, h.p.pid, h.p.json, h.p.warm
			return nil
		}
		h.PID = h.p.pid // known before the JSON: a failed start is stopped by it
	}
}

// errSilent: the server's side sent nothing, not even a tick, for silentLimit.
var errSilent = errors.New("the server's side sent nothing")

// silentHint says where a silent start most likely hangs: before the
// first line, remote.sh has not run yet, and what runs before it is the
// login shell's start-up.
func (h *Hold) silentHint() string {
	select {
	case <-h.first:
		return ""
	default:
		return "not even the first line came back: the login shell on the host may hang in its start-up files " +
			"(~/.bashrc, ~/.profile; a stale lock of a tool they run); ssh to the host with the command true shows it"
	}
}

// watchSilence cancels ctx once the server's side has been silent for
// silentLimit (counted from now, before its first line).
func (h *Hold) watchSilence(ctx context.Context, cancel context.CancelCauseFunc) {
	start := time.Now().UnixNano()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			last := max(h.lastLine.Load(), start)
			if time.Since(time.Unix(0, last)) > silentLimit {
				cancel(errSilent)
				return
			}
		}
	}
}

// failure is the error for a start or attach the server gave up on.
func (h *Hold) failure() error {
	msg := strings.Join(h.p.errs, "; ")
	if msg == "" {
		msg = "remote command ended unexpectedly"
		if s := strings.TrimSpace(h.stderr.String()); s != "" {
			msg += ": " + redact(lastLine(s))
		}
	}
	if len(h.p.log) > 0 {
		msg += ": " + kernelLogSummary(h.p.log)
	}
	hint := kernelHint(h.p.log)
	if strings.Contains(msg, "runtime dir") {
		hint = "make the runtime dir private to you (chmod 700), or set runtime_dir: in the profile"
	}
	return kinds.With(kinds.Kernel, hint, errors.New(msg))
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

// command sends one hold command and waits for its answer, the session's
// end, or ctx's end (answerTimeout when ctx has no deadline). The wait
// covers the server reading the program first.
func (h *Hold) command(ctx context.Context, cmd, want string) error {
	h.cmdMu.Lock() // one command at a time reads the answers
	defer h.cmdMu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, answerTimeout)
		defer cancel()
	}
	select {
	case <-h.first:
	case <-h.read:
		return fmt.Errorf("%s: the server's side ended without confirming", cmd)
	case <-ctx.Done():
		return fmt.Errorf("%s: no answer from the server: %w", cmd, context.Cause(ctx))
	}
	if !h.send(cmd) {
		return fmt.Errorf("%s: cannot reach the server's side", cmd)
	}
	for {
		line, ok, err := h.lines.next(ctx.Done())
		switch {
		case err != nil:
			return fmt.Errorf("%s: no answer from the server: %w", cmd, context.Cause(ctx))
		case !ok:
			return fmt.Errorf("%s: the server's side ended without confirming", cmd)
		case line == want:
			return nil
		}
	}
}

// Died is closed when the server reports the kernel dead.
func (h *Hold) Died() <-chan struct{} { return h.died }

// Done is closed when the hold's remote command has ended (the kernel
// died, the connection went, or the hold was let go).
func (h *Hold) Done() <-chan struct{} { return h.done }

// EndedByDeath waits (briefly) until the ended hold's output is read, and
// reports whether it ended because the kernel died: the server says so
// just before it ends the session.
func (h *Hold) EndedByDeath() bool {
	select {
	case <-h.read:
	case <-time.After(2 * time.Second):
	}
	return h.HasDied()
}

// HasDied reports whether the server said the kernel died; its watchdog
// then removes its files, and there is nothing left to stop.
func (h *Hold) HasDied() bool {
	select {
	case <-h.died:
		return true
	default:
		return false
	}
}

// Stop stops the kernel and removes its remote files: gracefully (a grace
// period for a kernel that was sent shutdown_request to exit by itself)
// or at once, then TERM and KILL to its process group. The hold ends.
func (h *Hold) Stop(ctx context.Context, graceful bool) error {
	defer h.end(ctx)
	if graceful {
		return h.command(ctx, "stop", tagStopped)
	}
	return h.command(ctx, "kill", tagStopped)
}

// Interrupt sends SIGINT to the kernel's process group, through the hold:
// no new session, so it is as fast as the link.
func (h *Hold) Interrupt(ctx context.Context) error {
	return h.command(ctx, "interrupt", tagInterrupted)
}

// Detach leaves the kernel running for good (until kq stop); the hold ends.
func (h *Hold) Detach(ctx context.Context) error {
	defer h.end(ctx)
	return h.command(ctx, "detach", tagDetached)
}

// Release ends this session's hold; the kernel lingers or stays as it was
// set up.
func (h *Hold) Release(ctx context.Context) error {
	defer h.end(ctx)
	return h.command(ctx, "release", tagReleased)
}

// end closes the hold after a command: at once if ctx ran out (the caller
// has no time left to wait for the server), else as Close does.
func (h *Hold) end(ctx context.Context) {
	if ctx.Err() != nil {
		h.Abandon()
		return
	}
	h.Close()
}

// Abandon lets go of the hold on a dead link: nothing is sent and nothing
// is waited for. The server's watchdog sees no more pings and deals with
// the kernel as linger and keep say.
func (h *Hold) Abandon() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	_ = h.proc.Close()
}

// Close ends the hold: stdin is closed (the hold loop ends, the kernel
// lingers) and the command is given a few seconds to end.
func (h *Hold) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	h.mu.Unlock()
	h.proc.Stdin().Close()
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
	}
	h.proc.Close()
}
