package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// complete runs "kq __complete ARGS..." (what a shell's Tab runs) and
// returns its candidates (without the trailing ":DIRECTIVE" line) and how
// long it took; it fails the test if kq printed anything of its own on
// stderr or exited non-zero.
func (e *env) complete(t *testing.T, args ...string) ([]string, time.Duration) {
	t.Helper()
	t0 := time.Now()
	r, code := e.runToEnd(append([]string{"__complete"}, args...))
	took := time.Since(t0)
	if code != 0 {
		t.Fatalf("__complete %q: exit %d\n%s", args, code, r.stderr)
	}
	if s := r.stderr.String(); strings.Contains(s, "kq:") || strings.Contains(s, "?") {
		t.Errorf("__complete %q printed on stderr: %q", args, s)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout.String()), "\n")
	if len(lines) == 0 || lines[len(lines)-1] != ":4" {
		t.Errorf("__complete %q: want NoFileComp (:4) last, got %q", args, lines)
	}
	return lines[:len(lines)-1], took
}

// TestCompleteKernelIDs: Tab after "kq attach PROFILE" lists the host's
// kernels over the real sshd, without a prompt: a detached kq kernel and
// one started by hand, each described; stop leaves out ids already on the
// line, interrupt offers only kq's; a host whose key is unknown gives no
// candidates at once instead of asking.
func TestCompleteKernelIDs(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	unknown := filepath.Join(e.dir, "ssh_config_unknown")
	must(t, os.WriteFile(unknown, []byte(fmt.Sprintf(`Host kqtest
  HostName %s
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile /dev/null
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking ask
`, e.srv.Host, e.srv.Port, e.srv.User, e.srv.ClientKey)), 0o600))
	e.writeConfig(map[string]profile{"p": e.baseProfile(), "unknownkey": e.profileFor("kqtest", unknown)})
	handPID, _ := e.handKernel(t, "kernel-byhand.json")
	r, code := e.runToEnd([]string{"run", "--detach", "p"})
	if code != 0 {
		t.Fatalf("run --detach: exit %d\n%s", code, r.stderr)
	}
	id := kqID(t, e.remoteRT)

	got, took := e.complete(t, "attach", "p", "")
	want := []string{id + "\tkq's, kept, ", "byhand\tstarted outside kq, "}
	for _, w := range want {
		if !hasPrefixLine(got, w) {
			t.Errorf("attach p '': no candidate %q in %q", w, got)
		}
	}
	if took > 10*time.Second {
		t.Errorf("attach completion took %s", took)
	}
	if got, _ := e.complete(t, "attach", "p", id[:6]); len(got) != 1 || !strings.HasPrefix(got[0], id+"\t") {
		t.Errorf("attach p %s: %q, want only %s", id[:6], got, id)
	}
	if got, _ := e.complete(t, "stop", "p", id, ""); len(got) != 1 || !strings.HasPrefix(got[0], "byhand\t") {
		t.Errorf("stop p ID '': %q, want only byhand", got)
	}
	if got, _ := e.complete(t, "interrupt", "p", ""); len(got) != 1 || !strings.HasPrefix(got[0], id+"\t") {
		t.Errorf("interrupt p '': %q, want only kq's %s", got, id)
	}
	if got, _ := e.complete(t, "attach", "p", id, ""); len(got) != 0 {
		t.Errorf("attach p ID '': %q, want nothing after the kernel", got)
	}

	// An unknown host key would need a prompt: nothing, quickly, and no
	// known_hosts line is written anywhere.
	got, took = e.complete(t, "attach", "unknownkey", "")
	if len(got) != 0 || took > 10*time.Second {
		t.Errorf("attach unknownkey '': %q after %s, want nothing, at once", got, took)
	}

	s, code := e.runToEnd([]string{"stop", "--all-kq", "p", "byhand"})
	if code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, s.stderr)
	}
	sshdtest.WaitGone(t, handPID, 10*time.Second)
	waitNoFiles(t, e.remoteRT, 10*time.Second)
	e.assertClean(nil, nil)
}

func hasPrefixLine(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}
