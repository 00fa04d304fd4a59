//go:build unix

package remote

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRemoteWaitForConnectionFile: the connection file is reported however
// the wait is woken (inotifywait's events, or polling where the server has
// no inotify-tools), for a kernel that writes it late, in two steps, or
// prints it; and no helper of the wait (inotifywait, its ticker) outlives
// it.
func TestRemoteWaitForConnectionFile(t *testing.T) {
	kernels := map[string]string{
		"late":    `sleep 0.4; printf '{"shell_port": 1}\n' > "$file"`,
		"partial": `printf '{"shell_port": 1,' > "$file"; sleep 0.3; printf '\n"x": 2}\n' >> "$file"`,
		"printed": `sleep 0.2; printf '{"shell_port": 7}\n'`,
	}
	for _, poll := range []bool{false, true} {
		for name, body := range kernels {
			t.Run(map[bool]string{false: "events", true: "poll"}[poll]+"/"+name, func(t *testing.T) {
				if !poll {
					if _, err := exec.LookPath("inotifywait"); err != nil {
						t.Skip("no inotifywait (Debian: inotify-tools)")
					}
				}
				rt := filepath.Join(t.TempDir(), "rt")
				spec := KernelSpec{Command: fakeKernel(t, body), RuntimeDir: rt, ID: "w", Linger: time.Minute}
				r := runRemote(t, "/bin/sh", vars{rt: rt, id: spec.ID, linger: spec.Linger, start: spec.StartScript(), poll: poll}, "op_start")
				all := strings.Join(r.until(tagEnd), "\n")
				if !strings.Contains(all, `"shell_port": `) {
					t.Fatalf("no connection file:\n%s", all)
				}
				if !poll {
					waitNoInotify(t, rt)
				}
				if left, _ := filepath.Glob(filepath.Join(rt, "*.ev")); len(left) > 0 {
					st, _ := os.Lstat(left[0])
					t.Errorf("the wait's fifo is left: %v (%v)", left, st.Mode())
				}
				r.send("kill")
				r.until(tagStopped)
			})
		}
	}
}

// TestRemoteWaitHelpersGoneWithTheWait: the wait for the connection file
// has ended its inotifywait by the time it reports the file, however slowly
// that inotifywait dies (here, an inotifywait on PATH that takes 0.5 s over
// its TERM, as a loaded server can): kq's exit, or a look at the server's
// processes, may follow the report at once.
func TestRemoteWaitHelpersGoneWithTheWait(t *testing.T) {
	bin := t.TempDir()
	fake := filepath.Join(bin, "inotifywait")
	// It ends by itself within 5 s, so that none outlives the test.
	must(t, os.WriteFile(fake, []byte("#!/bin/sh\ntrap 'sleep 0.5; exit 0' TERM\n"+
		"echo 'Watches established.' >&2\ni=0\nwhile [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done\n"), 0o755))
	rt := filepath.Join(t.TempDir(), "rt")
	spec := KernelSpec{Command: fakeKernel(t, `sleep 0.3; printf '{"shell_port": 1}\n' > "$file"`),
		RuntimeDir: rt, ID: "g", Linger: time.Minute}
	r := runRemote(t, "/bin/sh", vars{rt: rt, id: spec.ID, linger: spec.Linger, start: spec.StartScript()},
		"op_start", "PATH="+bin+":"+os.Getenv("PATH"))
	if all := strings.Join(r.until(tagEnd), "\n"); !strings.Contains(all, `"shell_port": `) {
		t.Fatalf("no connection file:\n%s", all)
	}
	// The wait watches rt itself; the hold, by now, the kernel's log in it.
	if left := inotifyWatching(func(target string) bool { return target == rt }); left != "" {
		t.Errorf("the wait's inotifywait is still running as the file is reported: %s", left)
	}
	r.send("kill")
	r.until(tagStopped)
}

// waitNoInotify fails when an inotifywait watching the dir rt itself (the
// wait for the connection file; the hold watches the kernel's log in it)
// is still running a moment after the connection file was reported.
func waitNoInotify(t *testing.T, rt string) {
	t.Helper()
	waitNoWatch(t, func(target string) bool { return target == rt })
}

