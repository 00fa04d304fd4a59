package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher/internal/sshtest"
	"github.com/kq-dev/kq/launcher/kinds"
	"golang.org/x/crypto/ssh"
)

// TestOpenChannelBounded: a channel open the server never answers ends
// with the deadline, where x/crypto alone would wait for ever.
func TestOpenChannelBounded(t *testing.T) {
	c := sshtest.Dead(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		conn, err := SSH{Client: c}.DialContext(ctx, "tcp", "127.0.0.1:9")
		if conn != nil {
			conn.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("dial: %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("channel open not bounded by its context")
	}
}

// TestProbeForwardingBounded: a host that never answers the forwarding
// probe fails the probe instead of hanging kq.
func TestProbeForwardingBounded(t *testing.T) {
	c := sshtest.Dead(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Probe(ctx, c, "host h") }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a probe nobody answered passed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("probe not bounded by its context")
	}
}

// TestProhibitedTyped: a forward the server refuses leaves its
// *ssh.OpenChannelError in DialError, so the session can tell "forwarding
// is prohibited" by type; the probe marks a prohibited host kinds.Forward
// and passes a host that merely finds nothing listening.
func TestProhibitedTyped(t *testing.T) {
	c := sshtest.Reject(t, ssh.Prohibited)
	fw, err := Listen(SSH{Client: c}, []Target{{Name: "shell_port", Host: "127.0.0.1", Port: 9}})
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	local, err := net.Dial("tcp", fw.Forwards()[0].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	_ = local.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.ReadAll(local) // closed by the forwarder once the open is refused
	local.Close()
	select {
	case <-fw.Failed():
	case <-time.After(10 * time.Second):
		t.Fatal("Failed not closed after a refused open")
	}
	var oce *ssh.OpenChannelError
	if err := fw.DialError(); !errors.As(err, &oce) || oce.Reason != ssh.Prohibited {
		t.Fatalf("DialError = %v, want an *ssh.OpenChannelError with Prohibited", err)
	}
	if err := Probe(context.Background(), c, "host h"); !errors.Is(err, kinds.Forward) {
		t.Fatalf("Probe on a prohibited host = %v, want kinds.Forward", err)
	}
	if err := Probe(context.Background(), sshtest.Reject(t, ssh.ConnectionFailed), "host h"); err != nil {
		t.Fatalf("Probe on a host that forwards = %v", err)
	}
}
