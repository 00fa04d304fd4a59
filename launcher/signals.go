package launcher

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// frontend is the one owner of the frontend process's end: whatever ends
// the session (a signal, the kernel's death, a link that never came back)
// cancels its context, and one context.AfterFunc stops the frontend. A
// signal that lands before the frontend has started is therefore never
// lost: the AfterFunc runs as soon as it is registered.
type frontend struct {
	s      *session
	cancel context.CancelCauseFunc
	cmd    chan *exec.Cmd // the started frontend, for the signal loop
	done   chan struct{}  // closed by close: the loop and the grace timers end
	once   sync.Once
}

// watchSignals turns signals into cancellation. Before the frontend runs,
// every signal stops the session. Once it runs, SIGINT interrupts (see
// interrupt); SIGTERM and SIGHUP end the frontend and the session.
func (s *session) watchSignals(cancel context.CancelCauseFunc) *frontend {
	f := &frontend{s: s, cancel: cancel, cmd: make(chan *exec.Cmd, 1), done: make(chan struct{})}
	go f.loop()
	return f
}

func (f *frontend) loop() {
	var cmd *exec.Cmd
	for {
		select {
		case <-f.done:
			return
		case cmd = <-f.cmd:
		case sig, ok := <-f.s.o.Signals:
			if !ok {
				return
			}
			switch {
			case cmd == nil:
				f.s.log.always("%s: stopping", sig)
			case sig == os.Interrupt:
				f.interrupt(cmd)
				continue
			default:
				f.s.log.always("%s: stopping the frontend and the kernel", sig)
			}
			f.cancel(ErrInterrupted)
		}
	}
}

// interrupt handles SIGINT while the frontend runs. Not at a terminal, it
// is passed on to the frontend. At a terminal the frontend got it too, but
// a frontend attached with --existing cannot interrupt a kernel it did not
// start (jupyter console only prints "KeyboardInterrupt escaped"), so kq
// interrupts the remote kernel it holds; an idle kernel ignores it.
func (f *frontend) interrupt(cmd *exec.Cmd) {
	if !f.s.o.StdinIsTerminal {
		_ = cmd.Process.Signal(os.Interrupt)
		return
	}
	if f.s.managedDir != "" {
		f.s.interruptManaged()
		return
	}
	if l := f.s.now(); l != nil && l.hold != nil {
		go f.s.interruptRemote()
	}
}

// signalInterrupt sends SIGINT to pid.
func signalInterrupt(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Signal(os.Interrupt)
}

// started hands the running frontend to the signal loop and makes the
// session's end stop it. The returned function is called once it exited.
func (f *frontend) started(ctx context.Context, cmd *exec.Cmd) (exited func()) {
	f.cmd <- cmd
	stop := context.AfterFunc(ctx, func() { stopProcess(cmd, f.done) })
	return func() { stop() }
}

// close ends the signal loop.
func (f *frontend) close() { f.once.Do(func() { close(f.done) }) }

// stopProcess asks cmd to terminate and kills it after a grace period.
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

// exitCode is the frontend's exit code, 128+N when signal N killed it.
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
