// Package launcher runs one kq session from start to end: dial the host,
// start the kernel there, bring its connection file back, forward its ports
// over the one SSH connection, write a local connection file, check the
// kernel answers, run the frontend, and tear everything down on every way
// out. It never imports the command or config layers: it gets a resolved
// profile and reports failures as errors of the kinds in errors.go.
package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/kq-dev/kq/launcher/connfile"
	"github.com/kq-dev/kq/launcher/forward"
	"github.com/kq-dev/kq/launcher/remote"
	"github.com/kq-dev/kq/launcher/sshx"
	"github.com/kq-dev/kq/launcher/wire"
	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

// Options configures one session.
type Options struct {
	// Profile is the resolved profile.
	Profile profiles.Profile
	// Resolver turns the profile's host into SSH settings.
	Resolver profiles.SSHResolver
	// Stdin, Stdout and Stderr are handed to the frontend; progress lines
	// go to Stderr.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// StdinIsTerminal says a terminal's Ctrl-C reaches the frontend itself.
	StdinIsTerminal bool
	// Quiet silences progress lines; Verbose adds detail to them.
	Quiet, Verbose bool
	// Signals delivers SIGINT, SIGTERM and SIGHUP; nil means none.
	Signals <-chan os.Signal
	// Attach opens the session on an existing kernel instead of starting
	// one; nil starts a new kernel.
	Attach *AttachTarget
	// Detach starts the kernel, says where it is, and returns without a
	// frontend; the kernel stays until kq stop.
	Detach bool
	// Warn prints a warning, so the caller's one printer says it; nil
	// prints "kq: warning: ..." on Stderr.
	Warn func(format string, args ...any)
}

// AttachTarget names an existing kernel for kq attach.
type AttachTarget struct {
	// Ref is a kq kernel id (or a unique prefix of it), a connection file
	// name in the remote runtime dir, or a remote path.
	Ref string
	// JSON is a connection file given directly (as %connect_info prints
	// it); it wins over Ref.
	JSON []byte
	// IP is where the kernel listens as seen from the host, when that is
	// not what its connection file says.
	IP string
	// StopOnExit stops the kernel when the session ends; by default a
	// session never stops a kernel it did not start.
	StopOnExit bool
}

// Result is how a session ended when it got as far as the frontend.
type Result struct {
	// FrontendRan is true once the frontend process started.
	FrontendRan bool
	// ExitCode is the frontend's exit code (128+N when killed by signal N).
	ExitCode int
}

// Timeouts of the steps that talk to the kernel. They are generous: a
// loaded GPU server can take seconds to import a kernel's modules.
const (
	readyTimeout    = 60 * time.Second
	shutdownTimeout = 3 * time.Second
	remoteOpTimeout = 20 * time.Second
	frontendGrace   = 5 * time.Second
)

// errKernelDied is the cause of a session ended by the kernel's death.
var errKernelDied = errors.New("kernel died")

type session struct {
	o        Options
	log      reporter
	teardown []step

	hops []profiles.SSHSettings
	auth *sshx.Authenticator

	mu            sync.Mutex
	shutdownAcked bool
	ch            *sshx.Chain
	rk            *remote.Hold // nil for a kernel kq does not manage
	fw            *forward.Forwarder
	watch         *sshx.LinkWatch // keepalives on ch, from its dial on
	// rt and id locate a kq kernel's files on the host, for reconnects.
	rt, id string

	// linkEnded: the link's failure ended the session, with its own error.
	linkEnded atomic.Bool
	// endCheck asks the link once, at the teardown, whether it is dead;
	// deadAtEnd is its answer.
	endCheck  sync.Once
	deadAtEnd bool
}

type step struct {
	name string
	fn   func() error
}

// push registers a teardown step right after its resource is acquired;
// steps run in reverse order.
func (s *session) push(name string, fn func() error) {
	s.teardown = append(s.teardown, step{name, fn})
}

func (s *session) unwind() error {
	var errs []error
	for i := len(s.teardown) - 1; i >= 0; i-- {
		st := s.teardown[i]
		if err := st.fn(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", st.name, err))
		}
	}
	s.teardown = nil
	return errors.Join(errs...)
}

// current returns the live connection and hold, which a reconnect swaps.
func (s *session) current() (*sshx.Chain, *remote.Hold) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch, s.rk
}

