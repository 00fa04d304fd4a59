package remote

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kq-dev/kq/launcher/kinds"
)

// run runs a one-shot op to its end and returns what it reported. A
// KQ-ERROR line becomes an *Error; an op cut short by a connection that
// went away is an error too, never an empty success. The op has opTimeout
// unless ctx ends sooner.
func run(ctx context.Context, r Runner, v vars, op string) (*parser, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	h, err := open(ctx, r, v, op)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	h.proc.Stdin().Close() // the program is all the op reads
	for {
		line, ok, err := h.lines.next(ctx.Done())
		switch {
		case err != nil:
			return &h.p, fmt.Errorf("%s: %w", op, context.Cause(ctx))
		case ok:
			h.p.feed(line)
			continue
		}
		if err := h.p.err(); err != nil {
			return &h.p, err
		}
		if h.cutShort() {
			return &h.p, fmt.Errorf("%s: %w", op, ErrCutShort)
		}
		if s := strings.TrimSpace(h.stderr.String()); s != "" && h.p.final == "" {
			return &h.p, fmt.Errorf("%s: %s", op, redact(lastLine(s)))
		}
		return &h.p, nil
	}
}

// cutShort reports a command that ended without an exit status: the
// connection or sshd went away in the middle of the op.
func (h *Hold) cutShort() bool {
	select {
	case <-h.done:
	case <-time.After(2 * time.Second):
		return true // output ended, but the command did not: it is stuck
	}
	return errors.Is(h.waitErr, ErrCutShort)
}

// List returns every connection file in runtime dir rt ("" asks the
// server) that the user owns, kq's or not. Alive is known for kq's
// kernels only.
func List(ctx context.Context, r Runner, rt string) ([]Entry, error) {
	p, err := run(ctx, r, vars{rt: rt}, "op_list")
	if err != nil {
		return nil, err
	}
	if p.final != tagListEnd {
		return nil, errors.New("op_list: the list ended early")
	}
	return p.entries, nil
}

// Cat returns the connection file at path on the host.
func Cat(ctx context.Context, r Runner, path string) ([]byte, error) {
	p, err := run(ctx, r, vars{path: path}, "op_cat")
	var rerr *Error
	if errors.As(err, &rerr) {
		return nil, kinds.With(kinds.Usage, "", rerr)
	}
	if err != nil {
		return nil, err
	}
	return p.json, nil
}

// Remove removes the file at path on the host (another tool's connection
// file, once its kernel has stopped).
func Remove(ctx context.Context, r Runner, path string) error {
	p, err := run(ctx, r, vars{path: path}, "op_rm")
	if err == nil && p.final != tagDone {
		err = errors.New("op_rm: no confirmation from the server")
	}
	return err
}

// StopKernel stops kq kernel id in rt, after grace for a shutdown_request
// to take effect, and removes its files. A kernel already gone is no error.
func StopKernel(ctx context.Context, r Runner, rt, id string, grace time.Duration) error {
	p, err := run(ctx, r, vars{rt: rt, id: id, graceDS: int(grace / (100 * time.Millisecond))}, "op_stop")
	if err != nil {
		return err
	}
	if p.final != tagStopped && p.final != tagGone {
		return errors.New("op_stop: no confirmation from the server")
	}
	return nil
}

// Interrupt sends SIGINT to kq kernel id in rt; ErrGone if it is not
// running.
func Interrupt(ctx context.Context, r Runner, rt, id string) error {
	p, err := run(ctx, r, vars{rt: rt, id: id}, "op_interrupt")
	if err != nil {
		return err
	}
	if p.final != tagDone {
		return ErrGone
	}
	return nil
}

// Restart replaces kq kernel id's process with a new one on the same
// connection file (same key and ports) and returns its pid; ErrGone if it
// is not running.
func Restart(ctx context.Context, r Runner, rt, id string) (int, error) {
	p, err := run(ctx, r, vars{rt: rt, id: id}, "op_restart")
	if err != nil {
		return 0, err
	}
	if p.pid == 0 {
		return 0, ErrGone
	}
	return p.pid, nil
}

// MarkFinal tells the login node that kq kernel id in rt, a kernel in a
// batch job, was shut down for good by its kernel manager (no restart will
// follow): its job then ends with the kernel instead of keeping the
// allocation for a while. A kernel already gone is no error.
func MarkFinal(ctx context.Context, r Runner, rt, id string) error {
	p, err := run(ctx, r, vars{rt: rt, id: id}, "op_final")
	if err != nil {
		return err
	}
	if p.final != tagDone && p.final != tagGone {
		return errors.New("op_final: no confirmation from the server")
	}
	return nil
}

// ErrNoCommand: the scheduler's command is not installed on the host.
var ErrNoCommand = errors.New("command not found")

// Sched runs one scheduler command (argv; no JobArg or ScriptArg) on the
// host and returns its output (stdout and stderr together) and exit
// status. A command missing on the host is an error wrapping ErrNoCommand.
func Sched(ctx context.Context, r Runner, argv []string) (string, int, error) {
	return SchedInput(ctx, r, argv, "")
}

// SchedInput is Sched with input on the command's stdin (a batch script
// for sbatch --test-only); "" gives it none.
func SchedInput(ctx context.Context, r Runner, argv []string, input string) (string, int, error) {
	if len(argv) == 0 {
		return "", 0, errors.New("op_sched: no command")
	}
	cmd := shWords(argv) + " </dev/null"
	if input != "" {
		cmd = "printf '%s\\n' " + shQuote(input) + " | " + shWords(argv)
	}
	p, err := run(ctx, r, vars{path: argv[0], sched: cmd}, "op_sched")
	var rerr *Error
	if errors.As(err, &rerr) && strings.Contains(rerr.Msg, "not found") {
		return "", 0, fmt.Errorf("%s: %w", rerr.Msg, ErrNoCommand)
	}
	if err != nil {
		return "", 0, err
	}
	if p.final != tagDone {
		return "", 0, errors.New("op_sched: no confirmation from the server")
	}
	return string(p.json), p.exit, nil
}
