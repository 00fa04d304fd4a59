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

// Start opens a session and starts command in it, giving up after
// sessionTimeout or when ctx ends.
func (r SSH) Start(ctx context.Context, command string, stderr io.Writer) (Process, error) {
	sess, err := newSession(ctx, r.Client)
	if err != nil {
		return nil, err
	}
	if r.Gate != nil {
		if err := r.Gate(); err != nil {
			sess.Close()
			return nil, err
		}
	}
	p := &sshProcess{sess: sess}
	if p.stdin, err = sess.StdinPipe(); err == nil {
		p.stdout, err = sess.StdoutPipe()
	}
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("session pipes: %w", err)
	}
	sess.Stderr = stderr
	if err := within(ctx, sessionTimeout, "start remote command", func() error { return sess.Start(command) }); err != nil {
		sess.Close()
		return nil, err
	}
	return p, nil
}

type sshProcess struct {
	sess   *ssh.Session
	stdin  io.WriteCloser
	stdout io.Reader
}

func (p *sshProcess) Stdin() io.WriteCloser { return p.stdin }
func (p *sshProcess) Stdout() io.Reader     { return p.stdout }
func (p *sshProcess) Close() error          { return p.sess.Close() }

func (p *sshProcess) Wait() error {
	err := p.sess.Wait()
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		return fmt.Errorf("%w: %w", ErrCutShort, err)
	}
	return err
}

// newSession opens a session, giving up after sessionTimeout or when ctx
// ends; a session that opens too late is closed.
func newSession(ctx context.Context, client *ssh.Client) (*ssh.Session, error) {
	type result struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := client.NewSession()
		ch <- result{s, err}
	}()
	t := time.NewTimer(sessionTimeout)
	defer t.Stop()
	var err error
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("open session: %w", r.err)
		}
		return r.s, nil
	case <-t.C:
		err = fmt.Errorf("open session: no answer from the server in %s: %w", sessionTimeout, os.ErrDeadlineExceeded)
	case <-ctx.Done():
		err = fmt.Errorf("open session: %w", context.Cause(ctx))
	}
	go func() {
		if r := <-ch; r.s != nil {
			r.s.Close()
		}
	}()
	return nil, err
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
