package sshx

import (
	"context"
	"errors"
	"fmt"
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

// LinkWatch sends keepalives on one connection from the moment it is
// dialled, not only while the frontend runs, so that a silently dead link
// (Wi-Fi gone, lid closed, no RST) is known at every step: the kernel's
// start, the frontend's run, and the teardown. Once the link is found dead
// the watch closes the connection, which ends every wait on it (channel
// opens, sessions, the remote protocol, relays) at once.
type LinkWatch struct {
	ch       *Chain
	interval time.Duration
	count    int
	dead     chan struct{} // closed once the link is found dead
	err      error         // why; written before dead is closed
	cancel   context.CancelFunc
	done     chan struct{}
}

// WatchLink starts keepalives on ch's host connection, one every interval;
// count unanswered in a row make the link dead. Stop ends them.
func WatchLink(ch *Chain, interval time.Duration, count int) *LinkWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &LinkWatch{ch: ch, interval: interval, count: count, dead: make(chan struct{}),
		cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		if err := keepalive(ctx, ch.Host(), interval, count); err != nil {
			w.err = err
			close(w.dead)
			ch.Close()
		}
	}()
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