// Run runs one session. Whatever happens, everything it started is stopped
// and everything it wrote is removed before it returns (unless the kernel
// is to be kept). A teardown failure is reported on Stderr and joined into
// the error only when the session itself succeeded.
func Run(ctx context.Context, o Options) (res Result, err error) {
	s := &session{o: o, log: reporter{w: o.Stderr, quiet: o.Quiet, verbose: o.Verbose}}
	p := o.Profile

	// Nothing remote starts unless the frontend can run at all.
	if !o.Detach {
		argv := p.FrontendArgv("")
		if _, err := exec.LookPath(argv[0]); err != nil {
			return res, withKind(ErrUsage,
				"install it, or choose another frontend with --frontend or the profile's frontend: key",
				fmt.Errorf("frontend %q not found: %w", argv[0], errors.Unwrap(err)))
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	frontendStarted := make(chan *exec.Cmd, 1)
	sigDone := make(chan struct{})
	defer close(sigDone)
	go s.watchSignals(cancel, frontendStarted, sigDone)

	defer func() {
		// Before the frontend, what failed while the link was dying failed
		// because of it (the watch closes the connection under every step).
		if err != nil && !res.FrontendRan && context.Cause(ctx) != ErrInterrupted {
			if lerr := s.linkDied(); lerr != nil {
				s.linkEnded.Store(true) // said by the error: not again at the teardown
				err = lerr
			}
		}
		terr := s.unwind()
		if terr != nil {
			s.warn("cleanup: %v", terr)
			if err == nil && !res.FrontendRan {
				err = terr
			}
		}
		if err != nil && context.Cause(ctx) == ErrInterrupted && !errors.Is(err, ErrInterrupted) {
			err = withKind(ErrInterrupted, "", fmt.Errorf("interrupted: %w", err))
		}
	}()

	host, err := s.connect(ctx)
	if err != nil {
		return res, err
	}
	// Until the monitor takes over, a dead link ends the session.
	stopEarly := s.endOnDeadLink(ctx, cancel)
	s.push("stop watching the start", stopEarly)
	ch, _ := s.current()
	if err := forward.Probe(ctx, ch.Host(), sshx.HopName(host, len(s.hops)-1, len(s.hops))); err != nil {
		return res, err
	}

	// The kernel: started here, or an existing one.
	t0 := time.Now()
	info, kernelHost, err := s.kernel(ctx, host)
	if err != nil {
		return res, err
	}
	_, rk := s.current()
	if rk != nil {
		how := "started"
		if o.Attach != nil {
			how = "attached"
		}
		s.log.step("kernel %s on %s in %s (pid %d, %s)", how, host.Alias, since(t0), rk.PID, rk.Path)
	}

	// Forward the five ports.
	t0 = time.Now()
	var targets []forward.Target
	for _, port := range info.Ports() {
		targets = append(targets, forward.Target{Name: port.Name, Host: kernelHost, Port: port.Number})
	}
	fw, err := forward.Listen(forward.SSH{Client: ch.Host()}, targets)
	if err != nil {
		return res, err
	}
	s.mu.Lock()
	s.fw = fw
	s.mu.Unlock()
	s.push("close forwards", func() error {
		s.linkDeadAtEnd() // a dead link is closed first: relays on it end at once
		return fw.Close()
	})
	local := map[string]int{}
	var shown []string
	for _, f := range fw.Forwards() {
		local[f.Name] = f.Local.Port
		shown = append(shown, fmt.Sprintf("%s %d→%s", strings.TrimSuffix(f.Name, "_port"), f.Local.Port, f.Remote))
	}
	if s.ownsKernel() {
		controlEndpoint := fmt.Sprintf("tcp://127.0.0.1:%d", local["control_port"])
		s.push("shutdown_request", func() error {
			if errors.Is(context.Cause(ctx), errKernelDied) || s.linkDeadAtEnd() {
				return nil // nobody to ask, or no way to ask
			}
			sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer scancel()
			err := wire.Shutdown(sctx, controlEndpoint, []byte(info.Key))
			s.mu.Lock()
			s.shutdownAcked = err == nil
			s.mu.Unlock()
			if err != nil {
				s.log.detail("shutdown_request not answered (%v); the kernel's process group is signalled instead", err)
			}
			return nil
		})
	}
	s.log.step("forwarded %d ports in %s (%s)", len(targets), since(t0), strings.Join(shown, ", "))

	// The local connection file, once every listener is bound.
	data, err := info.Rewrite("127.0.0.1", local)
	if err == nil {
		data, err = thisKQ().stamp(data)
	}
	if err != nil {
		return res, withKind(ErrKernel, "", fmt.Errorf("rewrite connection file: %w", err))
	}
	dir, err := LocalRuntimeDir()
	if err != nil {
		return res, err
	}
	for _, n := range systemLiveness().removeStale(dir) {
		s.log.step("removed %s, left behind by a kq that is gone", n)
	}
	short := s.id
	if short == "" {
		short = uuid.NewString()
	}
	name := fmt.Sprintf("kernel-kq-%s-%s.json", profiles.SafeName(p.Name), short[:min(8, len(short))])
	localPath, warning, err := writeLocalFile(dir, name, data)
	if err != nil {
		return res, err
	}
	if warning != "" {
		s.warn("%s", warning)
	}
	s.push("remove local connection file", func() error { return ignoreNotExist(os.Remove(localPath)) })

	// The kernel answers through the tunnel.
	t0 = time.Now()
	if err := s.readyCheck(ctx, rk, fw, local["shell_port"], []byte(info.Key), host.Alias); err != nil {
		return res, err
	}
	s.log.step("ready in %s: %s", since(t0), localPath)

	if o.Detach {
		_, rk := s.current()
		s.log.always("kernel %s left running on %s: %s (pid %d); attach with: kq attach %s %s; stop with: kq stop %s %s",
			s.id, host.Alias, rk.Path, rk.PID, p.Name, s.id, p.Name, s.id)
		return res, nil
	}

	// While the frontend runs: keepalives, reconnects, the kernel's death.
	// The monitor stops before anything is torn down, so the teardown's own
	// ending of the server session is not taken for a lost link.
	stopEarly()
	mctx, mcancel := context.WithCancel(ctx)
	mdone := make(chan struct{})
	go func() {
		defer close(mdone)
		s.monitor(mctx, cancel)
	}()
	s.push("stop monitoring", func() error {
		mcancel()
		<-mdone
		return nil
	})

	// The frontend.
	argv := p.FrontendArgv(localPath)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	if err := ctx.Err(); err != nil {
		return res, s.endCause(ctx, fmt.Errorf("before frontend: %w", context.Cause(ctx)))
	}
	if err := cmd.Start(); err != nil {
		return res, withKind(ErrUsage, "", fmt.Errorf("start frontend %s: %w", argv[0], err))
	}
	res.FrontendRan = true
	frontendStarted <- cmd
	// A session that ends for another reason (the kernel died, the link
	// never came back) ends the frontend too.
	stopFrontend := context.AfterFunc(ctx, func() {
		if context.Cause(ctx) != ErrInterrupted {
			stopProcess(cmd, sigDone)
		}
	})
	defer stopFrontend()
	werr := cmd.Wait()
	res.ExitCode = exitCode(cmd.ProcessState, werr)
	switch cause := context.Cause(ctx); {
	case cause == ErrInterrupted:
		res.ExitCode = 130
	case cause != nil && ctx.Err() != nil:
		return res, s.endCause(ctx, cause)
	}
	return res, nil
}

// endCause turns the reason a session was cancelled into its error.
func (s *session) endCause(ctx context.Context, err error) error {
	switch cause := context.Cause(ctx); {
	case cause == ErrInterrupted:
		return withKind(ErrInterrupted, "", err)
	case errors.Is(cause, errKernelDied):
		return withKind(ErrKernel, "the kernel process exited or was killed on the server (out of memory? check dmesg there)",
			fmt.Errorf("kernel died on %s", s.hops[len(s.hops)-1].Alias))
	case cause != nil:
		return cause
	}
	return err
}

// connect resolves the chain and dials it.
func (s *session) connect(ctx context.Context) (profiles.SSHSettings, error) {
	p := s.o.Profile
	hops, err := s.o.Resolver.ResolveChain(ctx, p.Host, p.Jump, p.SSHConfig)
	if err != nil {
		return profiles.SSHSettings{}, withKind(ErrUsage, "", fmt.Errorf("resolve host %q: %w", p.Host, err))
	}
	s.hops = hops
	for i, h := range hops {
		s.log.detail("%s, from %s", sshx.HopName(h, i, len(hops)), h.Source)
	}
	host := hops[len(hops)-1]
	t0 := time.Now()
	pr := sshx.NewPrompter(s.o.StdinIsTerminal)
	s.push("close terminal", func() error { sshx.ClosePrompter(pr); return nil })
	s.auth = sshx.NewAuthenticator(pr)
	s.auth.Note = s.log.always
	ch, err := sshx.Dial(ctx, s.auth, hops)
	if err != nil {
		return host, err
	}
	s.setChain(ch)
	s.push("close ssh connections", s.closeChain)
	via := ""
	if len(hops) > 1 {
		var names []string
		for _, h := range hops[:len(hops)-1] {
			names = append(names, h.Alias)
		}
		via = " via " + strings.Join(names, ", ")
	}
	s.log.step("connected to %s@%s%s in %s", host.User, host.Address(), via, since(t0))
	return host, nil
}

// ownsKernel says whether this session stops the kernel at its end.
func (s *session) ownsKernel() bool {
	if s.o.Attach != nil {
		return s.o.Attach.StopOnExit
	}
	return !s.o.Profile.Keep && !s.o.Detach
}

// kernel starts the kernel or finds the one to attach to, and registers
// how the session lets go of it. It returns the connection info and the
// address to forward to, as seen from the host.
func (s *session) kernel(ctx context.Context, host profiles.SSHSettings) (*connfile.Info, string, error) {
	p := s.o.Profile
	ch, _ := s.current()
	kernelIP := p.KernelIP
	var data []byte
	var where string
	if a := s.o.Attach; a != nil {
		if a.IP != "" {
			kernelIP = a.IP
		} else if kernelIP == "" {
			kernelIP = "auto" // an existing kernel listens where its file says
		}
		target, err := resolveAttach(ctx, ch.Host(), p.RuntimeDir, a)
		if err != nil {
			return nil, "", err
		}
		if target.kqID != "" {
			rk, err := remote.Attach(ctx, remote.SSH{Client: ch.Host()}, target.rt, target.kqID)
			if err != nil {
				return nil, "", fmt.Errorf("attach to kernel %s on %s: %w", target.kqID, host.Alias, err)
			}
			s.hold(rk, target.rt, target.kqID)
			data, where = rk.JSON, rk.Path
		} else {
			data, where = target.json, target.path
			if s.ownsKernel() && target.path != "" {
				s.push("remove connection file", func() error {
					if s.linkDeadAtEnd() {
						return nil
					}
					ch, _ := s.current()
					octx, ocancel := context.WithTimeout(context.Background(), remoteOpTimeout)
					defer ocancel()
					return remote.Remove(octx, remote.SSH{Client: ch.Host()}, target.path)
				})
			}
		}
	} else {
		spec := newKernelSpec(p, uuid.NewString())
		spec.Keep = spec.Keep || s.o.Detach
		rk, err := remote.Start(ctx, remote.SSH{Client: ch.Host()}, spec)
		if err != nil {
			return nil, "", fmt.Errorf("start kernel on %s: %w", host.Alias, err)
		}
		s.hold(rk, path.Dir(rk.Path), spec.ID)
		data, where = rk.JSON, rk.Path
	}
	info, err := connfile.Parse(data)
	if err != nil {
		hint := ""
		if s.ownsKernel() {
			hint = "the kernel wrote a connection file kq cannot use; it was stopped"
		}
		return nil, "", withKind(ErrKernel, hint, fmt.Errorf("connection file %s on %s: %w", where, host.Alias, err))
	}
	return info, forwardHost(kernelIP, info.IP), nil
}

// hold records the session's hold on a kq kernel and how it ends: stopped
// (a kernel this session owns), detached (kept), or released.
func (s *session) hold(rk *remote.Hold, rt, id string) {
	s.mu.Lock()
	s.rk, s.rt, s.id = rk, rt, id
	s.mu.Unlock()
	switch {
	case s.ownsKernel():
		s.push("stop kernel", func() error {
			_, rk := s.current()
			if s.linkDeadAtEnd() {
				rk.Abandon()
				return nil
			}
			if rk.HasDied() {
				rk.Close()
				return nil
			}
			s.mu.Lock()
			acked := s.shutdownAcked
			s.mu.Unlock()
			return rk.Stop(context.Background(), acked)
		})
	case s.o.Attach == nil && (s.o.Profile.Keep || s.o.Detach):
		s.push("leave kernel running", func() error {
			_, rk := s.current()
			if s.linkDeadAtEnd() {
				rk.Abandon() // kept: the server leaves it up (its keep file)
				return nil
			}
			err := rk.Detach(context.Background())
			if !s.o.Detach {
				s.log.always("kernel %s left running on %s: %s (pid %d); reattach with: kq attach %s %s; stop with: kq stop %s %s",
					s.id, s.hops[len(s.hops)-1].Alias, rk.Path, rk.PID, s.o.Profile.Name, s.id, s.o.Profile.Name, s.id)
			}
			return err
		})
	default:
		s.push("release kernel", func() error {
			_, rk := s.current()
			if s.linkDeadAtEnd() {
				rk.Abandon()
				return nil
			}
			return rk.Release(context.Background())
		})
	}
}

// readyCheck sends a signed kernel_info_request through the tunnel and
// explains a failure by what else is known: a refused forward, a kernel
// that exited, or a kernel that is up but silent.
func (s *session) readyCheck(ctx context.Context, rk *remote.Hold, fw *forward.Forwarder, shellPort int, key []byte, host string) error {
	rctx, rcancel := context.WithTimeout(ctx, readyTimeout)
	defer rcancel()
	var ended <-chan struct{} // a kq kernel that dies ends the wait at once
	if rk != nil {
		ended = rk.Died()
	}
	go func() { // so does a forward the server could not open
		select {
		case <-ended:
			rcancel()
		case <-fw.Failed():
			rcancel()
		case <-rctx.Done():
		}
	}()
	_, err := wire.KernelInfo(rctx, fmt.Sprintf("tcp://127.0.0.1:%d", shellPort), key)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return withKind(ErrInterrupted, "", fmt.Errorf("ready check: %w", context.Cause(ctx)))
	}
	if derr := fw.DialError(); derr != nil {
		hint := ""
		var oce *ssh.OpenChannelError // the server's refusal, as forward keeps it
		if errors.As(derr, &oce) && oce.Reason == ssh.Prohibited {
			hint = "the server forbids TCP forwarding (AllowTcpForwarding no in sshd_config)"
		}
		return withKind(ErrForward, hint, fmt.Errorf("forward through %s: %w", host, derr))
	}
	select {
	case <-ended:
		return withKind(ErrKernel, "", fmt.Errorf("kernel on %s exited before answering", host))
	default:
	}
	return withKind(ErrKernel, "the kernel runs but does not answer; check kernel_ip and the kernel's log",
		fmt.Errorf("kernel on %s did not answer kernel_info_request: %w", host, err))
}

// watchSignals turns signals into cancellation before the frontend runs.
// Once it runs, a terminal's Ctrl-C has reached the frontend too (it shares
// our process group), so kq leaves SIGINT to it: jupyter console uses it to
// interrupt the kernel, and a frontend that quits ends the session. SIGTERM
// and SIGHUP end the frontend and the session.
func (s *session) watchSignals(cancel context.CancelCauseFunc, started <-chan *exec.Cmd, done <-chan struct{}) {
	var frontend *exec.Cmd
	for {
		select {
		case <-done:
			return
		case frontend = <-started:
		case sig, ok := <-s.o.Signals:
			if !ok {
				return
			}
			if frontend == nil {
				s.log.always("%s: stopping", sig)
				cancel(ErrInterrupted)
				continue
			}
			if sig == os.Interrupt {
				if !s.o.StdinIsTerminal {
					_ = frontend.Process.Signal(os.Interrupt)
				}
				continue
			}
			s.log.always("%s: stopping the frontend and the kernel", sig)
			cancel(ErrInterrupted)
			stopProcess(frontend, done)
		}
	}
}

// stopProcess asks p to terminate and kills it after a grace period.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}) {
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		_ = cmd.Process.Kill()
		return
	}
	go func() {
		t := time.NewTimer(frontendGrace)
		defer t.Stop()
		select {
		case <-t.C:
			_ = cmd.Process.Kill()
		case <-done:
		}
	}()
}

func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		if err != nil {
			return 1
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

func since(t time.Time) time.Duration {
	d := time.Since(t)
	if d > time.Second {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(100 * time.Microsecond)
}

func ignoreNotExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// reporter prints progress lines on stderr.
type reporter struct {
	w              io.Writer
	quiet, verbose bool
}

func (r reporter) step(format string, args ...any) {
	if !r.quiet {
		fmt.Fprintf(r.w, "kq: "+format+"\n", args...)
	}
}

func (r reporter) detail(format string, args ...any) {
	if r.verbose && !r.quiet {
		fmt.Fprintf(r.w, "kq: "+format+"\n", args...)
	}
}

func (r reporter) always(format string, args ...any) {
	fmt.Fprintf(r.w, "kq: "+format+"\n", args...)
}

// warn goes through Options.Warn when the caller gave one.
func (s *session) warn(format string, args ...any) {
	if s.o.Warn != nil {
		s.o.Warn(format, args...)
		return
	}
	s.log.warn(format, args...)
}

func (r reporter) warn(format string, args ...any) {
	fmt.Fprintf(r.w, "kq: warning: "+format+"\n", args...)
}
