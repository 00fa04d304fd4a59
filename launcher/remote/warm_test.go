//go:build unix

package remote

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRemoteWarmSpare: with warm, the first session starts its kernel and
// leaves a spare behind it; the next session of the same flavor takes the
// spare (KQ-WARM, the spare's own file) and leaves a new one; another
// flavor never takes it; a spare no session takes is stopped after linger
// and leaves no file; every spare runs under its own watchdog.
func TestRemoteWarmSpare(t *testing.T) {
	for _, sh := range shells(t) {
		t.Run(filepath.Base(sh), func(t *testing.T) {
			rt := filepath.Join(t.TempDir(), "rt")
			kernel := fakeKernel(t, `printf '{"shell_port": 1, "pid": %s}\n' $$ > "$file"`)
			spec := KernelSpec{Command: kernel, RuntimeDir: rt, ID: "first", Linger: 4 * time.Second, Warm: true}
			start := func(s KernelSpec) (*remoteRun, string, bool) {
				v := vars{rt: rt, id: s.ID, linger: s.Linger, start: s.StartScript(), warm: true, flavor: s.Flavor()}
				r := runRemote(t, sh, v, "op_start")
				lines := r.until(tagEnd)
				all := strings.Join(lines, "\n")
				return r, strings.TrimPrefix(lines[0], tagFile), strings.Contains(all, "\n"+tagWarm+"\n")
			}

			r1, f1, warm1 := start(spec)
			if warm1 || f1 != filepath.Join(rt, "kernel-kq-first.json") {
				t.Fatalf("first session: file %s, warm %v; want a fresh kernel", f1, warm1)
			}
			spare1 := waitSpare(t, rt, spec.Flavor(), "")

			second := spec
			second.ID = "second"
			r2, f2, warm2 := start(second)
			if !warm2 || f2 != filepath.Join(rt, "kernel-kq-"+spare1+".json") {
				t.Fatalf("second session: file %s, warm %v; want the spare %s", f2, warm2, spare1)
			}
			waitSpare(t, rt, spec.Flavor(), spare1) // a new spare, behind the one taken

			other := spec
			other.ID, other.WarmCode = "other", "import os"
			r3, f3, warm3 := start(other)
			if warm3 || f3 != filepath.Join(rt, "kernel-kq-other.json") {
				t.Fatalf("another flavor took a spare: %s, warm %v", f3, warm3)
			}
			for _, r := range []*remoteRun{r1, r2, r3} {
				r.send("kill")
				r.until(tagStopped)
			}
			// No session takes the spares now: each stops after linger.
			pids := sparePIDs(t, rt)
			deadline := time.Now().Add(spec.Linger + 15*time.Second)
			for {
				left, _ := filepath.Glob(filepath.Join(rt, "kernel-kq-*"))
				alive := 0
				for _, p := range pids {
					if syscall.Kill(p, 0) == nil {
						alive++
					}
				}
				if len(left) == 0 && alive == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after linger: files %v, %d of spares %v running", left, alive, pids)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

// waitSpare waits for a spare of flavor other than not, and returns its id.
func waitSpare(t *testing.T, rt, flavor, not string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		spares, _ := filepath.Glob(filepath.Join(rt, "kernel-kq-*.spare"))
		for _, s := range spares {
			id := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(s), "kernel-kq-"), ".spare")
			b, _ := os.ReadFile(s)
			if id != not && strings.TrimSpace(string(b)) == flavor {
				if _, err := os.Stat(filepath.Join(rt, "kernel-kq-"+id+".json")); err == nil {
					return id
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no spare of flavor %s in %s", flavor, rt)
	return ""
}

// sparePIDs are the kernel pids of the spares in rt, killed at the test's
// end if they are still there.
func sparePIDs(t *testing.T, rt string) []int {
	var pids []int
	metas, _ := filepath.Glob(filepath.Join(rt, "kernel-kq-*.kq"))
	for _, m := range metas {
		b, _ := os.ReadFile(m)
		for _, l := range strings.Split(string(b), "\n") {
			if p, err := strconv.Atoi(strings.TrimPrefix(l, "pid=")); err == nil && strings.HasPrefix(l, "pid=") {
				pids = append(pids, p)
			}
		}
	}
	t.Cleanup(func() {
		for _, p := range pids {
			_ = syscall.Kill(-p, syscall.SIGKILL)
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	return pids
}
