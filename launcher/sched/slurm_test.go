package sched

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func golden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSlurmParseStatus reads squeue lines captured from slurmtest's real
// cluster (Slurm 22.05.8): every state kq meets, a name holding the
// delimiter, days in the time left.
func TestSlurmParseStatus(t *testing.T) {
	live, err := Slurm{}.ParseStatus(golden(t, "squeue-live.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ended, err := Slurm{}.ParseStatus(golden(t, "squeue-ended.txt"))
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Status{}
	for _, s := range append(live, ended...) {
		byID[s.ID] = s
	}
	for _, c := range []struct {
		id, name string
		phase    Phase
		reason   string
		node     string
		left     time.Duration
	}{
		{"4100008", "kq-0b5e4c7e-pending", Pending, "Resources", "", 90 * time.Minute},
		{"4100009", "kq-x|pipe", Pending, "Priority", "", 48 * time.Hour},
		{"4100007", "blocker", Running, "", "kqnode", 4*time.Minute + 58*time.Second},
		{"4100005", "kq-timeout", Ended, EndTimeLimit, "kqnode", -1},
		{"4100006", "kq-fail", Ended, EndFailed, "kqnode", -1},
		{"4100001", "blocker", Ended, EndCancelled, "kqnode", 3*time.Minute + 46*time.Second},
		{"4100002", "kq-abc", Ended, EndCancelled, "", 2 * time.Minute},
		{"4100000", "wrap", Ended, EndCompleted, "kqnode", -1},
	} {
		s, ok := byID[c.id]
		if !ok {
			t.Errorf("job %s missing", c.id)
			continue
		}
		if s.Name != c.name || s.Phase != c.phase || s.Reason != c.reason || s.Node != c.node || s.TimeLeft != c.left {
			t.Errorf("job %s = %+v, want name %q phase %v reason %q node %q left %v", c.id, s, c.name, c.phase, c.reason, c.node, c.left)
		}
	}
	if s := byID["4100007"]; !s.Start.Equal(time.Date(2026, 12, 1, 23, 15, 57, 0, time.UTC)) {
		t.Errorf("running job's start = %v", s.Start)
	}
	if s := byID["4100008"]; !s.Start.IsZero() {
		t.Errorf("pending job's start N/A read as %v", s.Start)
	}
}

func TestSlurmParseStatusErrors(t *testing.T) {
	if jobs, err := (Slurm{}).ParseStatus(""); err != nil || len(jobs) != 0 {
		t.Errorf("empty reply: %v %v", jobs, err)
	}
	// squeue's error for an id it does not know is not a status line; the
	// remote side treats the failed command as "ask again", never "gone".
	if _, err := (Slurm{}).ParseStatus(golden(t, "squeue-invalid.txt")); err == nil {
		t.Error("squeue's error text parsed as a status")
	}
}

func TestSlurmParseSubmit(t *testing.T) {
	for in, want := range map[string]string{golden(t, "sbatch-parsable.txt"): "4100007", "123;cluster2\n": "123", "77_1\n": "77_1"} {
		if got, err := (Slurm{}).ParseSubmit(in); err != nil || got != want {
			t.Errorf("ParseSubmit(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := (Slurm{}).ParseSubmit(golden(t, "sbatch-bad-partition.txt")); err == nil {
		t.Error("an error message parsed as a job id")
	}
}

func TestSlurmParseTest(t *testing.T) {
	got, err := Slurm{}.ParseTest(golden(t, "sbatch-test-only.txt"))
	if err != nil || !got.Equal(time.Date(2026, 12, 4, 0, 50, 57, 0, time.UTC)) {
		t.Errorf("ParseTest = %v, %v", got, err)
	}
	if _, err := (Slurm{}).ParseTest(golden(t, "sbatch-impossible.txt")); err == nil || !strings.Contains(err.Error(), "not available") {
		t.Errorf("impossible request: %v", err)
	}
}

func TestSlurmParseAccounting(t *testing.T) {
	out := "TIMEOUT|None|2026-12-01T23:13:57|kq-n[3-4]|41|kq-a\nCANCELLED by 1000|None|Unknown|None assigned|42|kq-b\nOUT_OF_MEMORY|OutOfMemory|2026-12-01T23:13:57|gpu7|43|kq-c\n"
	jobs, err := Slurm{}.ParseAccounting(out)
	if err != nil || len(jobs) != 3 {
		t.Fatalf("ParseAccounting = %v, %v", jobs, err)
	}
	want := []struct{ reason, node string }{{EndTimeLimit, "kq-n3"}, {EndCancelled, ""}, {EndOutOfMemory, "gpu7"}}
	for i, w := range want {
		if jobs[i].Phase != Ended || jobs[i].Reason != w.reason || jobs[i].Node != w.node {
			t.Errorf("job %d = %+v, want %v", i, jobs[i], w)
		}
	}
	if _, err := (Slurm{}).ParseAccounting(golden(t, "sacct-disabled.txt")); err == nil {
		t.Error("sacct's error text parsed as a job")
	}
}

func TestSlurmScript(t *testing.T) {
	r := Request{Name: "kq-1", Output: "/rt/kernel-kq-1.out", Body: "exec sh x",
		Resources: Resources{Time: "2:00", Partition: "gpu", Gres: "gpu:1", CPUs: "4", Mem: "16G", Account: "proj",
			QOS: "short", Constraint: "a100", Extra: []string{"--exclusive"}}}
	got, err := Slurm{}.Script(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `#!/bin/sh
#SBATCH --job-name=kq-1
#SBATCH --no-requeue
#SBATCH --time=2:00
#SBATCH --output=/rt/kernel-kq-1.out
#SBATCH --signal=B:USR1@600
#SBATCH --partition=gpu
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --account=proj
#SBATCH --qos=short
#SBATCH --constraint=a100
#SBATCH --exclusive
exec sh x
`
	if got != want {
		t.Errorf("Script =\n%s\nwant\n%s", got, want)
	}
	r.Time = ""
	if _, err := (Slurm{}).Script(r); err == nil || !strings.Contains(err.Error(), "time is required") {
		t.Errorf("no time: %v", err)
	}
	r.Time, r.Partition = "1", "a\n#SBATCH --uid=0"
	if _, err := (Slurm{}).Script(r); err == nil {
		t.Error("a line break in a value was written into the script")
	}
}

func TestSlurmDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"0:30": 30 * time.Second, "4:58": 298 * time.Second,
		"1:30:00": 90 * time.Minute, "2-00:00:00": 48 * time.Hour, "1-02:03:04": 26*time.Hour + 3*time.Minute + 4*time.Second,
		"UNLIMITED": -1, "INVALID": -1, "NOT_SET": -1, "1-12": -1} {
		if got := slurmDuration(in); got != want {
			t.Errorf("slurmDuration(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestSlurmLiveStates(t *testing.T) {
	live := strings.Join(Slurm{}.LiveStates(), " ")
	for _, s := range []string{"PENDING", "RUNNING", "COMPLETING", "SUSPENDED"} {
		if !strings.Contains(live, s) {
			t.Errorf("%s not live: %s", s, live)
		}
	}
	for _, s := range []string{"COMPLETED", "TIMEOUT", "CANCELLED", "FAILED", "NODE_FAIL"} {
		if strings.Contains(" "+live+" ", " "+s+" ") {
			t.Errorf("%s counted as live", s)
		}
	}
}

func TestFor(t *testing.T) {
	if s, err := For("slurm"); err != nil || s.Name() != "slurm" {
		t.Errorf("For(slurm) = %v, %v", s, err)
	}
	if _, err := For("pbs"); err == nil {
		t.Error("For(pbs) should fail: no untested scheduler ships")
	}
}
