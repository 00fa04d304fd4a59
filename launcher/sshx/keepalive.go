package sshx

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// errLinkDead is wrapped by the errors of a link that stopped answering
// keepalives, so that a caller can tell a dead link from other failures.
var errLinkDead = errors.New("no answer to keepalives")

// keepalive sends a keepalive request every interval, each with its own
// timeout (an x/crypto request blocks for ever on a dead link), and
// returns errLinkDead once count in a row are unanswered: a silent link is
// found within interval × (count + 1). It returns nil when ctx ends.
func keepalive(ctx context.Context, c *ssh.Client, interval time.Duration, count int) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		answered := make(chan error, 1)
		go func() {
			// OpenSSH answers an unknown request with a failure: that is an
			// answer, and all that counts.
			_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		timer := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case err := <-answered:
			timer.Stop()
			if err != nil {
				return fmt.Errorf("%w: %w", errLinkDead, err)
			}
			misses = 0
		case <-timer.C:
			misses++
			if misses >= count {
				return errLinkDead
			}
		}
	}
}

// LinkWatch sends keepalives on every connection of a chain from the
// moment it is dialled, not only while the frontend runs, so that a
// silently dead link (Wi-Fi gone, lid closed, no RST) is known at every
// step: the kernel's start, the frontend's run, and the teardown. Each hop
// gets its own keepalives and timers, so a dead link to a jump host is
// found by the jump host's own settings. Once any hop is found dead the
// watch closes the chain, which ends every wait on it (channel opens,
// sessions, the remote protocol, relays) at once.
type LinkWatch struct {
	ch       *Chain
	interval time.Duration // the host's, for Answers
	count    int
	dead     chan struct{} // closed once the link is found dead
	err      error         // why; written before dead is closed
	cancel   context.CancelFunc
	done     chan struct{}
}

// Keepalive is one hop's keepalive timing: a request every Interval,
// Count unanswered in a row make the hop dead.
type Keepalive struct {
	Interval time.Duration
	Count    int
}

// WatchLink watches every hop of ch with the same timing.
func WatchLink(ch *Chain, interval time.Duration, count int) *LinkWatch {
	return WatchChain(ch, []Keepalive{{interval, count}})
}

// WatchChain starts keepalives on each connection of ch, per[i] for
// hop i (the last entry serves hops beyond per). Stop ends them.
func WatchChain(ch *Chain, per []Keepalive) *LinkWatch {
	host := per[len(per)-1]
	ctx, cancel := context.WithCancel(context.Background())
	w := &LinkWatch{ch: ch, interval: host.Interval, count: host.Count, dead: make(chan struct{}),
		cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	var once sync.Once
	for i, c := range ch.clients {
		k := per[min(i, len(per)-1)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := keepalive(ctx, c, k.Interval, k.Count); err != nil {
				once.Do(func() {
					w.err = fmt.Errorf("%s: %w", ch.name(i), err)
					close(w.dead)
					cancel()
					ch.Close()
				})
			}
		}()
	}
	go func() { wg.Wait(); close(w.done) }()
	return w
}

// Dead is closed once the link is found dead (and its chain closed).
func (w *LinkWatch) Dead() <-chan struct{} { return w.dead }

// Err is why the link is dead, wrapping errLinkDead. It is set only once
// Dead is closed; read it after that.
func (w *LinkWatch) Err() error { return w.err }

// Stop ends the keepalives; the connection stays as it is.
func (w *LinkWatch) Stop() {
	w.cancel()
	<-w.done
}

// Answers asks the link for one answer now. It waits interval × count at
// most, less when the watch finds the link dead first, and returns an
// error wrapping errLinkDead when no answer came.
func (w *LinkWatch) Answers() error {
	answered := make(chan error, 1)
	go func() {
		_, _, err := w.ch.Host().SendRequest("keepalive@openssh.com", true, nil)
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
