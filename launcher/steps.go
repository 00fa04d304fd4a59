package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"runtime"
	"strings"
	"sync"
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

// dialed is a profile's host, reached: the resolved hops, the
// authenticator (kept for reconnects), the chain, and the terminal the
// prompts used, to close at the end.
type dialed struct {
	hops          []profiles.SSHSettings
	auth          *sshx.Authenticator
	ch            *sshx.Chain
	closeTerminal func()
}

// dialProfile resolves the profile's hop chain (design step 1) and dials
// it over one TCP connection (step 2).
func dialProfile(ctx context.Context, o Options, log reporter) (*dialed, error) {
	hops, err := resolveHops(ctx, o, log)
	if err != nil {
		return nil, err
	}
	d := newDialed(o, log, hops)
	d.ch, err = sshx.Dial(ctx, d.auth, hops)
	log.status("")
	if err != nil {
		d.closeTerminal()
		return nil, err
	}
	return d, nil
}

// resolveHops resolves the profile's hop chain; -v shows each hop's source.
func resolveHops(ctx context.Context, o Options, log reporter) ([]profiles.SSHSettings, error) {
	p := o.Profile
	hops, err := o.Resolver.ResolveChain(ctx, p.Host, p.Jump, p.SSHConfig)
	if err != nil {
		return nil, withKind(ErrUsage, "", fmt.Errorf("resolve host %q: %w", p.Host, err))
	}
	for i, h := range hops {
		log.detail("%s, from %s", sshx.HopName(h, i, len(hops)), h.Source)
		for _, n := range sshx.HopNotes(h) {
			log.detail("%s: %s", h.Alias, n)
		}
	}
	return hops, nil
}

// newDialed is the authenticator for hops, with the prompter o allows;
// the chain is the caller's to dial.
func newDialed(o Options, log reporter, hops []profiles.SSHSettings) *dialed {
	pr := sshx.NewPrompter(o.StdinIsTerminal)
	if o.NoPrompt {
		pr = sshx.NoPrompts()
	}
	d := &dialed{hops: hops, auth: sshx.NewAuthenticator(pr), closeTerminal: func() { sshx.ClosePrompter(pr) }}
	d.auth.Note = log.always
	d.auth.Verbose = log.detail
	d.auth.Phase, d.auth.OnPrompt = log.status, log.pause
	if log.verbose && !log.quiet {
		d.auth.ProxyStderr = log.w // a ProxyCommand's stderr as it comes
	}
	return d
}

// connect reaches the host and watches the link from then on.
func (s *session) connect(ctx context.Context) (profiles.SSHSettings, error) {
	t0 := time.Now()
	d, err := dialProfile(ctx, s.o, s.log)
	if err != nil {
		return profiles.SSHSettings{}, err
	}
	s.push("close terminal", func() error { d.closeTerminal(); return nil })
	s.hops, s.auth = d.hops, d.auth
	s.setChain(d.ch, nil)
	s.push("close ssh connections", s.closeChain)
	host := s.hops[len(s.hops)-1]
	via := ""
	if len(s.hops) > 1 {
		var names []string
		for _, h := range s.hops[:len(s.hops)-1] {
			names = append(names, h.Alias)
		}
		via = " via " + strings.Join(names, ", ")
	}
	s.log.step("connected to %s@%s%s in %s", host.User, host.Address(), via, since(t0))
	return host, nil
}

// probe stops before anything starts on a host that forbids forwarding.
// It overlaps with the next step: the probe's channel open goes out, and
// the first op's session channel is opened at the same time; the op's
// command is sent only once the probe's answer is in (the runner's Gate),
// so the round trip costs nothing and nothing starts on such a host.
func (s *session) probe(ctx context.Context, host profiles.SSHSettings) error {
	done := make(chan error, 1)
	client, name := s.now().ch.Host(), sshx.HopName(host, len(s.hops)-1, len(s.hops))
	go func() { done <- forward.Probe(ctx, client, name) }()
	s.forwarding = sync.OnceValue(func() error { return <-done })
	runtime.Gosched() // let the probe's open go out first: its answer comes first
	return nil
}

