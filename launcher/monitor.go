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
)

// keepaliveSettings picks the profile's values, else ssh config's
// ServerAliveInterval/CountMax, else the defaults.
func (s *session) keepaliveSettings() (time.Duration, int) {
	p, host := s.o.Profile, s.hops[len(s.hops)-1]
	interval, count := p.Keepalive, p.KeepaliveCount
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

// monitor watches the session while the frontend runs: the kernel's death
// ends it (exit 7); a dead link or a lost server session leads to a
// reconnect that keeps the local ports; a reconnect that cannot succeed
// ends the session with its reason.
func (s *session) monitor(ctx context.Context, cancel context.CancelCauseFunc) {
	for {
		_, rk := s.current()
		w := s.link()
		var died, lost <-chan struct{}
		if rk != nil {
			died, lost = rk.Died(), rk.Done()
		}
		var why error
		select {
		case <-ctx.Done():
			return
		case <-died:
			cancel(errKernelDied)
			return
		case <-w.Dead():
			why = w.Err()
		case <-lost:
			if rk.EndedByDeath() {
				cancel(errKernelDied)
				return
			}
			why = errors.New("the server ended kq's session")
		}
		if ctx.Err() != nil {
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

// reconnect re-dials the whole chain with capped, jittered backoff and
// takes hold of the kernel again, keeping the local listeners (and so the
// frontend's ports). Authentication and host-key failures are not retried;
// after linger the kernel has stopped itself, so kq stops trying.
func (s *session) reconnect(ctx context.Context, why error) error {
	host := s.hops[len(s.hops)-1]
	lost := time.Now()
	s.log.always("connection to %s lost (%v); reconnecting", host.Alias, why)
	old, oldRK := s.current()
	old.Close()
	s.mu.Lock()
	fw := s.fw
	s.mu.Unlock()
	fw.DropConnections()
	if oldRK != nil {
		go oldRK.Close() // its session is dead; do not wait for it
	}
	backoff := reconnectFirst
	limit := s.o.Profile.Linger
	for attempt := 1; ; attempt++ {
		if limit > 0 && time.Since(lost) > limit {
			if s.id != "" && (s.o.Profile.Keep || s.o.Attach != nil) {
				return withKind(ErrKernel, fmt.Sprintf("a kept kernel (--keep, --detach) is still there: kq attach %s %s once the link is back",
					s.o.Profile.Name, s.id), fmt.Errorf("no connection to %s for %s; giving up", host.Alias, since(lost)))
			}
			return withKind(ErrKernel, "the server stops a kernel no kq has held for linger; start a new session",
				fmt.Errorf("no connection to %s for %s, longer than linger (%s): the kernel is gone", host.Alias,
					since(lost), limit))
		}
		wait := backoff/2 + rand.N(backoff)
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(wait):
		}
		backoff = min(backoff*2, reconnectCap)
		ch, err := sshx.Dial(ctx, s.auth, s.hops)
		if err != nil {
			if errors.Is(err, ErrAuth) || errors.Is(err, ErrHostKey) || errors.Is(err, ErrInterrupted) {
				return err
			}
			s.log.detail("reconnect attempt %d: %v", attempt, err)
			continue
		}
		var rk *remote.Hold
		if s.id != "" {
			rk, err = s.reattach(ctx, ch)
			if err != nil {
				ch.Close()
				if errors.Is(err, remote.ErrGone) {
					return withKind(ErrKernel, "", fmt.Errorf("reconnected to %s after %s, but the kernel is gone", host.Alias, since(lost)))
				}
				s.log.detail("reconnect attempt %d: %v", attempt, err)
				continue
			}
		}
		s.setChain(ch)
		if rk != nil {
			s.mu.Lock()
			s.rk = rk
			s.mu.Unlock()
		}
		fw.SetDialer(forward.SSH{Client: ch.Host()})
		s.log.always("reconnected to %s in %s", host.Alias, since(lost))
		return nil
	}
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
	rk, err := remote.Attach(actx, remote.SSH{Client: ch.Host()}, s.rt, s.id)
	if !stop() { // the connection was closed under it
		if rk != nil {
			rk.Close()
		}
		return nil, fmt.Errorf("take hold of the kernel again: %w", context.Cause(actx))
	}
	return rk, err
}
