package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// TestBenchQuick: the benchmark command (e2e/bench) runs end to end in its
// smoke mode on loopback: every method reaches a first cell, measures and
// cleans up, and the table and charts are written; its scale mode starts 4
// kq sessions at once, all of which run their cell, its footprint mode
// streams 4 MiB through one, and its manager mode takes the local kernel and
// kq kernel through start, interrupt (the cell must end in
// KeyboardInterrupt), two restarts and shutdown under jupyter_client's
// KernelManager. Timings are printed, never checked.
func TestBenchQuick(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bench")
	if out, err := exec.Command("go", "build", "-o", bin, "./bench").CombinedOutput(); err != nil {
		t.Fatalf("build bench: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "out")
	cmd := exec.CommandContext(contextFor(t, 5*time.Minute), bin, "-quick", "-scenarios", "loopback", "-kq", kqBin, "-out", out,
		"-scale", "4", "-footprint", "4", "-manager", "1")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench -quick: %v\n%s", err, b)
	}
	for _, m := range []string{"| floor |", "| manual |", "| ssh -L x5 |", "| jupyter tunnel |", "| **kq** |"} {
		if !strings.Contains(string(b), m) {
			t.Errorf("no row %q in:\n%s", m, b)
		}
	}
	// The scale table's row starts with the sessions and how many
	// succeeded: all 4; a manager mode's row, with its runs: 1.
	for _, m := range []string{"**scale: 4 kq sessions", "\n| 4 | 4 |", "**footprint: 4 MiB", "\n| kq | 1 |",
		"**a kernel under jupyter_client's KernelManager", "\n| loopback | floor | 1 |", "\n| loopback | kq | 1 |"} {
		if !strings.Contains(string(b), m) {
			t.Errorf("no %q in:\n%s", m, b)
		}
	}
	for _, f := range []string{"results.md", "first-cell.png", "throughput.png", "rtt-loopback.png", "modes.md"} {
		if _, err := exec.Command("test", "-s", filepath.Join(out, f)).CombinedOutput(); err != nil {
			t.Errorf("%s not written", f)
		}
	}
	// Nothing of the benchmark's is left running: every process it starts
	// has its temporary directory on its command line.
	for _, pid := range sshdtest.ProcessesMatching("/kq-bench-") {
		t.Errorf("left running: %d %s", pid, cmdline(pid))
	}
	t.Logf("%s", b)
}
