package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
)

// Runner starts the one remote command (Command) for an op. SSH is the
// production runner; tests run remote.sh under a local sh.
type Runner interface {
	Start(ctx context.Context, command string, stderr io.Writer) (Process, error)
}

// Process is one running remote command.
type Process interface {
	Stdin() io.WriteCloser
	Stdout() io.Reader
	// Wait waits for the command's end; an error wrapping ErrCutShort
	// says it ended without an exit status (the connection went away).
	Wait() error
	// Close ends the command, whatever state it is in.
	Close() error
}

// ErrCutShort: the remote command ended without an exit status, cut off
// by a connection that went away.
var ErrCutShort = errors.New("the server's side ended before the op finished")

// sessionTimeout bounds opening a session and starting its command: a
// link can die silently at any moment.
const sessionTimeout = 20 * time.Second

// SSH runs ops as sessions on one SSH connection.
type SSH struct {
	// Client is the connection.
	Client *ssh.Client
	// Gate, when set, is asked once the session channel is open and
	// before the command is sent: an error closes the session unstarted.
	// (kq overlaps its forwarding probe with the session's open this way
	// and still starts nothing on a host that forbids forwarding.)
	Gate func() error
}

// Start opens a session channel and sends the command on it, giving up
// after sessionTimeout or when ctx ends. The exec request goes out without
// waiting for its answer (x/crypto's Session.Start waits a round trip for
// it): the program follows on stdin in the same channel, which sshd reads
// only after the exec, and a refused exec closes the channel with no exit
// status, which Wait reports as ErrCutShort.
func (r SSH) Start(ctx context.Context, command string, stderr io.Writer) (Process, error) {
	ch, reqs, err := openSession(ctx, r.Client)
	if err != nil {
		return nil, err
	}
	if r.Gate != nil {
		if err := r.Gate(); err != nil {
			ch.Close()
			return nil, err
		}
	}
	if _, err := ch.SendRequest("exec", false, ssh.Marshal(struct{ Command string }{command})); err != nil {
		ch.Close()
		return nil, fmt.Errorf("start remote command: %w", err)
	}
	p := &sshProcess{ch: ch, ended: make(chan struct{}), copied: make(chan struct{})}
	go p.serve(reqs)
	go func() { // the remote stderr, as Session.Stderr would take it
		if stderr != nil {
			_, _ = io.Copy(stderr, ch.Stderr())
		} else {
			_, _ = io.Copy(io.Discard, ch.Stderr())
		}
		close(p.copied)
	}()
	return p, nil
}

// sshProcess is a command on a session channel.
type sshProcess struct {
	ch     ssh.Channel
	status *int // exit-status, if the server sent one
	signal string
	ended  chan struct{} // the channel's requests are over: it is closed
	copied chan struct{} // its stderr is read to the end
}

// serve reads the channel's requests until it closes: exit-status and
// exit-signal say how the command ended; any other is refused.
func (p *sshProcess) serve(reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch req.Type {
		case "exit-status":
			var m struct{ Status uint32 }
			if ssh.Unmarshal(req.Payload, &m) == nil {
				st := int(m.Status)
				p.status = &st
			}
		case "exit-signal":
			var m struct {
				Signal     string
				CoreDumped bool
				Error      string
				Lang       string
			}
			if ssh.Unmarshal(req.Payload, &m) == nil {
				p.signal = m.Signal
			}
		}
		if req.WantReply {
			_ = req.Reply(false, nil)
		}
	}
	close(p.ended)
}

func (p *sshProcess) Stdin() io.WriteCloser { return stdinPipe{p.ch} }
func (p *sshProcess) Stdout() io.Reader     { return p.ch }
func (p *sshProcess) Close() error          { return p.ch.Close() }

// stdinPipe is the command's stdin: Close sends EOF and leaves the
// channel open for the rest of the output, as Session.StdinPipe does.
type stdinPipe struct{ ch ssh.Channel }

func (w stdinPipe) Write(p []byte) (int, error) { return w.ch.Write(p) }
func (w stdinPipe) Close() error                { return w.ch.CloseWrite() }

// Wait waits for the channel to close and says how the command ended.
func (p *sshProcess) Wait() error {
	<-p.ended
	<-p.copied
	switch {
	case p.signal != "":
		return fmt.Errorf("remote command killed by signal %s", p.signal)
	case p.status == nil:
		return fmt.Errorf("%w: no exit status", ErrCutShort)
	case *p.status != 0:
		return fmt.Errorf("remote command exited with status %d", *p.status)
	}
	return nil
}

// openSession opens a session channel, giving up after sessionTimeout or
// when ctx ends; a channel that opens too late is closed.
func openSession(ctx context.Context, client *ssh.Client) (ssh.Channel, <-chan *ssh.Request, error) {
	type result struct {
		ch   ssh.Channel
		reqs <-chan *ssh.Request
		err  error
	}
	res := make(chan result, 1)
	go func() {
		ch, reqs, err := client.OpenChannel("session", nil)
		res <- result{ch, reqs, err}
	}()
	t := time.NewTimer(sessionTimeout)
	defer t.Stop()
	var err error
	select {
	case r := <-res:
		if r.err != nil {
			return nil, nil, fmt.Errorf("open session: %w", r.err)
		}
		return r.ch, r.reqs, nil
	case <-t.C:
		err = fmt.Errorf("open session: no answer from the server in %s: %w", sessionTimeout, os.ErrDeadlineExceeded)
	case <-ctx.Done():
		err = fmt.Errorf("open session: %w", context.Cause(ctx))
	}
	go func() {
		if r := <-res; r.ch != nil {
			r.ch.Close()
		}
	}()
	return nil, nil, err
}

// within runs fn, giving up after d or when ctx ends (fn goes on in the
// background: the caller closes what fn waits on).
func within(ctx context.Context, d time.Duration, what string, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("%s: no answer from the server in %s: %w", what, d, os.ErrDeadlineExceeded)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, context.Cause(ctx))
	}
}