// startKernel starts the kernel, or finds the one to attach to (design
// steps 3 and 4), registers how the session lets go of it, and reads its
// connection file.
func (s *session) startKernel(ctx context.Context, host profiles.SSHSettings) error {
	t0 := time.Now()
	var data []byte
	var where string
	var err error
	k := &kernel{}
	if s.o.Attach != nil {
		data, where, err = s.attach(ctx, host, k)
	} else {
		data, where, err = s.start(ctx, host, k)
	}
	if err != nil {
		return err
	}
	if s.k != nil { // a remembered spare, claimed in the kernel
		return nil
	}
	if k.info, err = connfile.Parse(data); err != nil {
		hint := ""
		if s.ownsKernel() {
			hint = "the kernel wrote a connection file kq cannot use; it was stopped"
		}
		return withKind(ErrKernel, hint, fmt.Errorf("connection file %s on %s: %w", where, host.Alias, err))
	}
	k.target = forwardHost(s.kernelIP(), k.info.IP)
	s.k = k
	if h := s.now().hold; h != nil {
		how := map[bool]string{true: "attached", false: "started"}[s.o.Attach != nil]
		if h.Warm {
			how = "taken warm (a spare; a new one starts behind it)"
		}
		s.log.step("kernel %s on %s in %s (pid %d, %s)", how, host.Alias, since(t0), h.PID, h.Path)
	}
	return nil
}

// kernelIP is where the kernel listens as seen from the host: the
// profile's kernel_ip, or for an attach --ip, else what its file says.
func (s *session) kernelIP() string {
	ip := s.o.Profile.KernelIP
	if ip == "" && s.o.Profile.Scheduler != "" {
		ip = "auto" // the node's address, in the file the job's kernel wrote
	}
	if a := s.o.Attach; a != nil {
		switch {
		case a.IP != "":
			ip = a.IP
		case ip == "":
			ip = "auto" // an existing kernel listens where its file says
		}
	}
	return ip
}

// start starts a new kq kernel and holds it.
func (s *session) start(ctx context.Context, host profiles.SSHSettings, k *kernel) ([]byte, string, error) {
	spec := newKernelSpec(s.o.Profile, uuid.NewString())
	spec.Keep = spec.Keep || s.o.Detach
	spec.Preset, spec.Owner = s.preset, s.owner
	if err := s.addJob(&spec); err != nil {
		return nil, "", err
	}
	s.spec = &spec
	if s.claimable(spec) && s.claimSpare(ctx, host, spec) {
		return nil, "", nil
	}
	s.log.detail("remote: %s on %s, op start (kq's program on its stdin)", remote.Command, host.Alias)
	s.log.status("starting the kernel on %s, waiting for its connection file", host.Alias)
	h, err := remote.Start(ctx, s.runner(), spec)
	s.log.status("")
	if err != nil && s.forwarding != nil && s.forwarding() != nil {
		return nil, "", s.forwarding() // refused before anything started
	}
	if err != nil {
		return nil, "", s.startError(fmt.Errorf("start kernel on %s: %w", host.Alias, err))
	}
	// A warm spare, or a batch job kernel the manager had before (remote.sh's
	// adopt_job): the kernel is the one the file names.
	k.rt, k.id = path.Dir(h.Path), kernelID(h.Path, spec.ID)
	s.hold(h, k)
	return h.JSON, h.Path, nil
}

// kernelID is the id in a kq connection file's name (a warm session's
// kernel is the spare's, not the one it asked for), else fallback.
func kernelID(file, fallback string) string {
	name := path.Base(file)
	if id, ok := strings.CutPrefix(strings.TrimSuffix(name, ".json"), "kernel-kq-"); ok && strings.HasSuffix(name, ".json") && id != "" {
		return id
	}
	return fallback
}

// attach finds the kernel kq attach names: a kq kernel is held like one
// this session started; another kernel's file is only read.
func (s *session) attach(ctx context.Context, host profiles.SSHSettings, k *kernel) ([]byte, string, error) {
	target, err := resolveAttach(ctx, s.now().ch, s.o.Profile.RuntimeDir, s.o.Attach)
	if err != nil {
		return nil, "", err
	}
	if target.kqID == "" {
		if s.ownsKernel() && target.path != "" {
			s.push("remove connection file", func() error { return s.removeRemote(target.path) })
		}
		return target.json, target.path, nil
	}
	h, err := remote.Attach(ctx, s.runner(), target.rt, target.kqID)
	if err != nil {
		return nil, "", fmt.Errorf("attach to kernel %s on %s: %w", target.kqID, host.Alias, err)
	}
	k.rt, k.id = target.rt, target.kqID
	s.hold(h, k)
	return h.JSON, h.Path, nil
}

// runner runs remote ops on the live connection.
func (s *session) runner() remote.Runner {
	return remote.SSH{Client: s.now().ch.Host(), Gate: s.forwarding}
}