// waitNoWatch fails when an inotifywait whose target matches is still
// running 3 s on.
func waitNoWatch(t *testing.T, match func(target string) bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		left := inotifyWatching(match)
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("inotifywait left running: %s", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inotifyWatching is the command line of a running inotifywait whose
// target (its last argument) matches, or "".
func inotifyWatching(match func(target string) bool) string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 1 && strings.HasSuffix(args[1], "/inotifywait") {
			args = args[1:] // a script run by its interpreter (a test's stand-in)
		}
		if strings.HasSuffix(args[0], "inotifywait") && match(args[len(args)-1]) {
			return strings.Join(args, " ")
		}
	}
	return ""
}

// under matches rt and every path in it.
func under(rt string) func(string) bool {
	return func(target string) bool { return target == rt || strings.HasPrefix(target, rt+"/") }
}

// TestRemoteRuntimeDirLikeJupyter: without a runtime_dir setting, the
// runtime dir remote.sh works out in sh is the one jupyter_core gives, for
// each environment variable that moves it.
func TestRemoteRuntimeDirLikeJupyter(t *testing.T) {
	jupyter, err := exec.LookPath("/usr/bin/jupyter")
	if err != nil {
		t.Skip("no /usr/bin/jupyter")
	}
	home := t.TempDir()
	for _, env := range [][]string{
		nil,
		{"XDG_DATA_HOME=" + home + "/xdg"},
		{"JUPYTER_DATA_DIR=" + home + "/data"},
		{"JUPYTER_RUNTIME_DIR=" + home + "/rt", "JUPYTER_DATA_DIR=" + home + "/data"},
	} {
		env = append([]string{"HOME=" + home, "JUPYTER_PLATFORM_DIRS=", "XDG_DATA_HOME=", "JUPYTER_DATA_DIR=", "JUPYTER_RUNTIME_DIR="}, env...)
		cmd := exec.Command(jupyter, "--runtime-dir")
		cmd.Env = append(os.Environ(), env...)
		want, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		r := runRemote(t, "/bin/sh", vars{id: "x"}, `say "$rt"; say KQ-JSON-END`, env...)
		got := r.until(tagEnd)[0]
		if got != strings.TrimSpace(string(want)) {
			t.Errorf("%v: runtime dir %q, jupyter says %q", env, got, want)
		}
	}
}

