package termui

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestNotATerminalIsPlain(t *testing.T) {
	var b syncBuf
	w := New(&b, Options{Terminal: false})
	w.Status("connecting to gpu")
	time.Sleep(3 * Redraw)
	w.Write([]byte(w.Prefix("kq: error: no") + "\n"))
	w.Status("")
	if got := b.String(); got != "kq: error: no\n" {
		t.Errorf("output %q: want the one plain line, no status, no escape codes", got)
	}
}

func TestLiveLineRedrawsAndGivesWayToLines(t *testing.T) {
	var b syncBuf
	w := New(&b, Options{Terminal: true, NoColor: true, Width: func() int { return 30 }})
	w.Status("waiting for the kernel on a-host-with-a-long-name")
	time.Sleep(3 * Redraw)
	w.Write([]byte("kq: connected\n"))
	w.Status("")
	out := b.String()
	if n := strings.Count(out, "\r\x1b[2K"); n < 3 {
		t.Errorf("the line was cleared %d times; want a redraw per tick: %q", n, out)
	}
	if strings.Contains(out, "\x1b[2m") || strings.Contains(out, "\x1b[3") {
		t.Errorf("colour with NoColor: %q", out)
	}
	for _, draw := range strings.Split(out, "\r\x1b[2K") {
		if len(draw) > 29 && !strings.HasPrefix(draw, "kq: connected") {
			t.Errorf("a drawn line is wider than the terminal: %q", draw)
		}
	}
	if !strings.Contains(out, "\r\x1b[2Kkq: connected\n") {
		t.Errorf("a permanent line did not replace the live one: %q", out)
	}
	if !strings.HasSuffix(out, "\r\x1b[2K") {
		t.Errorf("Status(\"\") did not clear the line: %q", out)
	}
}

func TestPauseAndFreeze(t *testing.T) {
	var b syncBuf
	w := New(&b, Options{Terminal: true})
	w.Status("authenticating")
	resume := w.Pause()
	before := b.String()
	time.Sleep(3 * Redraw)
	if b.String() != before {
		t.Errorf("drawn while paused: %q", b.String()[len(before):])
	}
	resume()
	resume() // twice is once
	w.Freeze()
	after := b.String()
	w.Status("reconnecting")
	time.Sleep(2 * Redraw)
	if b.String() != after || w.Live() {
		t.Errorf("a status after Freeze: %q", b.String()[len(after):])
	}
}

func TestColourOnlyOnATerminal(t *testing.T) {
	on := New(&bytes.Buffer{}, Options{Terminal: true})
	if got := on.Prefix("kq: error: x"); got != "\x1b[31;1mkq: error:\x1b[0m x" {
		t.Errorf("Prefix %q", got)
	}
	if got := on.Prefix("kq: connected"); got != "kq: connected" {
		t.Errorf("a step line was painted: %q", got)
	}
	for _, o := range []Options{{Terminal: false}, {Terminal: true, NoColor: true}} {
		if got := New(&bytes.Buffer{}, o).Prefix("kq: warning: x"); got != "kq: warning: x" {
			t.Errorf("%+v: %q", o, got)
		}
	}
	env := map[string]string{"NO_COLOR": "1"}
	if !NoColor(func(k string) string { return env[k] }) {
		t.Error("NO_COLOR=1 ignored")
	}
	env = map[string]string{"TERM": "xterm"}
	if NoColor(func(k string) string { return env[k] }) || !IsTerminal(true, func(k string) string { return env[k] }) {
		t.Error("colour or the terminal off without NO_COLOR or TERM=dumb")
	}
	env = map[string]string{"TERM": "dumb"}
	if IsTerminal(true, func(k string) string { return env[k] }) || IsTerminal(false, os.Getenv) {
		t.Error("TERM=dumb, or no tty, taken for a terminal")
	}
}

func TestStatusSinceCountsFromThen(t *testing.T) {
	var b syncBuf
	w := New(&b, Options{Terminal: true, NoColor: true})
	w.StatusSince("job 7 pending (Priority), waited", time.Now().Add(-90*time.Second))
	w.Status("")
	if out := b.String(); !strings.Contains(out, "waited (90.") {
		t.Errorf("the clock does not count from the submission: %q", out)
	}
}