// removeRemote removes another kernel's connection file at the end of a
// session that stopped it.
func (s *session) removeRemote(file string) error {
	if s.linkDeadAtEnd() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), remoteOpTimeout)
	defer cancel()
	return remote.Remove(ctx, s.runner(), file)
}

// hold makes h the session's hold and registers how it ends: the kernel
// stopped (a kernel this session owns), kept, or released.
func (s *session) hold(h *remote.Hold, k *kernel) {
	l := *s.now()
	l.hold = h
	s.cur.Store(&l)
	switch {
	case s.ownsKernel():
		s.push("stop kernel", func() error {
			if k.stopping != nil { // begun beside shutdown_request
				return <-k.stopping
			}
			return s.letGo(s.stopKernel(k))
		})
	case s.kept():
		s.push("leave kernel running", func() error { return s.letGo(s.keep) })
	default:
		s.push("release kernel", func() error {
			return s.letGo(func(h *remote.Hold) error { return h.Release(context.Background()) })
		})
	}
}

// stopKernel stops the kernel at the end, gracefully if it answered
// shutdown_request. Under stopWithin (kq kernel, whose manager escalates
// to SIGKILL soon), a stop that takes longer is left to the server's side,
// which finishes it by itself.
func (s *session) stopKernel(k *kernel) func(*remote.Hold) error {
	return func(h *remote.Hold) error {
		if s.stopWithin == 0 {
			return h.Stop(context.Background(), k.acked)
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.stopWithin)
		defer cancel()
		if err := h.Stop(ctx, k.acked); err != nil && ctx.Err() == nil {
			return err
		}
		return nil
	}
}

// letGo ends the live hold with how; on a dead link nothing is sent (the
// server's watchdog deals with the kernel as linger and keep say), and a
// kernel that died has nothing left to stop.
func (s *session) letGo(how func(*remote.Hold) error) error {
	h := s.now().hold
	switch {
	case s.linkDeadAtEnd():
		h.Abandon()
		return nil
	case h.HasDied():
		h.Close()
		return nil
	}
	if err := how(h); err != nil && !h.HasDied() {
		return err
	}
	return nil // a kernel that died meanwhile needs nothing more
}

// keep leaves a kept kernel running and says how to reach it again.
func (s *session) keep(h *remote.Hold) error {
	err := h.Detach(context.Background())
	if !s.o.Detach {
		p := s.o.Profile
		s.log.always("kernel %s left running on %s: %s (pid %d); reattach with: kq attach %s %s; stop with: kq stop %s %s",
			s.k.id, s.hostAlias(), h.Path, h.PID, p.Name, s.k.id, p.Name, s.k.id)
	}
	return err
}

// forwardPorts binds a local listener for each of the kernel's five ports
// (design step 5) and registers shutdown_request, which goes through them.
func (s *session) forwardPorts(ctx context.Context) error {
	t0, took := time.Now(), ""
	if s.fw == nil { // a claimed spare's are there already
		if err := s.listen(); err != nil {
			return err
		}
		took = " in " + since(t0).String()
	}
	if s.ownsKernel() {
		s.push("shutdown_request", func() error { s.shutdown(ctx); return nil })
	}
	var shown []string
	for _, f := range s.fw.Forwards() {
		shown = append(shown, fmt.Sprintf("%s %d→%s", strings.TrimSuffix(f.Name, "_port"), f.Local.Port, f.Remote))
	}
	s.log.step("forwarded %d ports%s (%s)", len(shown), took, strings.Join(shown, ", "))
	return nil
}

// listen binds the local listeners for the kernel's ports.
func (s *session) listen() error {
	var targets []forward.Target
	for _, port := range s.k.info.Ports() {
		targets = append(targets, forward.Target{Name: port.Name, Host: s.k.target, Port: port.Number,
			Socket: forward.KernelSocket(port.Name)})
	}
	fw, err := forward.Listen(forward.SSH{Client: s.now().ch.Host()}, targets)
	if err != nil {
		return err
	}
	s.fw = fw
	s.push("close forwards", func() error {
		s.linkDeadAtEnd() // a dead link is closed first: relays on it end at once
		return fw.Close()
	})
	fw.Prime(s.primeCounts())
	return nil
}