// TestRemoteWaitHelpersEndWithIt: when the shells of a start are killed
// outright (SIGKILL: no trap runs) while they wait for the connection
// file, inotifywait and its ticker end by themselves within seconds.
func TestRemoteWaitHelpersEndWithIt(t *testing.T) {
	if _, err := exec.LookPath("inotifywait"); err != nil {
		t.Skip("no inotifywait (Debian: inotify-tools)")
	}
	rt := filepath.Join(t.TempDir(), "rt")
	spec := KernelSpec{Command: fakeKernel(t, ""), RuntimeDir: rt, ID: "k", Linger: time.Minute}
	r := runRemote(t, "/bin/sh", vars{rt: rt, id: spec.ID, linger: spec.Linger, start: spec.StartScript()}, "op_start")
	for l := r.next(); !strings.HasPrefix(l, tagPID); l = r.next() {
		if l == "" {
			t.Fatal("no kernel pid")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for inotifyWatching(under(rt)) == "" {
		if time.Now().After(deadline) {
			t.Fatal("no inotifywait while the start waits")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range descendants(r.cmd.Process.Pid) {
		if c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p)); strings.TrimSpace(string(c)) == "sh" || strings.TrimSpace(string(c)) == "dash" {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
	_ = r.cmd.Process.Kill()
	waitNoWatch(t, under(rt))
}

// descendants are the processes below pid, found by their parent pids.
func descendants(pid int) []int {
	parent := map[int]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		b, _ := os.ReadFile(s)
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 {
			p, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
			parent[p], _ = strconv.Atoi(f[1])
		}
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// TestRemoteHoldSeesKernelExit: a kernel that exits by itself (as after a
// kernel manager's shutdown_request) is reported (KQ-DIED) as soon as its
// log is closed, where inotifywait is, and not at the ticker's next look
// (30 s away here); when polling, at the next tick. Its files are removed
// and nothing of the hold's watch is left running.
func TestRemoteHoldSeesKernelExit(t *testing.T) {
	for _, poll := range []bool{false, true} {
		t.Run(map[bool]string{false: "events", true: "poll"}[poll], func(t *testing.T) {
			op := "op_start"
			if !poll {
				if _, err := exec.LookPath("inotifywait"); err != nil {
					t.Skip("no inotifywait (Debian: inotify-tools)")
				}
				op = "tick_every=30; op_start"
			}
			rt := filepath.Join(t.TempDir(), "rt")
			body := `printf '{"shell_port": 1}\n' > "$file"; sleep 1; exit 0`
			spec := KernelSpec{Command: fakeKernel(t, body), RuntimeDir: rt, ID: "x", Linger: time.Minute}
			r := runRemote(t, "/bin/sh", vars{rt: rt, id: spec.ID, linger: spec.Linger, start: spec.StartScript(), poll: poll}, op)
			r.until(tagEnd)
			began := time.Now()
			r.until(tagDied)
			if took := time.Since(began); !poll && took > 15*time.Second {
				t.Fatalf("the kernel's exit was reported after %v: at a tick, not when its log closed", took)
			}
			waitNoWatch(t, under(rt))
			if left, _ := filepath.Glob(filepath.Join(rt, "kernel-kq-x*")); len(left) > 0 {
				t.Errorf("files left after the kernel's exit: %v", left)
			}
		})
	}
}

// TestRemoteProcStat: remote.sh's own reading of /proc/PID/stat (no
// process of its own) gives a process's state and its start time, the
// field that tells it apart from a later process with the same pid, for a
// process whose command name holds spaces and a ")"; alive is false for a
// zombie and for a pid whose start time is not the recorded one, and true
// for a process whose main thread has ended while another thread runs.
func TestRemoteProcStat(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	dir := t.TempDir()
	odd := filepath.Join(dir, "odd) name x")
	must(t, os.Symlink("/bin/sleep", odd))
	child := exec.Command(odd, "30")
	must(t, child.Start())
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	zomb := exec.Command("/bin/true")
	must(t, zomb.Start())
	t.Cleanup(func() { _ = zomb.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for running(zomb.Process.Pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // not waited for: a zombie once it exits
	}
	// A process whose main thread ended while another thread runs (as a
	// kernel's end goes) shows as a zombie, and is not gone yet.
	threads := exec.Command("/usr/bin/python3", "-c",
		"import ctypes, threading, time; threading.Thread(target=time.sleep, args=(30,)).start(); time.sleep(0.1); ctypes.CDLL(None).pthread_exit(None)")
	must(t, threads.Start())
	t.Cleanup(func() { _ = threads.Process.Kill(); _ = threads.Wait() })
	for running(threads.Process.Pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // its main thread ends
	}
	want := procStart(t, child.Process.Pid)
	for _, sh := range shells(t) {
		op := fmt.Sprintf(`proc_stat %d; say "$pstate $pstart"; say "$(stamp %d)"
last=%d; last_start=%s; alive && say alive || say dead
last=%d; last_start=1; alive && say alive || say dead
last=%d; last_start=; alive && say alive || say dead
last=%d; last_start=; alive && say alive || say dead
say KQ-JSON-END`, child.Process.Pid, child.Process.Pid, child.Process.Pid, want, child.Process.Pid, zomb.Process.Pid,
			threads.Process.Pid)
		r := runRemote(t, sh, vars{rt: filepath.Join(dir, "rt"), id: "none"}, op)
		got := r.until(tagEnd)
		wantLines := []string{"S " + want, want, "alive", "dead", "dead", "alive", tagEnd}
		if !slices.Equal(got, wantLines) {
			t.Errorf("%s: got %q, want %q", sh, got, wantLines)
		}
	}
}

// procStart is field 22 of /proc/PID/stat: the process's start time.
func procStart(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(t, err)
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ") ")+2:])
	return f[19]
}
