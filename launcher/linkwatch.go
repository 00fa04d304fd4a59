package launcher

import (
	"context"
	"fmt"
	"sync"

	"github.com/kq-dev/kq/launcher/sshx"
)

// setChain makes ch the session's connection and starts watching it; the
// previous connection's watch stops.
func (s *session) setChain(ch *sshx.Chain) {
	interval, count := s.keepaliveSettings()
	w := sshx.WatchLink(ch, interval, count)
	s.mu.Lock()
	old := s.watch
	s.ch, s.watch = ch, w
	s.mu.Unlock()
	if old != nil {
		old.Stop()
	}
}

// link is the current connection's watch; nil before the first dial.
func (s *session) link() *sshx.LinkWatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watch
}

// closeChain stops watching the current connection and closes it.
func (s *session) closeChain() error {
	if w := s.link(); w != nil {
		w.Stop()
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
		case <-w.Dead():
			s.linkEnded.Store(true)
			cancel(s.deadLinkError(w.Err()))
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
// asking it once per session (see sshx.LinkWatch.Answers for the bound). On a
// dead link it closes the connection, so that nothing in the teardown
// waits on it, and says so in one line, unless the link's failure already
// ended the session with its own error.
func (s *session) linkDeadAtEnd() bool {
	s.endCheck.Do(func() {
		w := s.link()
		if w == nil {
			return
		}
		err := w.Answers()
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
	case <-w.Dead():
		return s.deadLinkError(w.Err())
	default:
		return nil
	}
}
