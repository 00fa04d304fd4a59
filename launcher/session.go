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
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/kq-dev/kq/launcher/connfile"
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
	frontendGrace   = 5 * time.Second
)

type session struct {
	o        Options
	log      reporter
	teardown []step
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

// Run runs one session. Whatever happens, everything it started is stopped
// and everything it wrote is removed before it returns (unless the profile
// asks to keep the kernel). A teardown failure is reported on Stderr and
// joined into the error only when the session itself succeeded.
func Run(ctx context.Context, o Options) (res Result, err error) {
	s := &session{o: o, log: reporter{w: o.Stderr, quiet: o.Quiet, verbose: o.Verbose}}
	p := o.Profile

	// Nothing remote starts unless the frontend can run at all.
	argv := p.FrontendArgv("")
	if _, err := exec.LookPath(argv[0]); err != nil {
		return res, withKind(ErrUsage,
			"install it, or choose another frontend with --frontend or the profile's frontend: key",
			fmt.Errorf("frontend %q not found: %w", argv[0], errors.Unwrap(err)))
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	frontendStarted := make(chan *exec.Cmd, 1)
	sigDone := make(chan struct{})
	defer close(sigDone)
	go s.watchSignals(cancel, frontendStarted, sigDone)

	defer func() {
		terr := s.unwind()
		if terr != nil {
			s.log.warn("cleanup: %v", terr)
			if err == nil && !res.FrontendRan {
				err = terr
			}
		}
		if err != nil && context.Cause(ctx) == ErrInterrupted && !errors.Is(err, ErrInterrupted) {
			err = withKind(ErrInterrupted, "", fmt.Errorf("interrupted: %w", err))
		}
	}()

	// 1. Resolve every hop's SSH settings the way ssh would.
	hops, err := o.Resolver.ResolveChain(ctx, p.Host, p.Jump, p.SSHConfig)
	if err != nil {
		return res, withKind(ErrUsage, "", fmt.Errorf("resolve host %q: %w", p.Host, err))
	}
	for i, h := range hops {
		s.log.detail("%s, from %s", hopName(h, i, len(hops)), h.Source)
	}
	settings := hops[len(hops)-1]

	// 2. Dial the chain, and check the host forwards before starting
	// anything there.
	t0 := time.Now()
	pr := newPrompter(promptEnvFromOS(o.StdinIsTerminal))
	defer closePrompter(pr)
	auth := newAuthenticator(pr)
	auth.log = &s.log
	ch, err := dialChain(ctx, auth, hops)
	if err != nil {
		return res, err
	}
	s.push("close ssh connections", ch.Close)
	client := ch.host()
	if err := probeForwarding(client, hopName(settings, len(hops)-1, len(hops))); err != nil {
		return res, err
	}
	via := ""
	if len(hops) > 1 {
		var names []string
		for _, h := range hops[:len(hops)-1] {
			names = append(names, h.Alias)
		}
		via = " via " + strings.Join(names, ", ")
	}
	s.log.step("connected to %s@%s%s in %s", settings.User, settings.Address(), via, since(t0))

	// 3-4. Start the kernel and read its connection file back.
	t0 = time.Now()
	spec := KernelSpec{Command: p.Kernel, RuntimeDir: p.RuntimeDir, Workdir: p.Workdir, Env: p.Env, ID: uuid.NewString()}
	if p.KernelIP != "" && p.KernelIP != "auto" {
		spec.IP = p.KernelIP
	}
	rk, err := startKernel(ctx, client, spec)
	if err != nil {
		return res, fmt.Errorf("start kernel on %s: %w", settings.Alias, err)
	}
	if p.Keep {
		s.push("detach from kernel", func() error {
			err := rk.detach()
			s.log.always("kernel left running on %s: %s (pid %d)", settings.Alias, rk.Path, rk.PID)
			return err
		})
	}
	// Set by the shutdown_request step, which runs first: a kernel that
	// acknowledged it gets a grace period before signals, others do not.
	shutdownAcked := false
	if !p.Keep {
		s.push("stop kernel", func() error {
			if shutdownAcked {
				return rk.stop()
			}
			return rk.kill()
		})
	}
	info, err := connfile.Parse(rk.JSON)
	if err != nil {
		return res, withKind(ErrKernel, "the kernel wrote a connection file kq cannot use; it was stopped",
			fmt.Errorf("connection file %s on %s: %w", rk.Path, settings.Alias, err))
	}
	s.log.step("kernel started on %s in %s (pid %d, %s)", settings.Alias, since(t0), rk.PID, rk.Path)

	// 5. Forward the five ports.
	t0 = time.Now()
	kernelHost := "127.0.0.1"
	switch {
	case p.KernelIP == "auto":
		kernelHost = info.IP
	case p.KernelIP != "":
		kernelHost = p.KernelIP
	}
	var targets []Target
	for _, port := range info.Ports() {
		targets = append(targets, Target{Name: port.Name, Host: kernelHost, Port: port.Number})
	}
	fw, err := listenForwards(client, targets)
	if err != nil {
		return res, err
	}
	s.push("close forwards", fw.close)
	local := map[string]int{}
	var shown []string
	for _, f := range fw.forwards {
		local[f.Name] = f.Local.Port
		shown = append(shown, fmt.Sprintf("%s %d→%s", strings.TrimSuffix(f.Name, "_port"), f.Local.Port, f.Remote))
	}
	controlEndpoint := fmt.Sprintf("tcp://127.0.0.1:%d", local["control_port"])
	if !p.Keep {
		s.push("shutdown_request", func() error {
			sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer scancel()
			err := wire.Shutdown(sctx, controlEndpoint, []byte(info.Key))
			shutdownAcked = err == nil
			if err != nil {
				s.log.detail("shutdown_request not answered (%v); the kernel's process group is signalled instead", err)
			}
			return nil
		})
	}
	s.log.step("forwarded %d ports in %s (%s)", len(targets), since(t0), strings.Join(shown, ", "))

	// 6. The local connection file, once every listener is bound.
	data, err := info.Rewrite("127.0.0.1", local)
	if err != nil {
		return res, withKind(ErrKernel, "", fmt.Errorf("rewrite connection file: %w", err))
	}
	dir, err := LocalRuntimeDir()
	if err != nil {
		return res, err
	}
	name := fmt.Sprintf("kernel-kq-%s-%s.json", profiles.SafeName(p.Name), spec.ID[:8])
	localPath, warning, err := writeLocalFile(dir, name, data)
	if err != nil {
		return res, err
	}
	if warning != "" {
		s.log.warn("%s", warning)
	}
	s.push("remove local connection file", func() error { return ignoreNotExist(os.Remove(localPath)) })

	// 7. The kernel answers through the tunnel.
	t0 = time.Now()
	if err := s.readyCheck(ctx, rk, fw, local["shell_port"], []byte(info.Key), settings.Alias); err != nil {
		return res, err
	}
	s.log.step("ready in %s: %s", since(t0), localPath)

	// 8. The frontend.
	argv = p.FrontendArgv(localPath)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	if err := ctx.Err(); err != nil {
		return res, withKind(ErrInterrupted, "", fmt.Errorf("before frontend: %w", context.Cause(ctx)))
	}
	if err := cmd.Start(); err != nil {
		return res, withKind(ErrUsage, "", fmt.Errorf("start frontend %s: %w", argv[0], err))
	}
	res.FrontendRan = true
	frontendStarted <- cmd
	werr := cmd.Wait()
	res.ExitCode = exitCode(cmd.ProcessState, werr)
	if context.Cause(ctx) == ErrInterrupted {
		res.ExitCode = 130
	}
	return res, nil
}

// readyCheck sends a signed kernel_info_request through the tunnel and
// explains a failure by what else is known: a refused forward, a kernel
// that exited, or a kernel that is up but silent.
func (s *session) readyCheck(ctx context.Context, rk *remoteKernel, fw *forwarder, shellPort int, key []byte, host string) error {
	rctx, rcancel := context.WithTimeout(ctx, readyTimeout)
	defer rcancel()
	go func() { // a kernel that dies ends the wait at once
		select {
		case <-rk.done:
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
	if derr := fw.dialError(); derr != nil {
		hint := ""
		if strings.Contains(derr.Error(), "prohibited") {
			hint = "the server forbids TCP forwarding (AllowTcpForwarding no in sshd_config)"
		}
		return withKind(ErrForward, hint, fmt.Errorf("forward through %s: %w", host, derr))
	}
	select {
	case <-rk.done:
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

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "use of closed network connection") {
		return nil
	}
	return err
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

func (r reporter) warn(format string, args ...any) {
	fmt.Fprintf(r.w, "kq: warning: "+format+"\n", args...)
}

var _ Dialer = (*ssh.Client)(nil)
