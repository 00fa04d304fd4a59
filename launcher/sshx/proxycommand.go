package sshx

// Issue 11, point 1: a hop whose byte stream is a ProxyCommand's stdin
// and stdout.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// proxyGrace is how long a ProxyCommand has after SIGTERM before SIGKILL.
const proxyGrace = 2 * time.Second

// proxyExitWait is how long a failed handshake waits for the command to
// exit, to tell "the command failed" from "the server refused".
const proxyExitWait = time.Second

// stderrKeep bounds what is kept of a ProxyCommand's stderr.
const stderrKeep = 4096

// ProxyCommandError says a hop's ProxyCommand failed to start or ended
// before the SSH handshake was done.
type ProxyCommandError struct {
	// Command is the command line as run (tokens expanded).
	Command string
	// Err is why it could not start, or how it ended (*exec.ExitError).
	Err error
	// Stderr is the end of what it wrote to stderr.
	Stderr string
}

func (e *ProxyCommandError) Error() string {
	msg := fmt.Sprintf("ProxyCommand %q ended before the SSH handshake: %v", e.Command, e.Err)
	if e.Stderr != "" {
		msg += "; its stderr: " + e.Stderr
	}
	return msg
}

func (e *ProxyCommandError) Unwrap() error { return e.Err }

// tailBuffer keeps the last stderrKeep bytes written to it and passes
// everything on to echo, if set (kq -v).
type tailBuffer struct {
	mu   sync.Mutex
	buf  []byte
	echo io.Writer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > stderrKeep {
		t.buf = t.buf[len(t.buf)-stderrKeep:]
	}
	if t.echo != nil {
		_, _ = t.echo.Write(p)
	}
	return len(p), nil
}

// lines is the kept stderr as one line per line, joined by " | ".
func (t *tailBuffer) lines() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, l := range strings.Split(string(t.buf), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, " | ")
}

// proxyAddr is the address a proxied hop reports: the hop's own
// host:port, which known_hosts checks parse.
type proxyAddr string

func (a proxyAddr) Network() string { return "proxycommand" }
func (a proxyAddr) String() string  { return string(a) }

// proxyConn is a net.Conn over a ProxyCommand's pipes. Deadlines are the
// pipes' own. Close ends the command (its process group: SIGTERM, then
// SIGKILL after proxyGrace) and reaps it.
type proxyConn struct {
	command string
	cmd     *exec.Cmd
	r, w    *os.File // our ends: its stdout, its stdin
	stderr  *tailBuffer
	addr    proxyAddr
	exited  chan struct{}
	waitErr error
	once    sync.Once
	pipes   sync.Once
	// handshaking makes Close only close the pipes: x/crypto closes the
	// conn of a failed handshake itself, and the command must be left to
	// exit by itself so its exit status can be told (failure).
	handshaking atomic.Bool
}

// startProxy runs command as OpenSSH does: "exec COMMAND" by $SHELL (else
// /bin/sh). It gets its own process group so that a Ctrl-C meant for the
// frontend does not cut the link; as a consequence it cannot read the
// terminal. Its stderr goes to echo as well when echo is set.
func startProxy(command, addr string, echo io.Writer) (*proxyConn, error) {
	shell := os.Getenv("SHELL")
	if shell == "" {
		shell = "/bin/sh"
	}
	p := &proxyConn{command: command, stderr: &tailBuffer{echo: echo}, addr: proxyAddr(addr), exited: make(chan struct{})}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, &ProxyCommandError{Command: command, Err: err}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, &ProxyCommandError{Command: command, Err: err}
	}
	p.cmd = exec.Command(shell, "-c", "exec "+command)
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = inR, outW, p.stderr
	ownProcessGroup(p.cmd)
	p.cmd.WaitDelay = proxyGrace // a child that keeps stderr open does not hold Wait
	err = p.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, &ProxyCommandError{Command: command, Err: err}
	}
	p.r, p.w = outR, inW
	p.handshaking.Store(true)
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proxyConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *proxyConn) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *proxyConn) LocalAddr() net.Addr         { return proxyAddr("proxycommand") }
func (p *proxyConn) RemoteAddr() net.Addr        { return p.addr }

func (p *proxyConn) SetDeadline(t time.Time) error {
	return errors.Join(p.r.SetReadDeadline(t), p.w.SetWriteDeadline(t))
}
func (p *proxyConn) SetReadDeadline(t time.Time) error  { return p.r.SetReadDeadline(t) }
func (p *proxyConn) SetWriteDeadline(t time.Time) error { return p.w.SetWriteDeadline(t) }

// Close closes the pipes and ends the command: SIGTERM to its process
// group, SIGKILL after proxyGrace, and waits until it is reaped. Later
// calls wait for the first one. During the handshake it only closes the
// pipes (which ends the handshake); handshakeDone arms it.
func (p *proxyConn) Close() error {
	p.pipes.Do(func() {
		p.w.Close()
		p.r.Close()
	})
	if p.handshaking.Load() {
		return nil
	}
	p.once.Do(func() {
		p.signal(false)
		t := time.NewTimer(proxyGrace)
		defer t.Stop()
		select {
		case <-p.exited:
		case <-t.C:
			p.signal(true)
			<-p.exited
		}
	})
	return nil
}

// signal ends the command's process group (SIGTERM, or SIGKILL when
// kill) while it is not yet reaped (after that its pid may belong to
// someone else).
func (p *proxyConn) signal(kill bool) {
	select {
	case <-p.exited:
	default:
		signalGroup(p.cmd.Process, kill)
	}
}

// handshakeDone makes Close end the command from now on.
func (p *proxyConn) handshakeDone() { p.handshaking.Store(false) }

// failure explains a failed handshake on this connection: a
// *ProxyCommandError if the command exited (waiting up to proxyExitWait),
// else err with the command's stderr added.
func (p *proxyConn) failure(err error) error {
	t := time.NewTimer(proxyExitWait)
	defer t.Stop()
	select {
	case <-p.exited:
		why := p.waitErr
		if why == nil {
			why = errors.New("exit status 0")
		}
		return &ProxyCommandError{Command: p.command, Err: why, Stderr: p.stderr.lines()}
	case <-t.C:
	}
	if s := p.stderr.lines(); s != "" {
		return fmt.Errorf("%w (ProxyCommand %q stderr: %s)", err, p.command, s)
	}
	return err
}
