package launcher

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher/remote"
	"github.com/kq-dev/kq/launcher/sched"
	"github.com/kq-dev/kq/profiles"
)

func testJob() (*jobState, *bytes.Buffer, *[]string) {
	var out bytes.Buffer
	var warnings []string
	j := &jobState{sch: sched.Slurm{}, log: reporter{w: &out}, warned: map[time.Duration]bool{}}
	j.warn = func(format string, args ...any) { warnings = append(warnings, fmt.Sprintf(format, args...)) }
	return j, &out, &warnings
}

const testName = "kq-0b5e4c7e"

func squeueLine(state, reason, start, left string) string {
	return "Q|2026-12-01T23:00:00|" + strings.Join([]string{state, reason, start, left, "", "41", testName}, "|")
}

// TestJobStatusLines: the pending line is printed when it changes, with the
// reason and the estimated start against the cluster's clock; the node is
// said once.
func TestJobStatusLines(t *testing.T) {
	j, out, _ := testJob()
	j.update("S|2026-12-01T23:00:00|41")
	j.update(squeueLine("PENDING", "Priority", "N/A", "1:00:00"))
	j.update(squeueLine("PENDING", "Priority", "N/A", "1:00:00"))
	j.update(squeueLine("PENDING", "Resources", "2026-12-01T23:10:00", "1:00:00"))
	j.update("N|2026-12-01T23:10:01|node7 10.2.0.7 41")
	got := out.String()
	for _, want := range []string{"kq: submitted job 41 to slurm\n", "kq: job 41 pending (Priority), waited",
		"kq: job 41 pending (Resources), est. start in 10m0s, waited", "kq: job 41 running on node7 (10.2.0.7) after"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Count(got, "pending (Priority)") != 1 {
		t.Errorf("an unchanged state printed twice:\n%s", got)
	}
}

// TestJobTimeWarnings: one warning per threshold, the tightest when several
// are crossed at once, again after an extension.
func TestJobTimeWarnings(t *testing.T) {
	j, _, warnings := testJob()
	j.update("S|x|41")
	for _, left := range []string{"20:00", "9:58", "9:56", "4:59", "4:57", "30:00", "0:50", "0:48"} {
		j.update(squeueLine("RUNNING", "None", "2026-12-01T23:00:00", left))
	}
	want := []string{"9m58s", "4m59s", "50s"}
	if len(*warnings) != len(want) {
		t.Fatalf("warnings %q, want %v", *warnings, want)
	}
	for i, w := range want {
		if !strings.Contains((*warnings)[i], "time limit in "+w+":") {
			t.Errorf("warning %d = %q, want %s", i, (*warnings)[i], w)
		}
	}
}

// TestJobEnded: an ended job's reason, in kq's words, exit 7 (ErrKernel).
func TestJobEnded(t *testing.T) {
	for state, want := range map[string]string{"TIMEOUT": "job 41 ended: time limit", "PREEMPTED": "job 41 ended: preempted",
		"NODE_FAIL": "job 41 ended: node failure", "OUT_OF_MEMORY": "job 41 ended: out of memory",
		"COMPLETED": "the kernel exited on -; job 41 ended with it"} {
		j, _, _ := testJob()
		if j.ended() != nil {
			t.Fatal("a job with no status has not ended")
		}
		j.update(squeueLine(state, "None", "N/A", "INVALID"))
		err := j.ended()
		if err == nil || err.Error() != want || !errors.Is(err, ErrKernel) {
			t.Errorf("%s: %v", state, err)
		}
	}
	j, _, _ := testJob()
	j.update(squeueLine("RUNNING", "None", "N/A", "1:00"))
	if j.ended() != nil {
		t.Error("a running job counted as ended")
	}
	j.update("X|x|137")
	if rc, _ := j.exitStatus(); rc != "137" {
		t.Errorf("exit status %q", rc)
	}
	var nilJob *jobState
	if nilJob.ended() != nil || nilJob.jobID() != "" {
		t.Error("no job, no end")
	}
}

// TestJobSpec: the job's commands carry the remote side's placeholders, the
// batch script has the profile's requests and the node side, and the
// kernel's script binds the node's address.
func TestJobSpec(t *testing.T) {
	p := profiles.Profile{Name: "c", Host: "h", Kernel: "python3 -m ipykernel_launcher", Scheduler: "slurm",
		SlurmTime: "2:00", SlurmGres: "gpu:1", Env: map[string]string{"SECRET": "s3cr3t"}}
	k := newKernelSpec(p, "abc")
	j, err := jobSpec(sched.Slurm{}, p, k)
	if err != nil {
		t.Fatal(err)
	}
	if j.Query[len(j.Query)-3] != remote.JobArg || j.Submit[len(j.Submit)-1] != remote.ScriptArg || j.Lookup[len(j.Lookup)-3] != "kq-abc" {
		t.Errorf("commands %q %q %q", j.Query, j.Submit, j.Lookup)
	}
	for _, want := range []string{"#SBATCH --job-name=kq-abc\n", "#SBATCH --time=2:00\n", "#SBATCH --gres=gpu:1\n", "\njob_node\n"} {
		if !strings.Contains(j.BatchScript, want) {
			t.Errorf("batch script lacks %q", want)
		}
	}
	if strings.Contains(j.BatchScript, "s3cr3t") {
		t.Error("an env: value is in the batch script (the scheduler keeps a copy)")
	}
	k.Job = j
	if ks := k.KernelScript(); !strings.Contains(ks, `--ip="$KQ_NODE_ADDR" -f "$1"`) || !strings.Contains(ks, "s3cr3t") {
		t.Errorf("kernel script:\n%s", ks)
	}
	p.SlurmTime = ""
	if _, err := jobSpec(sched.Slurm{}, p, k); err == nil {
		t.Error("a job without a time limit")
	}
}

// TestJobStaleForTests: KQ_TEST_JOB_STALE lowers the node side's heartbeat
// staleness (kq's own e2e tests), and can never raise it or set it below a
// second; unset, both sides of the job get the default 180 s.
func TestJobStaleForTests(t *testing.T) {
	p := profiles.Profile{Name: "c", Host: "h", Kernel: "python3 -m ipykernel_launcher", Scheduler: "slurm", SlurmTime: "5"}
	for env, want := range map[string]string{"": "stale=180\n", "8s": "stale=8\n", "1h": "stale=180\n",
		"500ms": "stale=180\n", "-5s": "stale=180\n", "soon": "stale=180\n"} {
		t.Setenv(TestStaleEnv, env)
		k := newKernelSpec(p, "abc")
		j, err := jobSpec(sched.Slurm{}, p, k)
		if err != nil {
			t.Fatal(err)
		}
		k.Job = j
		if !strings.Contains(j.BatchScript, "\n"+want) || !strings.Contains(k.StartScript(), "\n"+want) {
			t.Errorf("%s=%q: want %q in the node side and the login side", TestStaleEnv, env, want)
		}
	}
}

// TestStartErrorMissingCommands: a start that failed because the login
// node has no sbatch says so in the shell's words, not as a refusal, with
// the hint that says where the commands must be.
func TestStartErrorMissingCommands(t *testing.T) {
	j, _, _ := testJob()
	s := &session{job: j, hops: []profiles.SSHSettings{{Alias: "login"}}}
	err := s.startError(errors.New("start kernel on login: the scheduler refused the kernel's batch job: " +
		"/rt/kernel-kq-1.cmd: 1: eval: sbatch: not found"))
	var h interface{ Hint() string }
	if err == nil || err.Error() != "start kernel on login: sbatch: not found on the login node" || !errors.Is(err, ErrKernel) ||
		!errors.As(err, &h) || !strings.Contains(h.Hint(), "must be on the login node's PATH") {
		t.Fatalf("startError = %v", err)
	}
}
