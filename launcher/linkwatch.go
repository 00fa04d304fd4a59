package launcher

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// linkWatch sends keepalives on one connection from the moment it is
// dialled, not only while the frontend runs, so that a silently dead link
// (Wi-Fi gone, lid closed, no RST) is known at every step: the kernel's
// start, the frontend's run, and the teardown. Once the link is found dead
// the watch closes the connection, which ends every wait on it (channel
// opens, sessions, the remote protocol, relays) at once.
type linkWatch struct {
	ch       *chain
	interval time.Duration
	count    int
	dead     chan struct{} // closed once the link is found dead
	err      error         // why; written before dead is closed
	cancel   context.CancelFunc
	done     chan struct{}
}

// watchLink starts keepalives on ch's host connection.
func watchLink(ch *chain, interval time.Duration, count int) *linkWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &linkWatch{ch: ch, interval: interval, count: count, dead: make(chan struct{}),
		cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		if err := keepalive(ctx, ch.host(), interval, count); err != nil {
			w.err = err
			close(w.dead)
			ch.Close()
		}
	}()
	return w
}

// stop ends the keepalives; the connection stays as it is.
func (w *linkWatch) stop() {
	w.cancel()
	<-w.done
}

// answers asks the link for one answer now. It waits interval × count at
// most, less when the watch finds the link dead first, and returns an
// error wrapping errLinkDead when no answer came.
func (w *linkWatch) answers() error {
	answered := make(chan error, 1)
	go func() {
		_, _, err := w.ch.host().SendRequest("keepalive@openssh.com", true, nil)
		answered <- err
	}()
	t := time.NewTimer(w.interval * time.Duration(w.count))
	defer t.Stop()
	select {
	case err := <-answered:
		if err != nil {
			return fmt.Errorf("%w: %w", errLinkDead, err)
		}
		return nil
	case <-w.dead:
		return w.err
	case <-t.C:
		return fmt.Errorf("%w in %s", errLinkDead, w.interval*time.Duration(w.count))
	}
}

// setChain makes ch the session's connection and starts watching it; the
// previous connection's watch stops.
func (s *session) setChain(ch *chain) {
	interval, count := s.keepaliveSettings()
	w := watchLink(ch, interval, count)
	s.mu.Lock()
	old := s.watch
	s.ch, s.watch = ch, w
	s.mu.Unlock()
	if old != nil {
		old.stop()
	}
}

// link is the current connection's watch; nil before the first dial.
func (s *session) link() *linkWatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watch
}

// closeChain stops watching the current connection and closes it.
func (s *session) closeChain() error {
	if w := s.link(); w != nil {
		w.stop()
	}
	ch, _ := s.current()
	return ch.Close()
}

// endOnDeadLink ends the session, with the dead link as its cause, when
// the link dies before the monitor takes over: a start is not reconnected
// half-way. The returned function stops it (once; later calls are no-ops).
func (s *session) endOnDeadLink(ctx context.Context, cancel context.CancelCauseFunc) func() error {
	w := s.link()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-w.dead:
			s.linkEnded.Store(true)
			cancel(s.deadLinkError(w.err))
		case <-stop:
		case <-ctx.Done():
		}
	}()
	var once sync.Once
	return func() error {
		once.Do(func() { close(stop); <-done })
		return nil
	}
}

// deadLinkError is the error of a session ended by its dead link.
func (s *session) deadLinkError(err error) error {
	return withKind(errConnect, "the network to the host went away; a kernel kq started stops by itself after linger",
		fmt.Errorf("link to %s is dead: %w", s.hops[len(s.hops)-1].Alias, err))
}

// linkDeadAtEnd says whether the link is dead now that the session ends,
// asking it once per session (see linkWatch.answers for the bound). On a
// dead link it closes the connection, so that nothing in the teardown
// waits on it, and says so in one line, unless the link's failure already
// ended the session with its own error.
func (s *session) linkDeadAtEnd() bool {
	s.endCheck.Do(func() {
		w := s.link()
		if w == nil {
			return
		}
		err := w.answers()
		if err == nil {
			return
		}
		s.deadAtEnd = true
		ch, _ := s.current()
		ch.Close()
		if !s.linkEnded.Load() {
			s.log.always("link to %s is dead (%v); %s", s.hops[len(s.hops)-1].Alias, err, s.deadLinkFate())
		}
	})
	return s.deadAtEnd
}

// deadLinkFate says what becomes of the kernel that kq lets go of without
// a word to the server.
func (s *session) deadLinkFate() string {
	_, rk := s.current()
	p := s.o.Profile
	switch {
	case rk == nil:
		return "the kernel is left running"
	case s.ownsKernel():
		return fmt.Sprintf("the server stops the kernel by itself after linger (%s)", p.Linger)
	case s.o.Attach == nil && (p.Keep || s.o.Detach):
		return fmt.Sprintf("the kernel stays up: kq attach %s %s once the link is back", p.Name, s.id)
	}
	return "the kernel is left as it was before kq attached"
}

// orDeadLink is err, or the dead link's error when the link died under
// the step that returned it: a remote op cut short by the closed
// connection may return nothing and no error.
func (s *session) orDeadLink(err error) error {
	if lerr := s.linkDied(); lerr != nil {
		return lerr
	}
	return err
}

// linkDied is the dead link's error once the current connection's watch
// has found it dead, else nil.
func (s *session) linkDied() error {
	w := s.link()
	if w == nil {
		return nil
	}
	select {
	case <-w.dead:
		return s.deadLinkError(w.err)
	default:
		return nil
	}
}
