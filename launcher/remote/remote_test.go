//go:build unix

package remote

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// shells are the POSIX shells remote.sh is tested under: what /bin/sh is
// on the servers kq meets (dash on Debian and Ubuntu, bash on RHEL, macOS).
func shells(t *testing.T) []string {
	if runtime.GOOS == "windows" {
		t.Skip("needs a POSIX sh")
	}
	var out []string
	for _, sh := range []string{"/bin/sh", "/usr/bin/dash", "/bin/bash"} {
		if _, err := os.Stat(sh); err == nil {
			out = append(out, sh)
		}
	}
	return out
}

// remoteRun is remote.sh run as kq runs it on a server: `SHELL -s` with
// the program on stdin, here with the local shell.
type remoteRun struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	pids  []int // kernel pids seen, killed at the end
}

func runRemote(t *testing.T, shell string, v vars, op string, env ...string) *remoteRun {
	t.Helper()
	r := &remoteRun{t: t, cmd: exec.Command(shell, "-s"), lines: make(chan string, 10000)}
	r.cmd.Env = append(os.Environ(), env...)
	r.cmd.Stderr = os.Stderr
	var err error
	r.stdin, err = r.cmd.StdinPipe()
	must(t, err)
	stdout, err := r.cmd.StdoutPipe()
	must(t, err)
	must(t, r.cmd.Start())
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		close(r.lines)
	}()
	_, err = io.WriteString(r.stdin, program(v, op))
	must(t, err)
	t.Cleanup(func() {
		r.stdin.Close()
		for _, p := range r.pids {
			_ = syscall.Kill(-p, syscall.SIGKILL)
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	})
	return r
}

// next is the next non-empty line other than a tick; "" at the end of the
// output.
func (r *remoteRun) next() string {
	r.t.Helper()
	for {
		select {
		case l, ok := <-r.lines:
			if !ok {
				return ""
			}
			if l == tagTick || l == "" {
				continue
			}
			if strings.HasPrefix(l, tagPID) {
				p, _ := strconv.Atoi(strings.TrimPrefix(l, tagPID))
				r.pids = append(r.pids, p)
			}
			return l
		case <-time.After(30 * time.Second):
			r.t.Fatal("remote side silent for 30s")
		}
	}
}

// until reads lines up to and including want, or fails at the end.
func (r *remoteRun) until(want string) []string {
	r.t.Helper()
	var got []string
	for {
		l := r.next()
		got = append(got, l)
		switch {
		case l == want:
			return got
		case l == "":
			r.t.Fatalf("output ended before %q:\n%s", want, strings.Join(got, "\n"))
		}
	}
}

