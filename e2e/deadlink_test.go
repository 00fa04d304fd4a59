package e2e

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// TestLinkDeadAtExit: the link is cut silently (no RST) and the frontend
// ends before the keepalives have given up. kq must not wait on the dead
// link: it says so in one line, removes the local connection file and
// exits within interval × (count + 1) plus slack; the kernel, left to the
// server's watchdog, is gone once linger has passed.
func TestLinkDeadAtExit(t *testing.T) {
	mostlyWaiting(t)
	const (
		linger   = 6 * time.Second
		interval = 500 * time.Millisecond // newNetEnv's keepalive
		count    = 2                      // and keepalive_count
		slack    = 10 * time.Second       // a shared, noisy machine
	)
	n := newNetEnv(t, profile{"linger": linger.String()})
	r := n.start([]string{"p"}, "KQ_TEST_WAIT=1")
	rep := r.report(t)
	pid := kernelPID(t, rep)
	n.cut()
	cut := time.Now()
	r.stdin.Close() // the frontend ends now, inside the keepalive window
	code := r.wait(t, interval*(count+1)+slack)
	t.Logf("kq exited %s after the cut", time.Since(cut).Round(10*time.Millisecond))
	stderr := r.stderr.String()
	if code != 0 {
		t.Errorf("exit %d, want the frontend's 0\n%s", code, stderr)
	}
	if c := strings.Count(stderr, "link to server is dead"); c != 1 {
		t.Errorf("%d \"link to server is dead\" lines, want 1\n%s", c, stderr)
	}
	if strings.Contains(stderr, "warning") {
		t.Errorf("teardown on a dead link warned:\n%s", stderr)
	}
	if _, err := os.Stat(rep.File); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("local connection file %s: %v, want it removed", rep.File, err)
	}
	n.restore()
	sshdtest.WaitGone(t, pid, linger+15*time.Second)
	waitNoFiles(t, n.remoteRT, 10*time.Second)
	n.assertClean([]int{pid}, rep.Ports)
}

// TestLinkDeadDuringStart: the link dies while the kernel is starting
// (before the frontend, where kq does not reconnect): kq's keepalives run
// from the dial on, so it gives up within the keepalive window with exit 1
// and "link to server is dead", instead of waiting for ever; after the
// link is restored the server's watchdog stops the kernel after linger
// and removes its files.
func TestLinkDeadDuringStart(t *testing.T) {
	mostlyWaiting(t)
	const (
		linger   = 6 * time.Second
		interval = 500 * time.Millisecond
		count    = 2
		slack    = 10 * time.Second
	)
	n := newNetEnv(t, profile{"linger": linger.String(), "kernel": "sleep 3; " + kernelCmd})
	r := n.start([]string{"p"}, "KQ_TEST_WAIT=1")
	waitKQFiles(t, n.remoteRT, 30*time.Second) // the remote side is starting it
	n.cut()
	code := r.wait(t, interval*(count+1)+slack)
	stderr := r.stderr.String()
	if code != 1 || !strings.Contains(stderr, "kq: error: link to server is dead") {
		t.Fatalf("exit %d, want 1 and \"link to server is dead\"\n%s", code, stderr)
	}
	if c := strings.Count(stderr, "link to server is dead"); c != 1 {
		t.Errorf("the dead link was reported %d times, want once\n%s", c, stderr)
	}
	n.restore()
	waitNoFiles(t, n.remoteRT, linger+20*time.Second)
	n.assertClean(nil, nil)
}

// waitKQFiles waits until the remote side has written a kq file in dir.
func waitKQFiles(t *testing.T, dir string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(listKQFiles(dir)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no kq files in %s within %s", dir, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
