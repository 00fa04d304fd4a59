//go:build unix

package remote

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
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
