package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// TestMaxStartupsRetried: sshd drops connections beyond MaxStartups before
// its banner; kq tries again with backoff instead of failing, so many
// sessions started at once all get in. Here the one startup slot is held
// by a connection that says nothing, until it goes.
func TestMaxStartupsRetried(t *testing.T) {
	e := newEnv(t, sshdtest.Options{ExtraConfig: []string{"MaxStartups 1"}})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	hog, err := net.Dial("tcp", e.srv.Addr)
	must(t, err)
	defer hog.Close()
	time.Sleep(200 * time.Millisecond) // sshd has counted it
	r := e.start([]string{"-v", "p"})
	r.waitStderr(t, "trying again", 30*time.Second)
	hog.Close()
	if code := r.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("exit %d after the slot was free:\n%s", code, r.stderr)
	}
	if !strings.Contains(r.stderr.String(), "closed the connection before its banner") {
		t.Errorf("the retry does not say why:\n%s", r.stderr)
	}
	e.assertClean(nil, nil)
}
