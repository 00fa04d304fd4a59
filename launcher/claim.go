package launcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kq-dev/kq/launcher/connfile"
	"github.com/kq-dev/kq/launcher/remote"
	"github.com/kq-dev/kq/launcher/spares"
	"github.com/kq-dev/kq/launcher/wire"
	"github.com/kq-dev/kq/profiles"
)

// claimTimeout bounds claiming a remembered spare through its ports; a
// spare that is gone fails sooner (its forward is refused).
const claimTimeout = 5 * time.Second

// A warm session (warm: 1) whose previous session remembered the spare it
// left (spares) claims that spare in the kernel itself, through its
// ports, before any command runs on the host: the user's shell start-up
// and the op that takes a spare are off the way to the first cell. The
// hold on the kernel, which the watchdog and the teardown need, is taken
// in the background (pendingHold); the claim's own request has marked the
// kernel held meanwhile. A claim that fails leaves nothing and the
// session starts as usual.

// pendingHold is the hold on a claimed spare while op_claimed runs.
type pendingHold struct {
	done    chan struct{}
	h       *remote.Hold
	err     error
	install sync.Once
}

// claimable says whether this session may use a remembered spare: a warm
// kernel of its own that it stops at its end.
func (s *session) claimable(spec remote.KernelSpec) bool {
	return spec.Warm && spec.Preset == nil && spec.Job == nil && !spec.Keep && s.ownsKernel()
}

// spareKey names the remembered spare of this host, runtime dir and
// flavor of kernel.
func (s *session) spareKey(spec remote.KernelSpec) string {
	var hops []string
	for _, h := range s.hops {
		hops = append(hops, fmt.Sprintf("%s@%s:%d", h.User, h.HostName, h.Port))
	}
	return spares.Key(hops, spec.RuntimeDir, spec.Flavor())
}

// claimSpare claims the remembered spare, if there is one: its ports are
// forwarded and one silent execute_request takes it. On success the
// session has its kernel and forwards, and the hold is under way.
func (s *session) claimSpare(ctx context.Context, host profiles.SSHSettings, spec remote.KernelSpec) bool {
	e, ok := spares.Take(s.spareKey(spec))
	if !ok {
		return false
	}
	t0 := time.Now()
	info, err := connfile.Parse(e.JSON)
	if err != nil {
		return false
	}
	n := len(s.teardown)
	s.k = &kernel{info: info, target: forwardHost(s.kernelIP(), info.IP), rt: e.RT, id: e.ID}
	err = s.listen()
	if err == nil {
		err = s.claim(ctx, e)
	}
	if err != nil {
		s.log.detail("the spare remembered on %s could not be claimed (%v); starting as usual", host.Alias, err)
		// Its forwards go. A claim that timed out but took effect later
		// leaves the spare held by no one: its watchdog stops it after linger.
		_ = s.unwindTo(n)
		s.k, s.fw = nil, nil
		return false
	}
	s.holdLater(remote.Spare{RT: e.RT, ID: e.ID, Path: e.Path, JSON: e.JSON}, spec)
	s.log.step("kernel taken warm on %s in %s (a spare claimed in the kernel; a new one starts behind it; %s)",
		host.Alias, since(t0), e.Path)
	return true
}

// claim sends the claim through the forwarded shell port; a forward the
// server refuses (the spare is gone) ends it at once.
func (s *session) claim(ctx context.Context, e spares.Entry) error {
	cctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.fw.Failed():
		case <-cctx.Done():
		}
		cancel()
	}()
	sp := remote.Spare{RT: e.RT, ID: e.ID}
	reply, err := wire.Execute(cctx, fmt.Sprintf("tcp://127.0.0.1:%d", s.localPort("shell_port")), []byte(s.k.info.Key),
		"", remote.ClaimExpressions(sp))
	if err != nil {
		return err
	}
	exprs, _ := reply.Content["user_expressions"].(map[string]any)
	return remote.ClaimWon(exprs)
}

// holdLater takes the hold on the claimed spare in the background and
// registers the kernel's stop, which waits for it.
func (s *session) holdLater(sp remote.Spare, spec remote.KernelSpec) {
	p := &pendingHold{done: make(chan struct{})}
	s.pending = p
	r := s.runner()
	go func() {
		defer close(p.done)
		ctx, cancel := context.WithTimeout(context.Background(), remoteOpTimeout)
		defer cancel()
		p.h, p.err = remote.Claimed(ctx, r, sp, spec)
	}()
	k := s.k
	s.push("stop kernel", func() error {
		if h, err := s.awaitHold(context.Background()); h == nil && (err == nil || s.now().hold == nil) {
			return nil // never held: the watchdog stops it after linger
		}
		if k.stopping != nil {
			return <-k.stopping
		}
		return s.letGo(s.stopKernel(k))
	})
}

// awaitHold waits for the pending hold (if any) and makes it the
// session's hold, once.
func (s *session) awaitHold(ctx context.Context) (*remote.Hold, error) {
	p := s.pending
	if p == nil {
		return s.now().hold, nil
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	if p.err != nil {
		return nil, withKind(ErrKernel, "", fmt.Errorf("hold the spare claimed on %s: %w", s.hostAlias(), p.err))
	}
	p.install.Do(func() {
		l := *s.now()
		l.hold = p.h
		s.cur.Store(&l)
	})
	return p.h, nil
}

// heldClaim waits for the hold on a claimed spare before the monitor
// starts. A hold that failed other than by the kernel's death is taken
// again as after a lost link (a reconnect); false: the session ends.
func (s *session) heldClaim(ctx context.Context, cancel context.CancelCauseFunc) bool {
	_, err := s.awaitHold(ctx)
	switch {
	case err == nil:
		return true
	case ctx.Err() != nil:
		return false
	case !errors.Is(err, remote.ErrGone):
		if rerr := s.reconnect(ctx, err); rerr == nil {
			return true
		} else if ctx.Err() == nil {
			cancel(rerr)
		}
		return false
	}
	cancel(err)
	return false
}

// rememberNextSpare waits, while the session runs, for the spare that
// starts behind this session's kernel, and remembers it for the next
// session's claim.
func (s *session) rememberNextSpare(ctx context.Context) {
	if s.spec == nil || !s.claimable(*s.spec) {
		return
	}
	spec, key := *s.spec, s.spareKey(*s.spec)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := s.awaitHold(rctx); err != nil {
			return
		}
		sp, err := remote.NextSpare(rctx, s.runner(), spec)
		if err == nil {
			err = spares.Save(key, spares.Entry{RT: sp.RT, ID: sp.ID, Path: sp.Path, JSON: sp.JSON})
		}
		if err != nil && rctx.Err() == nil {
			s.log.detail("no spare remembered for the next session: %v", err)
		}
	}()
	s.push("stop waiting for the next spare", func() error {
		cancel()
		if !s.linkDeadAtEnd() { // else it ends by itself, with nothing to wait for
			<-done
		}
		return nil
	})
}
