// Package launcher runs one kq session from start to end: dial the host,
// start the kernel there, bring its connection file back, forward its ports
// over the one SSH connection, write a local connection file, check the
// kernel answers, run the frontend, and tear everything down on every way
// out. It wires together the packages below it (sshx: the transport,
// forward: the listeners, remote: the server's side, connfile, wire) and
// never imports the command or config layers: it gets a resolved profile
// and reports failures as errors of the kinds in errors.go.
package launcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kq-dev/kq/launcher/connfile"
	"github.com/kq-dev/kq/launcher/forward"
	"github.com/kq-dev/kq/launcher/remote"
	"github.com/kq-dev/kq/launcher/sshx"
	"github.com/kq-dev/kq/profiles"
)

// Timeouts of the steps that talk to the kernel. They are generous: a
// loaded GPU server can take seconds to import a kernel's modules.
const (
	shutdownTimeout = 3 * time.Second
	remoteOpTimeout = 20 * time.Second
	frontendGrace   = 5 * time.Second
)

// readyTimeout bounds the ready check (a variable for the tests).
var readyTimeout = 60 * time.Second

// verdictWait is how long a frontend that ended by itself waits for a
// ready check still running beside it (checkBeside).
const verdictWait = 5 * time.Second

// errKernelDied is the cause of a session ended by the kernel's death.
var errKernelDied = errors.New("kernel died")

// link is the session's connection, its keepalive watch and its hold on
// the kernel (nil for a kernel kq does not manage). A reconnect replaces
// all three at once, so no reader ever sees a hold on a dead connection
// paired with a live one.
type link struct {
	ch    *sshx.Chain
	watch *sshx.LinkWatch
	hold  *remote.Hold
}

// kernel is what the session knows of its kernel once it runs.
type kernel struct {
	info *connfile.Info
	// target is where forwards go, as seen from the host.
	target string
	// rt and id locate a kq kernel's files on the host; "" for others.
	rt, id string
	// acked: it was sent shutdown_request at the teardown, so it gets a
	// grace period to exit by itself before it is signalled.
	acked bool
	// stopping, when set, delivers the end of the stop begun beside
	// shutdown_request.
	stopping chan error
}

type session struct {
	o        Options
	log      reporter
	teardown []step

	hops []profiles.SSHSettings
	auth *sshx.Authenticator
	cur  atomic.Pointer[link]
	k    *kernel            // set once the kernel runs
	fw   *forward.Forwarder // set once the ports are forwarded
	job  *jobState          // a scheduler profile's batch job (slurm.go)
	// spec is the kernel this session started (or claimed); pending is
	// the hold on a claimed spare while it is taken (claim.go).
	spec    *remote.KernelSpec
	pending *pendingHold
	// control is the connection to the kernel's control port that the
	// teardown's shutdown_request takes (control.go), once ready.
	control *keptControl
	// forwarding is the forwarding probe's outcome (probe), waited for
	// before the first remote command; nil before the probe.
	forwarding func() error

	// preset and owner start the kernel with a kernel manager's key and
	// tag (kq kernel); stopWithin, when set, bounds stopping it at the end.
	preset     []byte
	owner      string
	stopWithin time.Duration
	// managedDir is the transient kernelspec's dir of a frontend that owns
	// its kernel.
	managedDir string
	// deathGrace is how long the kernel's end waits for the frontend to
	// quit by itself (frontendQuitGrace while one runs) before it is
	// reported as a death.
	deathGrace time.Duration

	// linkEnded: the link's failure ended the session, with its own error.
	linkEnded atomic.Bool
	// endCheck asks the link once, at the teardown, whether it is dead;
	// deadAtEnd is its answer.
	endCheck  sync.Once
	deadAtEnd bool
}

func newSession(o Options) *session {
	return &session{o: o, log: newReporter(o)}
}

// now is the live connection and hold.
func (s *session) now() *link { return s.cur.Load() }

type step struct {
	name string
	fn   func() error
}

// push registers a teardown step right after its resource is acquired;
// steps run in reverse order.
func (s *session) push(name string, fn func() error) {
	s.teardown = append(s.teardown, step{name, fn})
}

// unwind runs the teardown steps, last acquired first, and joins their
// errors rather than dropping any.
func (s *session) unwind() error { return s.unwindTo(0) }

