package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// TestWarmKernel: with warm: 1 the first session leaves a spare kernel
// behind, kq ls shows it, the next session takes it (its warm_code has
// run: the namespace has what it defined) and leaves a new one, kq stop
// --all-kq stops it, and a spare no session takes is stopped after linger.
func TestWarmKernel(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile(), "w": e.profileFor("kqtest", e.sshConfig, profile{
		"warm": 1, "warm_code": "import json\nWARM = json.dumps(42)", "linger": "6s"})})
	code := "KQ_TEST_CODE=print(WARM)"

	r, exit := e.runToEnd([]string{"w"}, code)
	if exit != 0 || !strings.Contains(r.stderr.String(), "kq: kernel started on kqtest") || r.report(t).Out != "42\n" {
		t.Fatalf("first session: exit %d, out %q\n%s", exit, r.report(t).Out, r.stderr)
	}
	spare := waitSpareListed(t, e, "w")

	r, exit = e.runToEnd([]string{"w"}, code)
	if exit != 0 || !strings.Contains(r.stderr.String(), "kq: kernel taken warm") {
		t.Fatalf("second session did not take the spare: exit %d\n%s", exit, r.stderr)
	}
	if rep := r.report(t); rep.Out != "42\n" || !strings.Contains(rep.File, spare[:8]) {
		t.Errorf("second session: out %q, file %s; want the spare %s with warm_code run", rep.Out, rep.File, spare)
	}
	next := waitSpareListed(t, e, "w")
	if next == spare {
		t.Errorf("no new spare behind the one taken")
	}

	// A profile of another flavor starts its own kernel.
	r, exit = e.runToEnd([]string{"p"})
	if exit != 0 || strings.Contains(r.stderr.String(), "taken warm") {
		t.Errorf("another profile took the spare: exit %d\n%s", exit, r.stderr)
	}

	r, exit = e.runToEnd([]string{"stop", "w", "--all-kq"})
	if exit != 0 || !strings.Contains(r.stderr.String(), next) {
		t.Fatalf("kq stop --all-kq: exit %d\n%s", exit, r.stderr)
	}
	e.assertClean(nil, nil)

	// A spare no session takes lives no longer than linger.
	if _, exit = e.runToEnd([]string{"w"}, code); exit != 0 {
		t.Fatalf("third session: exit %d", exit)
	}
	waitSpareListed(t, e, "w")
	deadline := time.Now().Add(6*time.Second + 20*time.Second)
	for {
		r, _ := e.runToEnd([]string{"ls", "w"})
		if !strings.Contains(r.stdout.String(), "spare") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the spare outlived linger:\n%s", r.stdout)
		}
		time.Sleep(time.Second)
	}
	// The watchdog removes the marker first, then stops the kernel and
	// removes its files.
	waitNoFiles(t, e.remoteRT, 10*time.Second)
	e.assertClean(nil, nil)
}

// waitSpareListed waits until kq ls shows a spare, and returns its id.
func waitSpareListed(t *testing.T, e *env, profile string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, _ := e.runToEnd([]string{"ls", profile})
		for _, l := range strings.Split(r.stdout.String(), "\n") {
			if strings.Contains(l, "alive (spare)") {
				return strings.Fields(l)[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no spare in kq ls:\n%s\n%s", r.stdout, r.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestWarmClaim: a warm session remembers the spare that starts behind its
// kernel (a 0600 file in the user's cache dir), and the next session claims
// it in the kernel itself, through its ports, with no command run on the
// host first; the spare behind that one is remembered in turn. A
// remembered spare that is gone is tried once, forgotten, and the session
// starts its own kernel. Nothing is left once kq stop --all-kq has run.
func TestWarmClaim(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"w": e.profileFor("kqtest", e.sshConfig, profile{
		"warm": 1, "warm_code": "WARM = 42", "linger": "20s"})})
	// The session lasts until its spare is up and remembered.
	long := "KQ_TEST_CODE=import time; time.sleep(4); print(WARM)"
	cache := filepath.Join(e.dir, "cache", "kq", "spares")

	if r, exit := e.runToEnd([]string{"w"}, long); exit != 0 || r.report(t).Out != "42\n" {
		t.Fatalf("first session: exit %d\n%s", exit, r.stderr)
	}
	spare := waitSpareListed(t, e, "w")
	remembered := cacheEntries(t, cache)
	if len(remembered) != 1 {
		t.Fatalf("remembered spares: %v, want 1", remembered)
	}
	if fi, err := os.Stat(remembered[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("remembered spare %s: %v, mode %v; want 0600", remembered[0], err, fi.Mode().Perm())
	}

	r, exit := e.runToEnd([]string{"-v", "w"}, long)
	rep := r.report(t)
	if exit != 0 || rep.Out != "42\n" || !strings.Contains(r.stderr.String(), "a spare claimed in the kernel") ||
		!strings.Contains(rep.File, spare[:8]) {
		t.Fatalf("second session did not claim spare %s: exit %d, out %q, file %s\n%s", spare, exit, rep.Out, rep.File, r.stderr)
	}
	if strings.Contains(r.stderr.String(), "op start") {
		t.Errorf("the claim ran op start on the host too:\n%s", r.stderr)
	}
	next := waitSpareListed(t, e, "w")
	if next == spare || len(cacheEntries(t, cache)) != 1 {
		t.Errorf("after the claim: spare %s (was %s), remembered %v", next, spare, cacheEntries(t, cache))
	}

	// The remembered spare goes away behind kq's back.
	if r, exit := e.runToEnd([]string{"stop", "w", "--all-kq"}); exit != 0 {
		t.Fatalf("kq stop --all-kq: exit %d\n%s", exit, r.stderr)
	}
	r, exit = e.runToEnd([]string{"-v", "w"}, "KQ_TEST_CODE=print(WARM)")
	if exit != 0 || r.report(t).Out != "42\n" || !strings.Contains(r.stderr.String(), "could not be claimed") ||
		!strings.Contains(r.stderr.String(), "kq: kernel started on kqtest") {
		t.Fatalf("session after the spare went: exit %d\n%s", exit, r.stderr)
	}
	if r, exit := e.runToEnd([]string{"stop", "w", "--all-kq"}); exit != 0 {
		t.Fatalf("kq stop --all-kq: exit %d\n%s", exit, r.stderr)
	}
	e.assertClean(nil, nil)
}

// cacheEntries lists the remembered spares in dir.
func cacheEntries(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.json"))
	must(t, err)
	return m
}
