package forward

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher/internal/sshtest"
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