// unwindTo runs the teardown steps registered after the first n (kq
// doctor stops its kernel and keeps the connection).
func (s *session) unwindTo(n int) error {
	var errs []error
	for i := len(s.teardown) - 1; i >= n; i-- {
		st := s.teardown[i]
		t0 := time.Now()
		err := st.fn()
		s.log.detail("teardown: %s in %s", st.name, since(t0))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", st.name, err))
		}
	}
	s.teardown = s.teardown[:min(n, len(s.teardown))]
	return errors.Join(errs...)
}

// Run runs one session, in the order of the design's steps. Whatever
// happens, everything it started is stopped and everything it wrote is
// removed before it returns (unless the kernel is to be kept). A teardown
// failure is reported on Stderr and joined into the error only when the
// session itself succeeded.
func Run(ctx context.Context, o Options) (res Result, err error) {
	if err := frontendInstalled(o); err != nil {
		return res, err
	}
	if o.Profile.OwnsKernel() && !o.Detach && o.Attach == nil {
		return runManaged(ctx, o)
	}
	s := newSession(o)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	front := s.watchSignals(cancel)
	defer front.close()
	defer func() { err = s.finish(ctx, res.FrontendRan, err) }()

	host, err := s.connect(ctx)
	if err != nil {
		return res, err
	}
	stopEarly := s.endOnDeadLink(ctx, cancel) // until the monitor takes over
	s.push("stop watching the start", stopEarly)
	if err := s.probe(ctx, host); err != nil {
		return res, err
	}
	if err := s.startKernel(ctx, host); err != nil {
		return res, err
	}
	if err := s.forwarding(); err != nil { // known by now; also without a remote op
		return res, err
	}
	if err := s.forwardPorts(ctx); err != nil {
		return res, err
	}
	localPath, err := s.writeLocalFile()
	if err != nil {
		return res, err
	}
	if o.Detach {
		return res, s.detached(ctx, host.Alias, localPath)
	}
	stopEarly()
	s.deathGrace = frontendQuitGrace
	s.startMonitor(ctx, cancel)
	verdict := s.checkBeside(ctx, cancel, host.Alias, localPath)
	s.rememberNextSpare(ctx) // warm: 1, for the next session's claim
	res, err = s.runFrontend(ctx, localPath, front)
	if verr := verdict(); err == nil && verr != nil {
		return res, verr // a frontend that ended before the check failed
	}
	return res, err
}

// detached checks that the kernel a --detach session leaves running
// answers, and says where it is.
func (s *session) detached(ctx context.Context, host, localPath string) error {
	if err := s.readyCheck(ctx, host, localPath); err != nil {
		return err
	}
	s.announceDetached()
	return nil
}

// finish tears the session down and decides its error: before the
// frontend, what failed while the link was dying failed because of it (the
// watch closes the connection under every step); an interrupted session
// says so.
func (s *session) finish(ctx context.Context, frontendRan bool, err error) error {
	if err != nil && !frontendRan && context.Cause(ctx) != ErrInterrupted {
		if lerr := s.linkDied(); lerr != nil {
			s.linkEnded.Store(true) // said by the error: not again at the teardown
			err = lerr
		}
	}
	if terr := s.unwind(); terr != nil {
		s.warn("cleanup: %v", terr)
		if err == nil && !frontendRan {
			err = terr
		}
	}
	if err != nil && context.Cause(ctx) == ErrInterrupted && !errors.Is(err, ErrInterrupted) {
		err = withKind(ErrInterrupted, "", fmt.Errorf("interrupted: %w", err))
	}
	return err
}

// endCause turns the reason a session was cancelled into its error.
func (s *session) endCause(ctx context.Context, err error) error {
	switch cause := context.Cause(ctx); {
	case cause == ErrInterrupted:
		return withKind(ErrInterrupted, "", err)
	case errors.Is(cause, errKernelDied) && s.jobEnd() != nil:
		return s.job.ended()
	case errors.Is(cause, errKernelDied):
		return withKind(ErrKernel, "the kernel process exited or was killed on the server (out of memory? check dmesg there)",
			fmt.Errorf("kernel died on %s", s.hostAlias()))
	case cause != nil:
		return cause
	}
	return err
}

func (s *session) hostAlias() string { return s.hops[len(s.hops)-1].Alias }

// ownsKernel says whether this session stops the kernel at its end.
func (s *session) ownsKernel() bool {
	if s.o.Attach != nil {
		return s.o.Attach.StopOnExit
	}
	return !s.o.Profile.Keep && !s.o.Detach
}

// kept says whether the kernel stays up after this session (--keep,
// --detach on a kernel this session started).
func (s *session) kept() bool {
	return s.o.Attach == nil && (s.o.Profile.Keep || s.o.Detach)
}
