package remote

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// stuckRunner stands for a host whose login shell hangs in its start-up
// files: the command never runs, nothing comes back.
type stuckRunner struct{}

func (stuckRunner) Start(ctx context.Context, command string, stderr io.Writer) (Process, error) {
	return startLocal("exec sleep 30", stderr)
}

// TestStartSilentHint: a start that hears nothing at all, not even the
// first line, gives up after silentLimit and points at the login shell's
// start-up; it does not wait for the whole start timeout.
func TestStartSilentHint(t *testing.T) {
	old := silentLimit
	silentLimit = 2 * time.Second
	defer func() { silentLimit = old }()
	t0 := time.Now()
	_, err := Start(context.Background(), stuckRunner{}, KernelSpec{Command: "true", RuntimeDir: t.TempDir(), ID: "silent", Linger: time.Minute})
	var h interface{ Hint() string }
	if !errors.Is(err, errSilent) || !errors.As(err, &h) || !strings.Contains(h.Hint(), "start-up files") {
		t.Fatalf("Start on a silent host: %v (hint %v)", err, h)
	}
	if d := time.Since(t0); d > 20*time.Second {
		t.Errorf("gave up after %s, want about silentLimit", d)
	}
}