// ping writes what kq writes while it holds the kernel, every 500 ms,
// until the test ends.
func (r *remoteRun) ping() {
	stop := make(chan struct{})
	r.t.Cleanup(func() { close(stop) })
	go func() {
		for {
			if _, err := io.WriteString(r.stdin, "ping\n"); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
}

func (r *remoteRun) send(line string) {
	r.t.Helper()
	_, err := io.WriteString(r.stdin, line+"\n")
	must(r.t, err)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fakeKernel writes a script that acts as a kernel command: it takes
// -f FILE, runs body (with $file set), and then sleeps like a kernel.
func fakeKernel(t *testing.T, body string) string {
	path := filepath.Join(t.TempDir(), "kernel.sh")
	script := "while [ $# -gt 0 ]; do [ \"$1\" = -f ] && file=$2; shift; done\n" + body + "\nexec sleep 60\n"
	must(t, os.WriteFile(path, []byte(script), 0o755))
	return "/bin/sh " + shQuote(path)
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	must(t, err)
	return st.Mode().Perm()
}

// TestRemoteStart runs op_start under each shell: hostile workdir and env
// values arrive as data, the kernel runs under the login umask while kq's
// own files are 0600, the protocol reports file, pid and JSON, and "kill"
// stops the kernel and removes every file.
func TestRemoteStart(t *testing.T) {
	for _, sh := range shells(t) {
		t.Run(filepath.Base(sh), func(t *testing.T) {
			dir := t.TempDir()
			rt := filepath.Join(dir, "run time")
			work := filepath.Join(dir, `it's a $(dir) \n`)
			must(t, os.Mkdir(work, 0o755))
			kernel := fakeKernel(t, `printf '{"pwd": "%s", "v": "%s", "shell_port": 1}\n' "$(pwd)" "$KQ_V" > "$file"
: > made-by-kernel`)
			spec := KernelSpec{Command: kernel, RuntimeDir: rt, Workdir: work,
				Env: map[string]string{"KQ_V": `a'b"c $(x) \n`}, ID: "test-id", Linger: time.Minute}
			old := syscall.Umask(0o022)
			r := runRemote(t, sh, vars{rt: rt, id: spec.ID, linger: spec.Linger, start: spec.StartScript()}, "op_start")
			syscall.Umask(old)
			all := strings.Join(r.until(tagEnd), "\n")
			base := filepath.Join(rt, "kernel-kq-test-id")
			if !strings.Contains(all, tagFile+base+".json") || !strings.Contains(all, tagPID) {
				t.Fatalf("protocol:\n%s", all)
			}
			if !strings.Contains(all, `"pwd": "`+work+`"`) || !strings.Contains(all, `"v": "a'b"c $(x) \n"`) {
				t.Fatalf("workdir or env mangled:\n%s", all)
			}
			if m := mode(t, rt); m != 0o700 {
				t.Errorf("runtime dir mode %o", m)
			}
			for _, ext := range []string{".json", ".log", ".kq", ".cmd"} {
				if m := mode(t, base+ext); m != 0o600 {
					t.Errorf("%s: mode %o, want 0600", ext, m)
				}
			}
			if m := mode(t, filepath.Join(work, "made-by-kernel")); m != 0o644 {
				t.Errorf("a file the kernel wrote has mode %o, want 0644 (the login umask 022)", m)
			}
			r.send("kill")
			r.until(tagStopped)
			left, _ := filepath.Glob(base + "*")
			if len(left) > 0 {
				t.Fatalf("files left: %v", left)
			}
		})
	}
}

// TestRemoteWorkdirIsData: a workdir that would run a command if it were
// shell, or that starts with "-", is only ever a directory name.
func TestRemoteWorkdirIsData(t *testing.T) {
	for _, sh := range shells(t) {
		t.Run(filepath.Base(sh), func(t *testing.T) {
			dir := t.TempDir()
			marker := filepath.Join(dir, "pwned")
			kernel := fakeKernel(t, `printf '{"pwd": "%s", "shell_port": 1}\n' "$(pwd)" > "$file"`)
			spec := KernelSpec{Command: kernel, RuntimeDir: filepath.Join(dir, "rt"), ID: "wd",
				Workdir: "/nonexistent/$(touch " + marker + ")`touch " + marker + "`", Linger: time.Minute}
			r := runRemote(t, sh, vars{rt: spec.RuntimeDir, id: spec.ID, linger: spec.Linger, start: spec.StartScript()}, "op_start")
			got := strings.Join(r.until(tagFailed), "\n")
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the workdir ran a command")
			}
			if !strings.Contains(got, "cannot cd to workdir /nonexistent/$(touch") {
				t.Errorf("no cd error naming the workdir as given:\n%s", got)
			}

			dash := filepath.Join(dir, "-P")
			must(t, os.Mkdir(dash, 0o755))
			spec.ID, spec.Workdir = "wd2", "-P"
			t.Chdir(dir) // a relative workdir is relative to the login dir
			r = runRemote(t, sh, vars{rt: spec.RuntimeDir, id: spec.ID, linger: spec.Linger, start: spec.StartScript()}, "op_start")
			got = strings.Join(r.until(tagEnd), "\n")
			r.send("kill")
			r.until(tagStopped)
			if !strings.Contains(got, `"pwd": "`) {
				t.Fatalf("kernel did not start in -P:\n%s", got)
			}
		})
	}
}

// TestRemoteKernelCommands: commands as users write them start: leading
// VAR=value assignments, and a kernel that prints its JSON on one line
// instead of writing the file.
func TestRemoteKernelCommands(t *testing.T) {
	for _, sh := range shells(t) {
		t.Run(filepath.Base(sh), func(t *testing.T) {
			rt := filepath.Join(t.TempDir(), "rt")
			assign := "KQ_A=1 KQ_B='two words' " + fakeKernel(t, `printf '{"a": "%s", "b": "%s", "shell_port": 1}\n' "$KQ_A" "$KQ_B" > "$file"`)
			oneLine := fakeKernel(t, `echo 'starting'; echo '{"shell_port": 5, "key": "k", "ip": "127.0.0.1"}'; echo 'more output'`)
			for name, tc := range map[string]struct{ cmd, want string }{
				"assign":   {assign, `{"a": "1", "b": "two words", "shell_port": 1}`},
				"one-line": {oneLine, `{"shell_port": 5, "key": "k", "ip": "127.0.0.1"}`},
			} {
				spec := KernelSpec{Command: tc.cmd, RuntimeDir: rt, ID: name, Linger: time.Minute}
				r := runRemote(t, sh, vars{rt: rt, id: spec.ID, linger: spec.Linger, start: spec.StartScript()}, "op_start")
				got := r.until(tagEnd)
				i := slices.Index(got, tagBegin)
				if i < 0 || strings.TrimSpace(strings.Join(got[i+1:len(got)-1], "\n")) != tc.want {
					t.Errorf("%s: got\n%s", name, strings.Join(got, "\n"))
				}
				r.send("kill")
				r.until(tagStopped)
			}
		})
	}
}

// TestRemoteSlowStartHeld: a kernel that takes longer than linger to
// write its file is not stopped while its session pings.
func TestRemoteSlowStartHeld(t *testing.T) {
	sh := shells(t)[0]
	rt := filepath.Join(t.TempDir(), "rt")
	spec := KernelSpec{Command: fakeKernel(t, `sleep 7; echo '{"shell_port": 1}' > "$file"`), RuntimeDir: rt, ID: "slow", Linger: 2 * time.Second}
	r := runRemote(t, sh, vars{rt: rt, id: spec.ID, linger: spec.Linger, start: spec.StartScript()}, "op_start")
	if l := r.next(); !strings.HasPrefix(l, tagFile) {
		t.Fatalf("first line %q", l)
	}
	r.ping()
	got := r.until(tagEnd)
	if slices.Contains(got, tagFailed) {
		t.Fatalf("slow kernel stopped: %v", got)
	}
	r.send("kill")
	r.until(tagStopped)
}

// TestWatchdogLinger runs op_start with no kq attached (stdin closed once
// the program is read): the watchdog stops the kernel once linger passes,
// even when someone has removed the runtime dir meanwhile.
func TestWatchdogLinger(t *testing.T) {
	sh := shells(t)[0]
	rt := filepath.Join(t.TempDir(), "rt")
	spec := KernelSpec{Command: fakeKernel(t, `echo '{"shell_port": 1}' > "$file"`), ID: "wd", Linger: 4 * time.Second}
	r := runRemote(t, sh, vars{rt: rt, id: spec.ID, linger: spec.Linger, start: spec.StartScript()}, "op_start")
	r.until(tagEnd)
	r.stdin.Close()
	pid := r.pids[0]
	// The remote side may still be writing files there: retry, bounded.
	var err error
	for i := 0; i < 50; i++ {
		if err = os.RemoveAll(rt); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	must(t, err)
	deadline := time.Now().Add(spec.Linger + 10*time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("kernel %d still running %s after linger", pid, spec.Linger)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRemoteLogCapped: a kernel that writes without end does not fill the
// server's disk: the watchdog keeps its log under the cap.
func TestRemoteLogCapped(t *testing.T) {
	sh := shells(t)[0]
	rt := filepath.Join(t.TempDir(), "rt")
	spec := KernelSpec{Command: fakeKernel(t, `echo '{"shell_port": 1}' > "$file"; head -c 3000000 /dev/zero | tr '\0' x`), ID: "log", Linger: time.Minute}
	r := runRemote(t, sh, vars{rt: rt, id: spec.ID, linger: spec.Linger, start: spec.StartScript()}, "op_start")
	r.until(tagEnd)
	r.ping()
	log := filepath.Join(rt, "kernel-kq-log.log")
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := os.Stat(log)
		must(t, err)
		if st.Size() > 0 && st.Size() <= 1<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log is %d bytes after 20s", st.Size())
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.send("kill")
	r.until(tagStopped)
}

// TestRemoteTrustsNothing: a runtime dir others can write to, or owned by
// someone else, is refused; files in it the user does not own are skipped;
// a recorded pid that now belongs to another process is never signalled.
func TestRemoteTrustsNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	for _, sh := range shells(t) {
		t.Run(filepath.Base(sh), func(t *testing.T) {
			rt := t.TempDir()
			must(t, os.Chmod(rt, 0o770))
			r := runRemote(t, sh, vars{rt: rt}, "op_list")
			if got := r.next(); got != "KQ-ERROR runtime dir "+rt+" is writable by other users" {
				t.Errorf("group-writable dir: %q", got)
			}
			must(t, os.Chmod(rt, 0o700))
			must(t, os.Chown(rt, 65534, 65534))
			r = runRemote(t, sh, vars{rt: rt}, "op_list")
			if got := r.next(); !strings.HasPrefix(got, "KQ-ERROR runtime dir "+rt+" is not owned by") {
				t.Errorf("foreign dir: %q", got)
			}
			must(t, os.Chown(rt, 0, 0))

			// A foreign file is skipped; a kq kernel whose pid was reused by
			// another process is dead, and stopping it leaves that process be.
			must(t, os.WriteFile(filepath.Join(rt, "kernel-foreign.json"), []byte(`{}`), 0o600))
			must(t, os.Chown(filepath.Join(rt, "kernel-foreign.json"), 65534, 65534))
			other := exec.Command("sleep", "60")
			must(t, other.Start())
			defer other.Process.Kill()
			must(t, os.WriteFile(filepath.Join(rt, "kernel-kq-reused.json"), []byte(`{}`), 0o600))
			must(t, os.WriteFile(filepath.Join(rt, "kernel-kq-reused.kq"),
				[]byte(fmt.Sprintf("pid=%d\nstart=1\nlinger=60\n", other.Process.Pid)), 0o600))
			r = runRemote(t, sh, vars{rt: rt}, "op_list")
			got := strings.Join(r.until(tagListEnd), "\n")
			if strings.Contains(got, "foreign") || !strings.Contains(got, fmt.Sprintf("|yes|%d|dead|", other.Process.Pid)) {
				t.Errorf("list:\n%s", got)
			}
			for _, op := range []string{"op_interrupt", "op_stop"} {
				r = runRemote(t, sh, vars{rt: rt, id: "reused"}, op)
				r.until("")
				if !running(other.Process.Pid) {
					t.Fatalf("%s signalled a process that only reused the kernel's pid", op)
				}
			}
		})
	}
}

// TestRemoteListMany: a runtime dir crowded with connection files is
// listed in full, every line kept.
func TestRemoteListMany(t *testing.T) {
	rt := t.TempDir()
	for i := range 300 {
		must(t, os.WriteFile(filepath.Join(rt, fmt.Sprintf("kernel-%03d.json", i)),
			[]byte("{\n  \"shell_port\": 1,\n  \"key\": \"x\"\n}\n"), 0o600))
	}
	r := runRemote(t, shells(t)[0], vars{rt: rt}, "op_list")
	q := newLineQueue()
	for l := r.next(); l != ""; l = r.next() {
		q.push(l)
	}
	q.end()
	entries := 0
	for {
		l, ok, err := q.next(nil)
		must(t, err)
		if !ok {
			break
		}
		if strings.HasPrefix(l, tagEntry) {
			entries++
		}
	}
	if entries != 300 {
		t.Fatalf("%d entries, want 300", entries)
	}
}

// TestRedact: a key in anything relayed from the server is removed.
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		`{"shell_port": 1, "key": "a1b2-c3", "ip": "x"}`: `{"shell_port": 1, "key": "<redacted>", "ip": "x"}`,
		`  "key":"a1b2",`:                      `  "key":"<redacted>",`,
		`{'key': b'a1b2', 'transport': 'tcp'}`: `{'key': b'<redacted>', 'transport': 'tcp'}`,
		`no key here`:                          `no key here`,
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// running is false for a process that is gone or a zombie (init may reap
// the orphaned kernel late).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	s := string(b)
	if i := strings.LastIndex(s, ") "); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// TestProtocolTags: every KQ-* tag remote.sh prints has its Go constant,
// and every constant is printed by remote.sh.
func TestProtocolTags(t *testing.T) {
	src, err := os.ReadFile("protocol.go")
	must(t, err)
	goTags := map[string]bool{}
	for _, m := range regexp.MustCompile(`tag\w+\s*=\s*"(KQ-[A-Z-]+) ?"`).FindAllStringSubmatch(string(src), -1) {
		goTags[m[1]] = true
	}
	shTags := map[string]bool{}
	for _, m := range regexp.MustCompile(`KQ-[A-Z][A-Z-]*[A-Z]`).FindAllString(lib, -1) {
		shTags[m] = true
	}
	for tag := range shTags {
		if !goTags[tag] {
			t.Errorf("remote.sh prints %s, which has no Go constant", tag)
		}
	}
	for tag := range goTags {
		if !shTags[tag] {
			t.Errorf("Go constant for %s, which remote.sh never prints", tag)
		}
	}
}

// TestLineQueue: lines come out in order, none lost, and a cancelled wait
// says so.
func TestLineQueue(t *testing.T) {
	q := newLineQueue()
	go func() {
		for i := range 5000 {
			q.push(strconv.Itoa(i))
		}
		q.end()
	}()
	for i := 0; ; i++ {
		l, ok, err := q.next(nil)
		must(t, err)
		if !ok {
			if i != 5000 {
				t.Fatalf("%d lines", i)
			}
			break
		}
		if l != strconv.Itoa(i) {
			t.Fatalf("line %d is %q", i, l)
		}
	}
	cancel := make(chan struct{})
	close(cancel)
	if _, _, err := newLineQueue().next(cancel); !errors.Is(err, errGaveUp) {
		t.Fatalf("cancelled wait: %v", err)
	}
}