// primeCounts is how many connections to open ahead on each port
// (Forwarder.Prime): one for each of the frontend's, and on the shell
// port one more for the ready check (or the claim), on the control port
// one more for the kept control connection of a kernel this session stops.
func (s *session) primeCounts() map[string]int {
	counts := map[string]int{"shell_port": 2, "iopub_port": 1, "stdin_port": 1, "control_port": 1, "hb_port": 1}
	if s.ownsKernel() {
		counts["control_port"]++
	}
	return counts
}

// localPort is the local listener's port for a connection-file port name.
func (s *session) localPort(name string) int {
	for _, f := range s.fw.Forwards() {
		if f.Name == name {
			return f.Local.Port
		}
	}
	return 0
}

// shutdown asks the kernel to shut down on its control channel, on the
// connection kept open for it when it can be trusted (control.go). The
// hold is told to stop the kernel at the same moment, not after the reply:
// the server's side waits for the kernel to exit (shutdownTimeout, as long
// as the reply may take) before it signals the process group, so one
// round trip less ends the session.
func (s *session) shutdown(ctx context.Context) {
	kept := s.keptControl()
	if kept != nil {
		defer kept.Close()
	}
	if errors.Is(context.Cause(ctx), errKernelDied) || s.linkDeadAtEnd() {
		return // nobody to ask, or no way to ask
	}
	k := s.k
	k.acked = true // the server's side waits for it to take effect
	if h := s.now().hold; h != nil {
		k.stopping = make(chan error, 1)
		go func() { k.stopping <- s.letGo(s.stopKernel(k)) }()
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	endpoint, key := fmt.Sprintf("tcp://127.0.0.1:%d", s.localPort("control_port")), []byte(k.info.Key)
	var err error
	if kept != nil {
		err = kept.Shutdown(sctx, key)
	} else {
		err = wire.Shutdown(sctx, endpoint, key)
	}
	if err != nil {
		s.log.detail("shutdown_request not answered (%v); the kernel's process group is signalled once it has not exited", err)
	}
}

// writeLocalFile writes the local connection file (design step 6): the
// remote one with ip 127.0.0.1 and the local ports, once every listener is
// bound, in Jupyter's runtime dir.
func (s *session) writeLocalFile() (string, error) {
	local := map[string]int{}
	for _, f := range s.fw.Forwards() {
		local[f.Name] = f.Local.Port
	}
	data, err := s.k.info.Rewrite("127.0.0.1", local)
	if err == nil {
		data, err = thisKQ().stamp(data)
	}
	if err != nil {
		return "", withKind(ErrKernel, "", fmt.Errorf("rewrite connection file: %w", err))
	}
	dir, err := LocalRuntimeDir()
	if err != nil {
		return "", err
	}
	for _, n := range systemLiveness().removeStale(dir) {
		s.log.step("removed %s, left behind by a kq that is gone", n)
	}
	short := s.k.id
	if short == "" {
		short = uuid.NewString()
	}
	name := fmt.Sprintf("kernel-kq-%s-%s.json", profiles.SafeName(s.o.Profile.Name), short[:min(8, len(short))])
	localPath, warning, err := writeLocalFile(dir, name, data)
	if err != nil {
		return "", err
	}
	if warning != "" {
		s.warn("%s", warning)
	}
	s.push("remove local connection file", func() error { return ignoreNotExist(os.Remove(localPath)) })
	return localPath, nil
}

// readyCheck sends a signed kernel_info_request through the tunnel (design
// step 7) and explains a failure by what else is known: a refused
// forward, a kernel that exited, or a kernel that is up but silent.
func (s *session) readyCheck(ctx context.Context, host, localPath string) error {
	s.log.status("waiting for the kernel on %s to answer kernel_info", host)
	defer s.log.status("")
	return s.askReady(ctx, host, localPath)
}

// askReady is the ready check without the status line: beside a running
// frontend (checkBeside), the terminal is the frontend's.
func (s *session) askReady(ctx context.Context, host, localPath string) error {
	t0 := time.Now()
	if s.pending != nil {
		s.log.step("ready: the claim was answered: %s", localPath)
		s.keepControl()
		return nil // the claim's execute_reply came through these ports, signed
	}
	rctx, rcancel := context.WithTimeout(ctx, readyTimeout)
	defer rcancel()
	var ended <-chan struct{} // a kq kernel that dies ends the wait at once
	if h := s.now().hold; h != nil {
		ended = h.Died()
	}
	go func() { // so does a forward the server could not open
		select {
		case <-ended:
		case <-s.fw.Failed():
		case <-rctx.Done():
		}
		rcancel()
	}()
	_, err := wire.KernelInfo(rctx, fmt.Sprintf("tcp://127.0.0.1:%d", s.localPort("shell_port")), []byte(s.k.info.Key))
	if err == nil {
		s.log.step("ready in %s: %s", since(t0), localPath)
		s.keepControl()
		return nil
	}
	return s.notReady(ctx, host, ended, err)
}

// checkBeside runs the ready check while the frontend starts, rather
// than before it (the frontend's own start, and its first connections'
// round trips, overlap the check's): a check that fails ends the session
// with its error, frontend and all, as the kernel's death would. The
// returned verdict, asked once the frontend has ended, is the check's
// error: it waits at most verdictWait for a check still running, then
// cancels it (nil: the check passed or was cancelled, and the frontend's
// own end stands). The teardown ends a check still running before
// anything it uses goes.
func (s *session) checkBeside(ctx context.Context, cancel context.CancelCauseFunc, host, localPath string) (verdict func() error) {
	cctx, ccancel := context.WithCancel(ctx)
	finished := make(chan struct{})
	var result error // read after finished
	go func() {
		defer close(finished)
		err := s.askReady(cctx, host, localPath)
		if err != nil && cctx.Err() == nil {
			result = err
			cancel(err)
		}
	}()
	end := func() error { ccancel(); <-finished; return result }
	s.push("end the ready check", func() error { _ = end(); return nil })
	return func() error {
		t := time.NewTimer(verdictWait)
		defer t.Stop()
		select {
		case <-finished:
		case <-t.C:
		}
		return end()
	}
}

// notReady names why the kernel did not answer.
func (s *session) notReady(ctx context.Context, host string, ended <-chan struct{}, err error) error {
	if ctx.Err() != nil {
		return withKind(ErrInterrupted, "", fmt.Errorf("ready check: %w", context.Cause(ctx)))
	}
	if derr := s.fw.DialError(); derr != nil {
		hint := ""
		var oce *ssh.OpenChannelError
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

// announceDetached says where a --detach kernel is and how to reach it.
func (s *session) announceDetached() {
	h, p := s.now().hold, s.o.Profile
	s.log.always("kernel %s left running on %s: %s (pid %d); attach with: kq attach %s %s; stop with: kq stop %s %s",
		s.k.id, s.hostAlias(), h.Path, h.PID, p.Name, s.k.id, p.Name, s.k.id)
}

// startMonitor watches the session while the frontend runs: keepalives,
// reconnects, the kernel's death. The monitor stops before anything is
// torn down, so the teardown's own ending of the server session is not
// taken for a lost link.
func (s *session) startMonitor(ctx context.Context, cancel context.CancelCauseFunc) {
	mctx, mcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !s.heldClaim(mctx, cancel) {
			return
		}
		s.monitor(mctx, cancel)
	}()
	s.push("stop monitoring", func() error {
		mcancel()
		<-done
		return nil
	})
}

// runFrontend runs the frontend on the local file (design step 8); its
// exit code is the session's. Whatever ends the session first (the
// kernel's death, a link that never came back, SIGTERM) ends the frontend
// through the one owner of its end, front.
func (s *session) runFrontend(ctx context.Context, localPath string, front *frontend) (Result, error) {
	argv := s.o.Profile.FrontendArgv(localPath)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.o.Stdin, s.o.Stdout, s.o.Stderr
	return s.runProcess(ctx, cmd, front)
}

// runProcess runs the frontend process to its end; its exit code is the
// session's, unless the session ended for another reason.
func (s *session) runProcess(ctx context.Context, cmd *exec.Cmd, front *frontend) (Result, error) {
	var res Result
	argv := cmd.Args
	if ctx.Err() != nil {
		return res, s.endCause(ctx, fmt.Errorf("before frontend: %w", context.Cause(ctx)))
	}
	s.log.freeze() // the frontend shares the terminal from here on
	s.log.detail("frontend: %s", strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		return res, withKind(ErrUsage, "", fmt.Errorf("start frontend %s: %w", argv[0], err))
	}
	res.FrontendRan = true
	exited := front.started(ctx, cmd)
	werr := cmd.Wait()
	exited()
	res.ExitCode = exitCode(cmd.ProcessState, werr)
	switch cause := context.Cause(ctx); {
	case cause == ErrInterrupted:
		res.ExitCode = 130
	case cause != nil && ctx.Err() != nil:
		return res, s.endCause(ctx, cause)
	}
	return res, nil
}
