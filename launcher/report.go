package launcher

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/kq-dev/kq/termui"
)

// reporter prints progress lines on stderr, and the live status line
// while kq waits (on a terminal; see termui).
type reporter struct {
	w              io.Writer
	ui             *termui.Writer // nil: no status line
	quiet, verbose bool
}

// newReporter prints through o.Log when there is one, else on o.Stderr.
func newReporter(o Options) reporter {
	r := reporter{w: o.Stderr, ui: o.Log, quiet: o.Quiet, verbose: o.Verbose}
	if o.Log != nil {
		r.w = o.Log
	}
	return r
}

// status shows what kq waits for, redrawn in place with its clock; ""
// takes it away. Not with -q, and only on a terminal.
func (r reporter) status(format string, args ...any) {
	if r.ui == nil || (r.quiet && format != "") {
		return
	}
	r.ui.Status(fmt.Sprintf(format, args...))
}

// statusSince is status with the clock counting from t0.
func (r reporter) statusSince(t0 time.Time, format string, args ...any) {
	if r.ui == nil || r.quiet {
		return
	}
	r.ui.StatusSince(fmt.Sprintf(format, args...), t0)
}

// live reports whether a status line is drawn (a terminal, not -q).
func (r reporter) live() bool { return r.ui != nil && !r.quiet && r.ui.Live() }

// freeze ends the status line for good: the frontend shares the terminal
// from now on.
func (r reporter) freeze() {
	if r.ui != nil {
		r.ui.Freeze()
	}
}

// pause hides the status line while a prompt uses the terminal.
func (r reporter) pause() func() {
	if r.ui == nil {
		return func() {}
	}
	return r.ui.Pause()
}

func (r reporter) step(format string, args ...any) {
	if !r.quiet {
		fmt.Fprintf(r.w, "kq: "+format+"\n", args...)
	}
}

func (r reporter) detail(format string, args ...any) {
	if r.verbose && !r.quiet {
		fmt.Fprintf(r.w, "kq: "+format+"\n", args...)
	}
}

func (r reporter) always(format string, args ...any) {
	fmt.Fprintf(r.w, "kq: "+format+"\n", args...)
}

func (r reporter) warn(format string, args ...any) {
	if r.quiet {
		return
	}
	line := fmt.Sprintf("kq: warning: "+format, args...)
	if r.ui != nil {
		line = r.ui.Prefix(line)
	}
	fmt.Fprintln(r.w, line)
}

// warn goes through Options.Warn when the caller gave one.
func (s *session) warn(format string, args ...any) {
	if s.o.Warn != nil {
		s.o.Warn(format, args...)
		return
	}
	s.log.warn(format, args...)
}

func since(t time.Time) time.Duration {
	d := time.Since(t)
	if d > time.Second {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(100 * time.Microsecond)
}

func ignoreNotExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
