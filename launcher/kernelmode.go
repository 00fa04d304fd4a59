package launcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/kq-dev/kq/launcher/connfile"
	"github.com/kq-dev/kq/launcher/forward"
)

// KernelOptions configures kq kernel: kq as the kernel a Jupyter kernel
// manager (jupyter_client, VS Code) launches from a kernelspec.
type KernelOptions struct {
	Options
	// ConnectionFile is the file the manager wrote: its five ports, which
	// kq binds here, and its key, which the remote kernel uses.
	ConnectionFile string
	// ParentPID is the manager's pid (JPY_PARENT_PID, else kq's parent at
	// start); its death stops the kernel as SIGTERM does. 0: not watched.
	ParentPID int
	// ManagedDir is ManagedDirEnv's value: the dir of the kq session whose
	// frontend launched this kernel, or "".
	ManagedDir string
}

// kernelStopWithin bounds stopping the remote kernel at SIGTERM: the
// manager escalates to SIGKILL soon after, and the server's side finishes
// the stop by itself.
const kernelStopWithin = 1500 * time.Millisecond

// RunKernel runs kq kernel: bind the manager's five ports here before any
// SSH work, connect without prompting, start the remote kernel with the
// manager's key on ports the remote side chooses, relay, and live exactly
// as long as the remote kernel. SIGINT interrupts the remote kernel;
// SIGTERM, SIGHUP or the manager's death stop it. It returns nil when told
// to stop or when the remote kernel exited (after the manager's
// shutdown_request that is the normal end; a manager sees a dead kernel
// by its process either way).
func RunKernel(ctx context.Context, ko KernelOptions) (err error) {
	info, err := readManagerFile(ko.ConnectionFile)
	if err != nil {
		return err
	}
	names, ports := portList(info)
	lns, err := forward.Bind(names, ports)
	if err != nil {
		return err
	}
	ko.StdinIsTerminal, ko.NoPrompt, ko.Detach, ko.Attach = false, true, false, nil
	if ko.Log != nil {
		ko.Log.Freeze() // a frontend may share the terminal: no status line
	}
	s := newSession(ko.Options)
	s.stopWithin = kernelStopWithin
	s.push("close listeners", func() error { closeAll(lns, s.fw); return nil })
	s.push("forget the session's pid file", announceToSession(ko.ManagedDir))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	served := false // from then on a teardown problem is only a warning
	defer func() { err = s.finish(ctx, served, err) }()
	stopWatch := s.stopOnSignal(cancel)
	err = s.startRemote(ctx, cancel, info)
	stopWatch()
	if err != nil {
		return err
	}
	s.serveManager(lns)
	s.watchFinalShutdown(ctx) // a job's allocation ends with a final shutdown
	served = true
	s.startMonitor(ctx, cancel)
	return s.waitKernel(ctx, cancel, ko.ParentPID)
}

// stopOnSignal ends the start when the manager gives up on it (SIGTERM,
// SIGHUP) or dies, so that kq still exits within its bound; SIGINT before
// the kernel runs has nothing to interrupt. The returned func stops the
// watch before waitKernel takes the signals over.
func (s *session) stopOnSignal(cancel context.CancelCauseFunc) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case sig, ok := <-s.o.Signals:
				if !ok {
					return
				}
				if sig != os.Interrupt {
					s.log.detail("%s while the kernel starts: stopping", sig)
					cancel(ErrInterrupted)
					return
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}

// readManagerFile reads the manager's connection file; an ipc transport,
// an unknown scheme or a bad port is refused with the field named.
func readManagerFile(path string) (*connfile.Info, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, withKind(ErrUsage, "", fmt.Errorf("read connection file: %w", err))
	}
	info, err := connfile.Parse(data)
	if err != nil {
		return nil, withKind(ErrUsage, "", fmt.Errorf("connection file %s: %w", path, err))
	}
	return info, nil
}

func portList(info *connfile.Info) (names []string, ports []int) {
	for _, p := range info.Ports() {
		names, ports = append(names, p.Name), append(ports, p.Number)
	}
	return names, ports
}

