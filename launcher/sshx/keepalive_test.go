package sshx

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher/internal/sshtest"
)

// TestLinkWatch: on a link that stops answering, the watch finds it dead
// within interval × (count + 1) and closes the connection, and a question
// at the end is answered "dead" within interval × count; a live link
// answers.
func TestLinkWatch(t *testing.T) {
	const interval, count = 100 * time.Millisecond, 2
	const slack = 5 * time.Second
	t.Run("dead", func(t *testing.T) {
		c := sshtest.Dead(t, false)
		w := WatchLink(newChain(c), interval, count)
		defer w.Stop()
		select {
		case <-w.dead:
		case <-time.After(interval*(count+1) + slack):
			t.Fatal("dead link not found")
		}
		if !errors.Is(w.err, errLinkDead) {
			t.Fatalf("err = %v", w.err)
		}
		closed := make(chan error, 1)
		go func() { closed <- c.Wait() }()
		select {
		case <-closed:
		case <-time.After(slack):
			t.Fatal("the watch did not close the dead connection")
		}
	})
	t.Run("answers dead", func(t *testing.T) {
		c := sshtest.Dead(t, false)
		w := WatchLink(newChain(c), time.Hour, count) // no keepalive of its own yet
		defer w.Stop()
		w.interval = interval
		t0 := time.Now()
		if err := w.Answers(); !errors.Is(err, errLinkDead) {
			t.Fatalf("Answers() = %v on a dead link", err)
		}
		if d := time.Since(t0); d > interval*count+slack {
			t.Fatalf("Answers() took %s", d)
		}
	})
	t.Run("answers alive", func(t *testing.T) {
		c := sshtest.Dead(t, true)
		w := WatchLink(newChain(c), interval, count)
		defer w.Stop()
		if err := w.Answers(); err != nil {
			t.Fatalf("Answers() = %v on a live link", err)
		}
	})
}

// TestWatchChainJumpDead: a jump host that stops answering is found by
// its own keepalives, however slow the host's are, and named.
func TestWatchChainJumpDead(t *testing.T) {
	jump, host := sshtest.Dead(t, false), sshtest.Dead(t, true)
	ch := newChain(jump, host)
	ch.names = []string{"jump host login", "host gpu"}
	w := WatchChain(ch, []Keepalive{{100 * time.Millisecond, 2}, {time.Hour, 3}})
	defer w.Stop()
	select {
	case <-w.Dead():
	case <-time.After(5 * time.Second):
		t.Fatal("dead jump host not found")
	}
	if !errors.Is(w.Err(), errLinkDead) || !strings.Contains(w.Err().Error(), "jump host login") {
		t.Fatalf("err = %v", w.Err())
	}
}
