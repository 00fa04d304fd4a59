//go:build unix

package remote

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestTranscripts")

// TestTranscripts feeds recorded remote.sh output to the parser and
// compares what it makes of it with the golden file next to it.
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.transcript")
	must(t, err)
	if len(files) == 0 {
		t.Fatal("no transcripts")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			must(t, err)
			var p parser
			var events []string
			for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
				if ev := p.feed(l); ev != "" {
					events = append(events, ev)
				}
			}
			parsed := map[string]any{"file": p.file, "dir": p.dir, "pid": p.pid, "errors": p.errs, "log": p.log,
				"entries": entriesWithJSON(p.entries), "json": string(p.json), "final": p.final, "events": events}
			if p.warm {
				parsed["warm"] = true
			}
			got, err := json.MarshalIndent(parsed, "", "  ")
			must(t, err)
			golden := strings.TrimSuffix(f, ".transcript") + ".golden"
			if *update {
				must(t, os.WriteFile(golden, append(got, '\n'), 0o644))
			}
			want, err := os.ReadFile(golden)
			must(t, err)
			if strings.TrimSpace(string(want)) != strings.TrimSpace(string(got)) {
				t.Fatalf("parse of %s:\n%s\nwant (%s):\n%s", f, got, golden, want)
			}
		})
	}
}

func entriesWithJSON(es []Entry) []map[string]any {
	var out []map[string]any
	for _, e := range es {
		out = append(out, map[string]any{"entry": e, "json": string(e.JSON)})
	}
	return out
}

// localRunner runs ops with the local sh, as SSH runs them on a server.
type localRunner struct{}

func (localRunner) Start(ctx context.Context, command string, stderr io.Writer) (Process, error) {
	return startLocal(command, stderr)
}

// startLocal runs command with the local sh, its stdin and stdout piped.
func startLocal(command string, stderr io.Writer) (Process, error) {
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &localProcess{cmd: cmd, stdin: stdin, stdout: stdout}, nil
}

type localProcess struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.Reader
}

func (p *localProcess) Stdin() io.WriteCloser { return p.stdin }
func (p *localProcess) Stdout() io.Reader     { return p.stdout }
func (p *localProcess) Wait() error           { return p.cmd.Wait() }
func (p *localProcess) Close() error          { return p.cmd.Process.Kill() }

// TestOps drives every op through the Runner seam against the real
// remote.sh: start and hold, list, interrupt, restart (same file, new
// pid), stop; then the errors of ops on a kernel that is gone.
func TestOps(t *testing.T) {
	if exec.Command("env", "--default-signal=INT", "true").Run() != nil {
		t.Skip("env(1) cannot reset SIGINT here: a background kernel ignores it")
	}
	ctx := context.Background()
	r := localRunner{}
	rt := filepath.Join(t.TempDir(), "rt")
	marker := filepath.Join(t.TempDir(), "interrupted")
	kernel := fakeKernel(t, `trap 'echo int >> `+shQuote(marker)+`' INT
echo '{"shell_port": 7, "key": "k"}' > "$file"
while :; do sleep 1; done`)
	h, err := Start(ctx, r, KernelSpec{Command: kernel, RuntimeDir: rt, ID: "ops", Linger: time.Minute})
	must(t, err)
	defer h.Close()
	if h.PID == 0 || h.Path != filepath.Join(rt, "kernel-kq-ops.json") || !strings.Contains(string(h.JSON), `"shell_port": 7`) {
		t.Fatalf("start: pid %d path %s json %s", h.PID, h.Path, h.JSON)
	}
	entries, err := List(ctx, r, rt)
	must(t, err)
	if len(entries) != 1 || entries[0].ID != "ops" || !entries[0].KQ || !entries[0].Alive || entries[0].PID != h.PID {
		t.Fatalf("list: %+v", entries)
	}
	must(t, Interrupt(ctx, r, rt, "ops"))
	waitFor(t, func() bool { b, _ := os.ReadFile(marker); return len(b) > 0 })
	pid, err := Restart(ctx, r, rt, "ops")
	must(t, err)
	if pid == 0 || pid == h.PID {
		t.Fatalf("restart: pid %d (was %d)", pid, h.PID)
	}
	data, err := Cat(ctx, r, h.Path)
	must(t, err)
	if !strings.Contains(string(data), `"shell_port": 7`) {
		t.Fatalf("cat: %s", data)
	}
	must(t, StopKernel(ctx, r, rt, "ops", 0))
	waitFor(t, func() bool { return !running(pid) })
	if err := Interrupt(ctx, r, rt, "ops"); !errors.Is(err, ErrGone) {
		t.Errorf("interrupt of a stopped kernel: %v", err)
	}
	if _, err := Restart(ctx, r, rt, "ops"); !errors.Is(err, ErrGone) {
		t.Errorf("restart of a stopped kernel: %v", err)
	}
	if _, err := Attach(ctx, r, rt, "ops"); !errors.Is(err, ErrGone) {
		t.Errorf("attach to a stopped kernel: %v", err)
	}
	var rerr *Error
	if _, err := Cat(ctx, r, filepath.Join(rt, "nothing.json")); !errors.As(err, &rerr) {
		t.Errorf("cat of a missing file: %v", err)
	}
}

// TestHoldStop: a hold's Stop ends the kernel and removes its files, and
// Release leaves it running for the watchdog.
func TestHoldStop(t *testing.T) {
	ctx := context.Background()
	rt := filepath.Join(t.TempDir(), "rt")
	kernel := fakeKernel(t, `echo '{"shell_port": 7}' > "$file"`)
	for _, graceful := range []bool{false, true} {
		h, err := Start(ctx, localRunner{}, KernelSpec{Command: kernel, RuntimeDir: rt, ID: "stop", Linger: time.Minute})
		must(t, err)
		pid := h.PID
		must(t, h.Stop(ctx, graceful))
		waitFor(t, func() bool { return !running(pid) })
		if left, _ := filepath.Glob(filepath.Join(rt, "kernel-kq-stop*")); len(left) > 0 {
			t.Fatalf("graceful %v: files left %v", graceful, left)
		}
	}
	h, err := Start(ctx, localRunner{}, KernelSpec{Command: kernel, RuntimeDir: rt, ID: "rel", Linger: time.Minute})
	must(t, err)
	must(t, h.Release(ctx))
	if !running(h.PID) {
		t.Fatal("release stopped the kernel")
	}
	h2, err := Attach(ctx, localRunner{}, rt, "rel")
	must(t, err)
	must(t, h2.Stop(ctx, false))
	waitFor(t, func() bool { return !running(h.PID) })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("condition not met in 10s")
}
