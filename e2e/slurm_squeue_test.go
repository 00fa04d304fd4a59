package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// failingSqueue is an squeue that fails, as a controller that does not
// answer makes it fail, for as long as the file "down" next to it exists,
// and is the real one otherwise. Each call is logged, "fail" or "pass".
const failingSqueue = `#!/bin/sh
d=$(dirname "$0")
if [ -e "$d/down" ]; then
  printf 'fail %s\n' "$*" >> "$d/squeue.log"
  echo "squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation" >&2
  exit 1
fi
printf 'pass %s\n' "$*" >> "$d/squeue.log"
exec /usr/bin/squeue "$@"
`

// TestSlurmQueueQueryFails: squeue fails for a while (15 s, several of
// the login side's polls) under a running session. A failed squeue is
// never read as "job gone": the login side asks again (and asks sacct,
// which this cluster has not got), kq says the scheduler did not answer,
// and the job, its kernel and kq go on; once squeue answers again the
// same kernel still holds its state, and the session ends normally when
// its frontend ends, leaving nothing.
func TestSlurmQueueQueryFails(t *testing.T) {
	wrap, e, c := wrappedSlurmEnv(t, "squeue", failingSqueue)
	r := e.start([]string{"cluster"}, "KQ_TEST_CODE=x = 7; print('set')", "KQ_TEST_CODE2=print(x)")
	if rep := r.report(t); strings.TrimSpace(rep.Out) != "set" {
		t.Fatalf("first cell: %q", rep.Out)
	}
	job := c.Jobs(t)
	if len(job) != 1 || !strings.HasSuffix(job[0], " RUNNING") {
		t.Fatalf("queue %q, want kq's one running job", job)
	}
	id := strings.Fields(job[0])[0]
	// The kernel on the node (the pid job.sh's node side recorded), and
	// its start time: the same process all along, never a new one.
	npid, err := os.ReadFile(filepath.Join(e.remoteRT, "kernel-kq-"+kernelIDFrom(t, r.stderr.String())+".npid"))
	must(t, err)
	kpid, err := strconv.Atoi(strings.TrimSpace(string(npid)))
	must(t, err)
	kstart := startTime(kpid)
	if kstart == "" || !slices.Contains(c.NodePIDs(), kpid) {
		t.Fatalf("the kernel %d does not run on the node", kpid)
	}
	logf := filepath.Join(wrap, "squeue.log")
	// job.sh's own query of this job, as the wrapper logs it.
	query := regexp.MustCompile(`(?m)^(fail|pass) .*-j ` + id + ` `)
	failed := func() int {
		log, _ := os.ReadFile(logf)
		n := 0
		for _, m := range query.FindAllStringSubmatch(string(log), -1) {
			if m[1] == "fail" {
				n++
			}
		}
		return n
	}

	down := filepath.Join(wrap, "down")
	must(t, os.WriteFile(down, nil, 0o644))
	window := 15 * time.Second
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		select {
		case <-r.done:
			os.Remove(down)
			t.Fatalf("kq ended while squeue failed (exit %d), %d failed queries:\n%s", r.code, failed(), r.stderr)
		default:
		}
		if jobs := c.Jobs(t); !slices.Equal(jobs, job) {
			os.Remove(down)
			t.Fatalf("queue %q while squeue failed, want %q\n%s", jobs, job, r.stderr)
		}
		if startTime(kpid) != kstart {
			os.Remove(down)
			t.Fatalf("the kernel %d is gone while squeue failed\n%s", kpid, r.stderr)
		}
		time.Sleep(500 * time.Millisecond)
	}
	must(t, os.Remove(down))
	n := failed()
	// More failures than job.sh's five before it calls a job gone: only
	// what the failures say (not "Invalid job id", not nothing) kept it.
	if n < 5 {
		log, _ := os.ReadFile(logf)
		t.Fatalf("only %d failed queries of job %s in %s, the wrapper logged:\n%s", n, id, window, log)
	}
	if !strings.Contains(r.stderr.String(), "job "+id+": the scheduler did not answer (squeue: error: slurm_load_jobs error: Socket timed out") {
		t.Errorf("kq did not say the scheduler did not answer:\n%s", r.stderr)
	}
	t.Logf("%d failed queries of job %s in %s", n, id, window)

	// squeue answers again: job.sh's next query passes.
	deadline := time.Now().Add(20 * time.Second)
	for {
		log, _ := os.ReadFile(logf)
		all := query.FindAllStringSubmatch(string(log), -1)
		if len(all) > 0 && all[len(all)-1][1] == "pass" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job.sh did not ask squeue again after the failures:\n%s", log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	keptStateToEnd(t, r, c, job, 60*time.Second, "the failures")
	if s := r.stderr.String(); strings.Contains(s, "ended: ") || strings.Contains(s, "kq: error:") {
		t.Errorf("the session did not end as its frontend did:\n%s", s)
	}
	t.Logf("stderr:\n%s", r.stderr)
	slurmClean(t, e, c)
}
