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
