package launcher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/kq-dev/kq/launcher/forward"
	"github.com/kq-dev/kq/launcher/remote"
	"github.com/kq-dev/kq/launcher/sshx"
)

// Dead-link detection defaults, as profile keepalive and keepalive_count.
const (
	DefaultKeepalive      = 5 * time.Second
	DefaultKeepaliveCount = 3
	reconnectFirst        = 500 * time.Millisecond
	reconnectCap          = 8 * time.Second
	// frontendQuitGrace is how long a kernel's end waits for the frontend
	// to quit by itself before it is reported as the kernel's death.
	frontendQuitGrace = 3 * time.Second
)

// monitor watches the session while the frontend runs: the kernel's death
// ends it (exit 7); a dead link or a lost server session leads to a
// reconnect that keeps the local ports; a reconnect that cannot succeed
// ends the session with its reason.
func (s *session) monitor(ctx context.Context, cancel context.CancelCauseFunc) {
	for {
		why, died := s.waitTrouble(ctx)
		switch {
		case died:
			// A frontend that asked the kernel to shut down (exit in an
			// --existing jupyter console) quits right after: that is its
			// end, not a death to report.
			select {
			case <-ctx.Done():
			case <-time.After(s.deathGrace):
				cancel(errKernelDied)
			}
			return
		case ctx.Err() != nil:
			return
		}
		if err := s.reconnect(ctx, why); err != nil {
			if ctx.Err() == nil { // not merely told to stop
				s.linkEnded.Store(true)
				cancel(err)
			}
			return
		}
	}
}

// waitTrouble waits until the live link dies, the server ends kq's
// session, or the kernel dies (died), or ctx ends.
func (s *session) waitTrouble(ctx context.Context) (why error, died bool) {
	l := s.now()
	var diedC, lost <-chan struct{}
	if l.hold != nil {
		diedC, lost = l.hold.Died(), l.hold.Done()
	}
	select {
	case <-ctx.Done():
		return nil, false
	case <-diedC:
		return nil, true
	case <-l.watch.Dead():
		return l.watch.Err(), false
	case <-lost:
		if l.hold.EndedByDeath() {
			return nil, true
		}
		return errors.New("the server ended kq's session"), false
	}
}

// reconnect re-dials the whole chain with capped, jittered backoff and
// takes hold of the kernel again, keeping the local listeners (and so the
// frontend's ports). Authentication and host-key failures are not retried;
// after linger the kernel has stopped itself, so kq stops trying.
func (s *session) reconnect(ctx context.Context, why error) error {
	lost := time.Now()
	s.log.always("connection to %s lost (%v); reconnecting", s.hostAlias(), why)
	old := s.now()
	old.ch.Close()
	s.fw.DropConnections()
	if old.hold != nil {
		go old.hold.Close() // its session is dead; do not wait for it
	}
	backoff := reconnectFirst
	for attempt := 1; ; attempt++ {
		if err := s.tooLate(lost); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(backoff/2 + rand.N(backoff)):
		}
		backoff = min(backoff*2, reconnectCap)
		done, err := s.redial(ctx, attempt, lost)
		if done || err != nil {
			return err
		}
	}
}

// tooLate ends the reconnects once linger has passed since the link was
// lost: the server has stopped the kernel by then (unless kept).
func (s *session) tooLate(lost time.Time) error {
	limit, p := s.o.Profile.Linger, s.o.Profile
	if limit <= 0 || time.Since(lost) <= limit {
		return nil
	}
	if s.k.id != "" && (p.Keep || s.o.Attach != nil) {
		return withKind(ErrKernel, fmt.Sprintf("a kept kernel (--keep, --detach) is still there: kq attach %s %s once the link is back",
			p.Name, s.k.id), fmt.Errorf("no connection to %s for %s; giving up", s.hostAlias(), since(lost)))
	}
	return withKind(ErrKernel, "the server stops a kernel no kq has held for linger; start a new session",
		fmt.Errorf("no connection to %s for %s, longer than linger (%s): the kernel is gone", s.hostAlias(), since(lost), limit))
}

// redial makes one attempt: dial the chain, take hold of the kernel again,
// and swap both in at once. done is true when the session is back; an
// error ends the reconnects.
func (s *session) redial(ctx context.Context, attempt int, lost time.Time) (done bool, err error) {
	ch, err := sshx.Dial(ctx, s.auth, s.hops)
	if err != nil {
		if errors.Is(err, ErrAuth) || errors.Is(err, ErrHostKey) || errors.Is(err, ErrInterrupted) {
			return false, err
		}
		s.log.detail("reconnect attempt %d: %v", attempt, err)
		return false, nil
	}
	var h *remote.Hold
	if s.k.id != "" {
		if h, err = s.reattach(ctx, ch); err != nil {
			ch.Close()
			if errors.Is(err, remote.ErrGone) {
				return false, withKind(ErrKernel, "", fmt.Errorf("reconnected to %s after %s, but the kernel is gone", s.hostAlias(), since(lost)))
			}
			s.log.detail("reconnect attempt %d: %v", attempt, err)
			return false, nil
		}
	}
	s.setChain(ch, h)
	s.fw.SetDialer(forward.SSH{Client: ch.Host()})
	s.log.always("reconnected to %s in %s", s.hostAlias(), since(lost))
	return true, nil
}

// reattachTimeout bounds taking hold of the kernel again on a fresh
// connection, which may die as soon as it is made.
const reattachTimeout = 30 * time.Second

// reattach holds the kernel again over ch. The connection is closed if
// that takes longer than reattachTimeout or ctx ends, which is what ends
// every wait on it (opening the session among them).
func (s *session) reattach(ctx context.Context, ch *sshx.Chain) (*remote.Hold, error) {
	actx, acancel := context.WithTimeout(ctx, reattachTimeout)
	defer acancel()
	stop := context.AfterFunc(actx, func() { ch.Close() })
	rk, err := remote.Attach(actx, remote.SSH{Client: ch.Host()}, s.k.rt, s.k.id)
	if !stop() { // the connection was closed under it
		if rk != nil {
			rk.Close()
		}
		return nil, fmt.Errorf("take hold of the kernel again: %w", context.Cause(actx))
	}
	if rk != nil && s.job != nil {
		rk.OnSched(s.job.update) // the job's state keeps coming on the new hold
	}
	return rk, err
}
