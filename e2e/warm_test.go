package e2e

import (
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
