package launcher

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// reporter prints progress lines on stderr.
type reporter struct {
	w              io.Writer
	quiet, verbose bool
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
	fmt.Fprintf(r.w, "kq: warning: "+format+"\n", args...)
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