// closeAll closes the listeners that no forwarder has taken over yet.
func closeAll(lns []net.Listener, fw *forward.Forwarder) {
	if fw != nil {
		return // fw.Close closes them, in its own teardown step
	}
	for _, ln := range lns {
		ln.Close()
	}
}

// startRemote connects and starts the remote kernel with the manager's
// key: its connection file is preset with ports 0, so the kernel binds
// free ports of its own and writes them back.
func (s *session) startRemote(ctx context.Context, cancel context.CancelCauseFunc, info *connfile.Info) error {
	host, err := s.connect(ctx)
	if err != nil {
		return err
	}
	stopEarly := s.endOnDeadLink(ctx, cancel)
	defer stopEarly()
	if err := s.probe(ctx, host); err != nil {
		return err
	}
	if s.preset, err = presetFile(info, s.o.Profile.KernelIP); err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(info.Key))
	s.owner = hex.EncodeToString(sum[:8])
	return s.startKernel(ctx, host)
}

// presetFile is the remote connection file before the kernel starts: the
// manager's key and scheme, ports 0.
func presetFile(info *connfile.Info, kernelIP string) ([]byte, error) {
	ip := "127.0.0.1"
	if kernelIP != "" && kernelIP != "auto" {
		ip = kernelIP
	}
	return json.Marshal(map[string]any{"shell_port": 0, "iopub_port": 0, "stdin_port": 0, "control_port": 0,
		"hb_port": 0, "ip": ip, "key": info.Key, "transport": "tcp", "signature_scheme": info.SignatureScheme,
		"kernel_name": ""})
}

// serveManager relays the manager's ports to the remote kernel's.
func (s *session) serveManager(lns []net.Listener) {
	var targets []forward.Target
	for _, p := range s.k.info.Ports() {
		targets = append(targets, forward.Target{Name: p.Name, Host: s.k.target, Port: p.Number,
			Socket: forward.KernelSocket(p.Name)})
	}
	s.fw = forward.Serve(forward.SSH{Client: s.now().ch.Host()}, targets, lns)
	fw := s.fw
	s.push("close forwards", func() error {
		s.linkDeadAtEnd()
		return fw.Close()
	})
	s.log.detail("relaying the manager's ports to the remote kernel's")
}

// waitKernel lives as long as the remote kernel: its end ends kq; SIGINT
// interrupts it; SIGTERM, SIGHUP and the manager's death stop it.
func (s *session) waitKernel(ctx context.Context, cancel context.CancelCauseFunc, parent int) error {
	orphaned := watchParent(ctx, parent)
	for {
		select {
		case <-ctx.Done():
			if err := s.kernelModeJobEnd(); err != nil && errors.Is(context.Cause(ctx), errKernelDied) {
				return err // the job's end: its reason, exit 7
			}
			if errors.Is(context.Cause(ctx), errKernelDied) {
				// After a shutdown_request this is the normal end, and the
				// manager sees a dead kernel either way: say it, no error.
				s.log.step("the kernel on %s exited", s.hostAlias())
				return nil
			}
			return s.endCause(ctx, context.Cause(ctx))
		case <-orphaned:
			s.log.detail("the kernel manager (pid %d) is gone: stopping the kernel", parent)
			return nil
		case sig, ok := <-s.o.Signals:
			if !ok {
				s.o.Signals = nil
				continue
			}
			if sig != os.Interrupt {
				s.log.detail("%s: stopping the kernel", sig)
				return nil
			}
			s.interruptRemote()
		}
	}
}

// interruptRemote sends SIGINT to the remote kernel's process group,
// without ending anything (jupyter_client sends SIGINT before every
// shutdown; VS Code sends it to every descendant).
func (s *session) interruptRemote() {
	ictx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.now().hold.Interrupt(ictx); err != nil {
		s.warn("interrupt: %v", err)
	}
}

// watchParent is closed once the process parent is gone (or kq was
// reparented away from it); never for parent 0.
func watchParent(ctx context.Context, parent int) <-chan struct{} {
	gone := make(chan struct{})
	if parent <= 0 {
		return gone
	}
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if !pidAlive(parent) || (os.Getppid() != parent && os.Getppid() == 1) {
				close(gone)
				return
			}
		}
	}()
	return gone
}
