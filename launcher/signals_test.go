//go:build unix

package launcher

import (
	"context"
	"io"
	"os/exec"
	"testing"
	"time"
)

// TestFrontendStoppedWhateverTheCause: a session cancelled before its
// frontend has even started (SIGTERM between the last check and Start)
// still ends the frontend, for an interruption as for any other cause.
func TestFrontendStoppedWhateverTheCause(t *testing.T) {
	for _, cause := range []error{ErrInterrupted, errKernelDied} {
		t.Run(cause.Error(), func(t *testing.T) {
			s := newSession(Options{Stderr: io.Discard})
			ctx, cancel := context.WithCancelCause(context.Background())
			front := s.watchSignals(cancel)
			defer front.close()
			cancel(cause) // the signal landed just before Start
			cmd := exec.Command("sleep", "30")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := front.started(ctx, cmd)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
				exited()
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatal("the frontend kept running after the session ended")
			}
		})
	}
}
