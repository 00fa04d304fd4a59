// Package termui is kq's stderr: permanent lines, one live status line
// that redraws in place while kq waits (on a terminal only), and colour
// (on a terminal only, never with NO_COLOR). When stderr is not a
// terminal it writes plain lines and never an escape code.
package termui

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Redraw is how often the live line's clock is redrawn.
const Redraw = 100 * time.Millisecond

// Writer is stderr for kq's own lines. Its zero value is not usable; use New.
type Writer struct {
	w     io.Writer
	live  bool
	color bool
	width func() int

	mu      sync.Mutex
	status  string
	since   time.Time
	drawn   bool // the status line is on the screen
	paused  int  // a prompt owns the terminal
	stopTik chan struct{}
}

// Options says what w is.
type Options struct {
	// Terminal is true when w is a terminal that understands cursor
	// control (see IsTerminal): the status line is live.
	Terminal bool
	// NoColor switches colour off (NO_COLOR).
	NoColor bool
	// Width reports the terminal's width; nil means 80. The live line is
	// cut to it, since a wrapped line cannot be redrawn in place.
	Width func() int
}

// New wraps w.
func New(w io.Writer, o Options) *Writer {
	width := o.Width
	if width == nil {
		width = func() int { return 80 }
	}
	return &Writer{w: w, live: o.Terminal, color: o.Terminal && !o.NoColor, width: width}
}

// NoColor reports whether the environment asks for no colour, as
// https://no-color.org says: NO_COLOR set to anything but "".
func NoColor(getenv func(string) string) bool { return getenv("NO_COLOR") != "" }

// IsTerminal is whether a terminal kq may draw on: fd is one and TERM is
// not "dumb" (which has no cursor control).
func IsTerminal(isTTY bool, getenv func(string) string) bool {
	return isTTY && getenv("TERM") != "dumb"
}

// Live reports whether the status line is shown.
func (w *Writer) Live() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.live
}

// Write prints permanent output: the status line is taken away first and
// drawn again after, so the two never mix.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.clearLocked()
	n, err := w.w.Write(p)
	w.drawLocked()
	return n, err
}

// Status sets the live line's text ("" takes it away) and restarts its
// clock. Without a terminal it does nothing.
func (w *Writer) Status(text string) { w.StatusSince(text, time.Now()) }

// StatusSince is Status with its clock counting from since (a job's
// submission, say) rather than from now.
func (w *Writer) StatusSince(text string, since time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.live && text != "" {
		return
	}
	w.clearLocked()
	w.status, w.since = text, since
	switch {
	case text != "" && w.stopTik == nil:
		w.stopTik = make(chan struct{})
		go w.tick(w.stopTik)
	case text == "" && w.stopTik != nil:
		close(w.stopTik)
		w.stopTik = nil
	}
	w.drawLocked()
}

// Freeze takes the status line away for good: from now on another
// program (the frontend) shares the terminal, and a line redrawn under it
// would garble its screen. Permanent lines still go through w.
func (w *Writer) Freeze() {
	w.Status("")
	w.mu.Lock()
	w.live = false
	w.mu.Unlock()
}

// Pause takes the status line away until the returned func is called, for
// a prompt that needs the terminal.
func (w *Writer) Pause() (resume func()) {
	w.mu.Lock()
	w.clearLocked()
	w.paused++
	w.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			w.paused--
			w.drawLocked()
			w.mu.Unlock()
		})
	}
}

func (w *Writer) tick(stop chan struct{}) {
	t := time.NewTicker(Redraw)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			w.mu.Lock()
			w.clearLocked()
			w.drawLocked()
			w.mu.Unlock()
		}
	}
}

func (w *Writer) clearLocked() {
	if w.drawn {
		io.WriteString(w.w, "\r\x1b[2K")
		w.drawn = false
	}
}

func (w *Writer) drawLocked() {
	if !w.live || w.status == "" || w.paused > 0 {
		return
	}
	line := fmt.Sprintf("kq: %s %s", w.status, elapsed(time.Since(w.since)))
	if max := w.width() - 1; max > 0 && len(line) > max {
		line = line[:max]
	}
	io.WriteString(w.w, w.paint(faint, line))
	w.drawn = true
}

// elapsed is the live line's clock, in tenths of a second.
func elapsed(d time.Duration) string {
	return fmt.Sprintf("(%.1fs)", d.Seconds())
}

// Styles for Paint.
const (
	Red    = "31"
	Yellow = "33"
	Cyan   = "36"
	Bold   = "1"
	faint  = "2"
)

// Paint wraps s in the SGR style when colour is on, and returns s as it is
// otherwise.
func (w *Writer) Paint(style, s string) string { return w.paint(style, s) }

func (w *Writer) paint(style, s string) string {
	if !w.color || s == "" {
		return s
	}
	return "\x1b[" + style + "m" + s + "\x1b[0m"
}

// Prefix paints the "kq: error:", "kq: warning:" or "kq: hint:" at the
// start of line, leaving the message itself plain.
func (w *Writer) Prefix(line string) string {
	for _, p := range []struct{ prefix, style string }{
		{"kq: error:", Red + ";" + Bold}, {"kq: warning:", Yellow}, {"kq: hint:", Cyan},
	} {
		if strings.HasPrefix(line, p.prefix) {
			return w.paint(p.style, p.prefix) + line[len(p.prefix):]
		}
	}
	return line
}
