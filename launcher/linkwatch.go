package launcher

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kq-dev/kq/launcher/remote"
	"github.com/kq-dev/kq/launcher/sshx"
	"github.com/kq-dev/kq/profiles"
)

// keepaliveSettings picks the profile's values, else ssh config's
// ServerAliveInterval/CountMax, else the defaults.
func keepaliveSettings(p profiles.Profile, host profiles.SSHSettings) (interval time.Duration, count int) {
	interval, count = p.Keepalive, p.KeepaliveCount
	if interval <= 0 {
		interval = host.ServerAliveInterval
	}
	if interval <= 0 {
		interval = DefaultKeepalive
	}
	if count <= 0 {
		count = host.ServerAliveCountMax
	}
	if count <= 0 {
		count = DefaultKeepaliveCount
	}
	return interval, count
}

// watch starts keepalives on ch, from its dial on.
func (s *session) watch(ch *sshx.Chain) *sshx.LinkWatch {
	return watchChain(s.o.Profile, s.hops, ch)
}

// watchChain watches every hop of ch, each with its own keepalive
// settings (the profile's, else that hop's ServerAliveInterval and
// ServerAliveCountMax, else the defaults), so that a dead jump host link
// is found by the jump host's own timers.
func watchChain(p profiles.Profile, hops []profiles.SSHSettings, ch *sshx.Chain) *sshx.LinkWatch {
	per := make([]sshx.Keepalive, len(hops))
	for i, h := range hops {
		per[i].Interval, per[i].Count = keepaliveSettings(p, h)
	}
	return sshx.WatchChain(ch, per)
}

// setChain makes ch, watched, and hold the session's live link at once;
// the previous connection's watch stops.
func (s *session) setChain(ch *sshx.Chain, hold *remote.Hold) {
	old := s.cur.Swap(&link{ch: ch, watch: s.watch(ch), hold: hold})
	if old != nil {
		old.watch.Stop()
	}
}

// closeChain stops watching the live connection and closes it.
func (s *session) closeChain() error {
	l := s.now()
	l.watch.Stop()
	return l.ch.Close()
}

// endOnDeadLink ends the session, with the dead link as its cause, when
// the link dies before the monitor takes over: a start is not reconnected
// half-way. The returned function stops it (once; later calls are no-ops).
func (s *session) endOnDeadLink(ctx context.Context, cancel context.CancelCauseFunc) func() error {
	w := s.now().watch
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-w.Dead():
			s.linkEnded.Store(true)
			cancel(deadLinkError(s.hostAlias(), w.Err()))
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

// deadLinkError is the error of a session or an op ended by a dead link.
func deadLinkError(host string, err error) error {
	return withKind(errConnect, "the network to the host went away; a kernel kq started stops by itself after linger",
		fmt.Errorf("link to %s is dead: %w", host, err))
}

// linkDeadAtEnd says whether the link is dead now that the session ends,
// asking it once per session (see sshx.LinkWatch.Answers for the bound). On a
// dead link it closes the connection, so that nothing in the teardown
// waits on it, and says so in one line, unless the link's failure already
// ended the session with its own error.
func (s *session) linkDeadAtEnd() bool {
	s.endCheck.Do(func() {
		l := s.now()
		if l == nil {
			return
		}
		err := l.watch.Answers()
		if err == nil {
			return
		}
		s.deadAtEnd = true
		l.ch.Close()
		if !s.linkEnded.Load() {
			s.log.always("link to %s is dead (%v); %s", s.hostAlias(), err, s.deadLinkFate())
		}
	})
	return s.deadAtEnd
}

// deadLinkFate says what becomes of the kernel that kq lets go of without
// a word to the server.
func (s *session) deadLinkFate() string {
	p := s.o.Profile
	switch {
	case s.now().hold == nil:
		return "the kernel is left running"
	case s.ownsKernel():
		return fmt.Sprintf("the server stops the kernel by itself after linger (%s)", p.Linger)
	case s.kept():
		return fmt.Sprintf("the kernel stays up: kq attach %s %s once the link is back", p.Name, s.k.id)
	}
	return "the kernel is left as it was before kq attached"
}

// linkDied is the dead link's error once the live connection's watch has
// found it dead, else nil.
func (s *session) linkDied() error {
	l := s.now()
	if l == nil {
		return nil
	}
	return diedError(l.watch, s.hostAlias())
}

// diedError is the dead link's error once w has found it dead, else nil.
func diedError(w *sshx.LinkWatch, host string) error {
	select {
	case <-w.Dead():
		return deadLinkError(host, w.Err())
	default:
		return nil
	}
}
