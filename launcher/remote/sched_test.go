//go:build unix

package remote

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSched: op_sched runs one command with its words quoted as data,
// returns its output and status, feeds it input, and names a program the
// host does not have.
func TestSched(t *testing.T) {
	out, code, err := Sched(t.Context(), localRunner{}, []string{"printf", "%s|%s\n", "a b", "$HOME;x"})
	if err != nil || code != 0 || out != "a b|$HOME;x" {
		t.Fatalf("Sched = %q, %d, %v", out, code, err)
	}
	out, code, err = Sched(t.Context(), localRunner{}, []string{"sh", "-c", "echo refused >&2; exit 3"})
	if err != nil || code != 3 || out != "refused" {
		t.Fatalf("a failing command: %q, %d, %v", out, code, err)
	}
	out, _, err = SchedInput(t.Context(), localRunner{}, []string{"wc", "-l"}, "#!/bin/sh\n#SBATCH --time=1\ntrue")
	if err != nil || strings.TrimSpace(out) != "3" {
		t.Fatalf("input: %q, %v", out, err)
	}
	if _, _, err := Sched(t.Context(), localRunner{}, []string{"no-such-sbatch-here", "--parsable"}); !errors.Is(err, ErrNoCommand) {
		t.Fatalf("a missing command: %v", err)
	}
}

// TestShWords: the job's commands are sh words in which only the job id
// and the script path expand.
func TestShWords(t *testing.T) {
	cmd := shWords([]string{"squeue", "-j", JobArg, "-o", "%T|%i", ScriptArg, "it's"})
	out, err := exec.Command("/bin/sh", "-c", `job=42; base=/rt/kernel-kq-1; for w in `+cmd+`; do printf '[%s]' "$w"; done`).Output()
	if err != nil || string(out) != "[squeue][-j][42][-o][%T|%i][/rt/kernel-kq-1.sbatch][it's]" {
		t.Fatalf("%s -> %q, %v", cmd, out, err)
	}
}

// TestJobNotSubmitted: job.sh's login side, under the local sh, when the
// submit command does not exist on the host: the start fails saying the
// scheduler refused the job, with the shell's own words, and leaves no
// file behind.
func TestJobNotSubmitted(t *testing.T) {
	rt := t.TempDir()
	job := &JobSpec{BatchScript: "#!/bin/sh\ntrue\n", Submit: []string{"no-such-sbatch", "--parsable", ScriptArg},
		Query: []string{"false"}, Accounting: []string{"false"}, Lookup: []string{"true"}, Cancel: []string{"true"},
		LiveStates: []string{"PENDING", "RUNNING"}}
	_, err := Start(t.Context(), localRunner{}, KernelSpec{Command: "python3 -m ipykernel_launcher", RuntimeDir: rt, ID: "nojob",
		Linger: time.Minute, Job: job})
	if err == nil || !strings.Contains(err.Error(), "the scheduler refused the kernel's batch job") ||
		!strings.Contains(err.Error(), "no-such-sbatch") || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("Start = %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, _ := filepath.Glob(filepath.Join(rt, "*"))
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: %q", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
