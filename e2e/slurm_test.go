package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/slurmtest"
	"github.com/kq-dev/kq/e2e/sshdtest"
)

// slurmEnv is a test world with a real Slurm cluster: kq's host is the
// cluster's login node, the kernel runs on its compute node, which the
// client cannot reach.
func slurmEnv(t *testing.T, opts slurmtest.Options) (*env, *slurmtest.Cluster) {
	t.Helper()
	c := slurmtest.Start(t, opts)
	e := newBareEnv(t)
	e.srv = c.SSH
	e.sshConfig = e.writeSSHConfig(c.SSH.KnownHosts, c.SSH.ClientKey)
	return e, c
}

// slurmProfile is a scheduler profile for the cluster.
func (e *env) slurmProfile(extra ...profile) profile {
	p := e.profileFor("kqtest", e.sshConfig, profile{"scheduler": "slurm", "slurm": map[string]any{"time": "5"},
		"linger": "6s"})
	for _, x := range extra {
		for k, v := range x {
			p[k] = v
		}
	}
	return p
}

// slurmClean proves nothing is left: no job in the queue, nothing running on
// the node (no kernel, no slurmstepd), no file on either side.
func slurmClean(t *testing.T, e *env, c *slurmtest.Cluster) {
	t.Helper()
	c.AssertClean(t, 20*time.Second)
	e.assertClean(nil, nil)
}

// TestSlurmSession: one command gives a kernel on the compute node, bound to
// the node's address, reached through the login node; at the end the job is
// gone and so is every file.
func TestSlurmSession(t *testing.T) {
	e, c := slurmEnv(t, slurmtest.Options{})
	e.writeConfig(map[string]profile{"cluster": e.slurmProfile()})
	r, code := e.runToEnd([]string{"cluster"}, "KQ_TEST_CODE=import socket; print(socket.gethostname())")
	if code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", code, r.stderr)
	}
	rep := r.report(t)
	if strings.TrimSpace(rep.Out) != c.NodeName {
		t.Errorf("the kernel ran on %q, want the node %q", rep.Out, c.NodeName)
	}
	if rep.IP != "127.0.0.1" {
		t.Errorf("local connection file ip %q", rep.IP)
	}
	for _, want := range []string{"submitted job ", "running on " + c.NodeName} {
		if !strings.Contains(r.stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	slurmClean(t, e, c)

	// --dry-run --connect asks the scheduler, and submits nothing.
	d, code := e.runToEnd([]string{"run", "--dry-run", "--connect", "cluster"})
	if code != 0 || !strings.Contains(d.stdout.String(), "#SBATCH --time=5") ||
		!regexp.MustCompile(`estimated start: \d{4}-\d\d-\d\d .*to start at .* on nodes `+c.NodeName).MatchString(d.stdout.String()) {
		t.Fatalf("--dry-run --connect: exit %d\n%s\n%s", code, d.stdout, d.stderr)
	}
	slurmClean(t, e, c)
}

// blocker takes every CPU of the node, so the next job waits.
func blocker(t *testing.T, c *slurmtest.Cluster) string {
	t.Helper()
	id := strings.TrimSpace(c.Run(t, "sbatch", "--parsable", "--job-name=blocker", "-c", "2", "--time=10",
		"--output=/dev/null", "--wrap", "sleep 600"))
	deadline := time.Now().Add(20 * time.Second)
	for strings.TrimSpace(c.Run(t, "squeue", "-h", "-j", id, "-o", "%T")) != "RUNNING" {
		if time.Now().After(deadline) {
			t.Fatalf("blocker %s never ran", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return id
}

// TestSlurmPendingInterrupt: behind a blocker, kq says the job is pending
// and why; Ctrl-C cancels kq's job at once (and only it) and exits 130;
// so does the end of --queue-timeout, with exit 7.
func TestSlurmPendingInterrupt(t *testing.T) {
	e, c := slurmEnv(t, slurmtest.Options{})
	block := blocker(t, c)
	e.writeConfig(map[string]profile{"cluster": e.slurmProfile()})
	r := e.start([]string{"cluster"})
	r.waitStderr(t, "pending (Resources)", 30*time.Second)
	jobs := c.Jobs(t)
	if len(jobs) != 2 {
		t.Fatalf("queue: %q", jobs)
	}
	must(t, r.cmd.Process.Signal(syscall.SIGINT))
	if code := r.wait(t, 30*time.Second); code != 130 {
		t.Fatalf("exit %d\nstderr:\n%s", code, r.stderr)
	}
	if !strings.Contains(r.stderr.String(), "cancelled job ") {
		t.Errorf("no word of the cancel:\n%s", r.stderr)
	}
	// The cancel is confirmed before kq exits: only the blocker is left.
	if jobs := c.Jobs(t); len(jobs) != 1 || !strings.HasPrefix(jobs[0], block+" ") {
		t.Fatalf("queue after Ctrl-C: %q", jobs)
	}

	// --queue-timeout gives up on a job still queued, and cancels it.
	r, code := e.runToEnd([]string{"cluster", "--queue-timeout", "4s"})
	if code != 7 || !strings.Contains(r.stderr.String(), "queue timeout") {
		t.Fatalf("--queue-timeout: exit %d\n%s", code, r.stderr)
	}
	if jobs := c.Jobs(t); len(jobs) != 1 || !strings.HasPrefix(jobs[0], block+" ") {
		t.Fatalf("queue after the queue timeout: %q", jobs)
	}
	c.Run(t, "scancel", block)
	slurmClean(t, e, c)
}

// TestSlurmTimeLimit: a job with a 50 s limit ends mid-session; kq warned
// before, says "time limit" (not "kernel died") and exits 7.
func TestSlurmTimeLimit(t *testing.T) {
	mostlyWaiting(t)
	e, c := slurmEnv(t, slurmtest.Options{})
	e.writeConfig(map[string]profile{"cluster": e.slurmProfile(profile{"slurm": map[string]any{"time": "0:50"}})})
	r := e.start([]string{"cluster"}, "KQ_TEST_WAIT=1")
	r.report(t)
	r.waitStderr(t, "reaches its time limit in", 30*time.Second)
	code := r.wait(t, 150*time.Second)
	if code != 7 || !strings.Contains(r.stderr.String(), "ended: time limit") || strings.Contains(r.stderr.String(), "kernel died") {
		t.Fatalf("exit %d\nstderr:\n%s", code, r.stderr)
	}
	slurmClean(t, e, c)
}

// TestSlurmKilled: kq SIGKILLed, while the job runs and while it is still
// queued: the login side cancels the job once linger has passed.
func TestSlurmKilled(t *testing.T) {
	e, c := slurmEnv(t, slurmtest.Options{})
	e.writeConfig(map[string]profile{"cluster": e.slurmProfile()})
	r := e.start([]string{"cluster"}, "KQ_TEST_WAIT=1")
	r.report(t)
	must(t, syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL))
	r.wait(t, 10*time.Second)
	if len(c.Jobs(t)) != 1 {
		t.Fatalf("the job should outlive kq for linger: %q", c.Jobs(t))
	}
	// A SIGKILLed kq leaves its local file, for the next kq to remove.
	must(t, os.RemoveAll(e.localRT))
	slurmClean(t, e, c) // linger is 6 s

	block := blocker(t, c)
	r = e.start([]string{"cluster"})
	r.waitStderr(t, "pending (", 30*time.Second)
	must(t, syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL))
	r.wait(t, 10*time.Second)
	deadline := time.Now().Add(40 * time.Second)
	for len(c.Jobs(t)) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the pending job was not cancelled: %q", c.Jobs(t))
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.Run(t, "scancel", block)
	slurmClean(t, e, c)
}

// kernelIDFrom reads the kernel's id from kq's "kernel started" line.
func kernelIDFrom(t *testing.T, stderr string) string {
	t.Helper()
	m := regexp.MustCompile(`kernel-kq-([0-9a-f-]{36})\.json`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no kernel id in:\n%s", stderr)
	}
	return m[1]
}

// TestSlurmRestartLsStop: kq ls shows kq's job with its state and node;
// kq restart gives a fresh kernel inside the same job (the open session
// keeps working); a --detach kernel's job is cancelled by kq stop.
func TestSlurmRestartLsStop(t *testing.T) {
	e, c := slurmEnv(t, slurmtest.Options{})
	e.writeConfig(map[string]profile{"cluster": e.slurmProfile()})
	r := e.start([]string{"cluster"}, "KQ_TEST_CODE=x = 42; print('set')", "KQ_TEST_CODE2=print('x' in globals())")
	if rep := r.report(t); strings.TrimSpace(rep.Out) != "set" {
		t.Fatalf("first cell: %q", rep.Out)
	}
	id := kernelIDFrom(t, r.stderr.String())
	jobs := c.Jobs(t)
	if len(jobs) != 1 {
		t.Fatalf("queue: %q", jobs)
	}
	job := strings.Fields(jobs[0])[0]

	ls, code := e.runToEnd([]string{"ls", "cluster"})
	out := ls.stdout.String()
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, job) || !strings.Contains(out, "RUNNING") ||
		!strings.Contains(out, c.NodeName) {
		t.Fatalf("kq ls: exit %d\n%s\n%s", code, out, ls.stderr)
	}

	rs, code := e.runToEnd([]string{"restart", "cluster", id})
	if code != 0 || !strings.Contains(rs.stderr.String(), "restarted kernel") {
		t.Fatalf("kq restart: exit %d\n%s", code, rs.stderr)
	}
	if after := c.Jobs(t); len(after) != 1 || strings.Fields(after[0])[0] != job {
		t.Fatalf("restart must stay in job %s: %q", job, after)
	}
	_, err := r.stdin.Write([]byte("go\n"))
	must(t, err)
	line := r.waitLine(t, "KQTEST2 ", 90*time.Second)
	if !strings.Contains(line, `"out": "False`) {
		t.Errorf("the restarted kernel kept its namespace: %s", line)
	}
	r.stdin.Close()
	if code := r.wait(t, time.Minute); code != 0 {
		t.Fatalf("session: exit %d\n%s", code, r.stderr)
	}
	slurmClean(t, e, c)

	d, code := e.runToEnd([]string{"run", "--detach", "cluster"})
	if code != 0 {
		t.Fatalf("--detach: exit %d\n%s", code, d.stderr)
	}
	if len(c.Jobs(t)) != 1 {
		t.Fatalf("no job for the detached kernel: %q", c.Jobs(t))
	}
	st, code := e.runToEnd([]string{"stop", "cluster", kernelIDFrom(t, d.stderr.String())})
	if code != 0 {
		t.Fatalf("kq stop: exit %d\n%s", code, st.stderr)
	}
	slurmClean(t, e, c)
}

// TestSlurmRefused: a partition the cluster does not have and a request it
// cannot ever satisfy: sbatch refuses, kq says why, exit 7, nothing queued.
func TestSlurmRefused(t *testing.T) {
	e, c := slurmEnv(t, slurmtest.Options{})
	e.writeConfig(map[string]profile{
		"nopart": e.slurmProfile(profile{"slurm": map[string]any{"time": "5", "partition": "nope"}}),
		"toobig": e.slurmProfile(profile{"slurm": map[string]any{"time": "5", "mem": "999999"}}),
	})
	for name, want := range map[string]string{"nopart": "Invalid partition name specified", "toobig": "Requested node configuration is not available"} {
		r, code := e.runToEnd([]string{name})
		errs := r.stderr.String()
		if code != 7 || !strings.Contains(errs, want) || strings.Count(errs, "kq: error:") != 1 {
			t.Errorf("%s: exit %d\n%s", name, code, errs)
		}
		t.Logf("%s:\n%s", name, errs)
		slurmClean(t, e, c)
	}
}

// TestSlurmKernelFails: a kernel command that fails on the node fails the
// job before the kernel starts; kq shows the job's output, exits 7, and
// leaves nothing queued.
func TestSlurmKernelFails(t *testing.T) {
	e, c := slurmEnv(t, slurmtest.Options{})
	e.writeConfig(map[string]profile{"cluster": e.slurmProfile(profile{"kernel": "/no/such/python3 -m ipykernel_launcher"})})
	r, code := e.runToEnd([]string{"cluster"})
	errs := r.stderr.String()
	if code != 7 || !strings.Contains(errs, "/no/such/python3") || !strings.Contains(errs, "before the kernel") {
		t.Errorf("exit %d\n%s", code, errs)
	}
	slurmClean(t, e, c)
}

// TestSlurmKernelMode: jupyter_client's KernelManager runs a Slurm
// profile's kernelspec (kq kernel): the kernel runs on the node, the
// manager's interrupt reaches it, restart_kernel() and
// restart_kernel(now=True) each give a fresh kernel inside the same job
// (the manager's next kq kernel takes the job over), and
// shutdown_kernel() ends the job within seconds (not parked for a
// restart) and leaves nothing.
func TestSlurmKernelMode(t *testing.T) {
	base, c := slurmEnv(t, slurmtest.Options{})
	e := kernelEnvFor(t, base, base.slurmProfile())
	e.remoteListening = func(port int) bool { return nodeListening(t, c, port) }
	maxJobs := 0
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if out, err := c.Command(contextFor(t, 10*time.Second), "squeue", "-h", "-o", "%i").Output(); err == nil {
				maxJobs = max(maxJobs, len(strings.Fields(string(out))))
			}
		}
	}()
	r := e.helper([]string{"km"}, "KQ_KERNEL_NAME=kqtest")
	s := e.sampleKernels()
	st, id0, remotePorts := e.kmStarted(t, r)
	job := c.Jobs(t)
	pid0 := e.kmExecuted(t, r)
	e.kmInterrupted(t, r, st, id0)
	pids, restartPorts := slurmKMRestarts(t, e, c, r, st, pid0, job)
	shutdown := time.Now() // the manager's shutdown_kernel() runs from here on
	e.kmShutdown(t, r, s)
	// The final shutdown releases the allocation at once: the job does not
	// stay parked (10 s) for a restart that will not come.
	for len(c.Jobs(t)) != 0 {
		if time.Since(shutdown) > 8*time.Second {
			t.Errorf("the job is still there 8 s after the final shutdown began: %q", c.Jobs(t))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the job was gone %.1f s after the final shutdown began", time.Since(shutdown).Seconds())
	close(stop)
	<-sampled
	if maxJobs != 1 {
		t.Errorf("%d jobs at some moment, want the one", maxJobs)
	}
	slurmClean(t, base, c)
	e.assertKernelModeClean(t, append(pids, pid0), st.Ports, append(remotePorts, restartPorts...))
}

// nodeListening says the node accepts a connection on port, as seen from
// the login node (the client has no route to the node).
func nodeListening(t *testing.T, c *slurmtest.Cluster, port int) bool {
	cmd := c.Command(contextFor(t, 10*time.Second), sysPython, "-c",
		"import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2)", c.NodeAddr, strconv.Itoa(port))
	return cmd.Run() == nil
}

// slurmKMRestarts checks the manager's two restarts on a Slurm profile: a
// fresh namespace in a new kernel process, the old kq gone, the manager's
// file and ports kept, and the one job of the start still the only one.
func slurmKMRestarts(t *testing.T, e *kernelEnv, c *slurmtest.Cluster, r *run, st stepData, pid0 int, job []string) (pids, remotePorts []int) {
	prevPID, prevKQ := pid0, st.KQPID
	for _, name := range []string{"restarted", "restarted_now"} {
		rs := r.step(t, name, 90*time.Second)
		if !rs.Fresh || rs.PID == prevPID || sshdtest.ProcessAlive(prevPID) || sshdtest.ProcessAlive(prevKQ) {
			t.Errorf("%s: fresh %v, kernel %d (before %d), old kq %d alive %v", name, rs.Fresh, rs.PID, prevPID, prevKQ, sshdtest.ProcessAlive(prevKQ))
		}
		if jobs := c.Jobs(t); !slices.Equal(jobs, job) {
			t.Errorf("%s: jobs %q, want the first one %q", name, jobs, job)
		}
		if !slices.Equal(rs.Ports, st.Ports) || rs.File != st.File {
			t.Errorf("%s: the manager changed its file or ports (%s %v)", name, rs.File, rs.Ports)
		}
		remotePorts = append(remotePorts, e.checkPorts(t, readConn(t, rs.File))...)
		prevPID, prevKQ = rs.PID, rs.KQPID
		pids = append(pids, rs.PID)
		r.resume(t)
	}
	if id := strings.Fields(job[0])[0]; strings.Count(r.stderr.String(), "restarting the kernel in job "+id+" ") != 2 {
		t.Errorf("kq kernel did not say it restarts in job %s:\n%s", id, r.stderr)
	}
	return pids, remotePorts
}

// TestSlurmLoginSideGone: the login side of a job (job.sh's watcher) is
// SIGKILLed under a running session: kq says the kernel is gone (exit 7)
// and, inside the job, the node side stops the kernel once the login
// side's heartbeat is gone, so the job ends by itself.
func TestSlurmLoginSideGone(t *testing.T) {
	e, c := slurmEnv(t, slurmtest.Options{})
	e.writeConfig(map[string]profile{"cluster": e.slurmProfile()})
	r := e.start([]string{"cluster"}, "KQ_TEST_WAIT=1")
	r.report(t)
	id := kernelIDFrom(t, r.stderr.String())
	watchers := sshdtest.ProcessesMatching("kernel-kq-" + id + ".cmd")
	if len(watchers) != 1 {
		t.Fatalf("login side processes %v", watchers)
	}
	must(t, syscall.Kill(watchers[0], syscall.SIGKILL))
	if code := r.wait(t, 60*time.Second); code != 7 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	slurmClean(t, e, c)
}

// TestSlurmReconnect: the client's link to the login node drops for a
// while; kq reconnects, holds the same job again, and the session goes on.
func TestSlurmReconnect(t *testing.T) {
	e, c := slurmEnv(t, slurmtest.Options{})
	e.writeConfig(map[string]profile{"cluster": e.slurmProfile(profile{"keepalive": "1s", "keepalive_count": 2, "linger": "1m"})})
	r := e.start([]string{"cluster"}, "KQ_TEST_CODE=x = 7; print('set')", "KQ_TEST_CODE2=print(x)")
	r.report(t)
	job := c.Jobs(t)
	c.SetClientLink(t, false)
	r.waitStderr(t, "reconnecting", 30*time.Second)
	time.Sleep(2 * time.Second)
	c.SetClientLink(t, true)
	r.waitStderr(t, "reconnected", 60*time.Second)
	keptStateToEnd(t, r, c, job, 90*time.Second, "the reconnect")
	slurmClean(t, e, c)
}

// keptStateToEnd lets the session's second cell run (it prints what the
// first one set: 7), checks that the queue holds the same job, and ends
// the session, which must exit 0.
func keptStateToEnd(t *testing.T, r *run, c *slurmtest.Cluster, job []string, wait time.Duration, after string) {
	t.Helper()
	_, err := r.stdin.Write([]byte("go\n"))
	must(t, err)
	if line := r.waitLine(t, "KQTEST2 ", wait); !strings.Contains(line, `"out": "7`) {
		t.Errorf("the kernel lost its state: %s", line)
	}
	if jobs := c.Jobs(t); !slices.Equal(jobs, job) {
		t.Errorf("jobs %q after %s, want %q", jobs, after, job)
	}
	r.stdin.Close()
	if code := r.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
}

// TestSlurmHeartbeatStale: kq and the whole login side of a running job
// vanish at once (the laptop gone and the login node's processes killed),
// leaving the heartbeat file in place, untouched: the node side sees it go
// stale and stops the kernel, and the job ends by itself, leaving nothing.
// KQ_TEST_JOB_STALE lowers the staleness from 180 s to 8 s for the test;
// linger is long, so no login-side watchdog could end the job first.
func TestSlurmHeartbeatStale(t *testing.T) {
	e, c := slurmEnv(t, slurmtest.Options{})
	e.writeConfig(map[string]profile{"cluster": e.slurmProfile(profile{"linger": "10m"})})
	r := e.start([]string{"cluster"}, "KQ_TEST_WAIT=1", "KQ_TEST_JOB_STALE=8s")
	r.report(t)
	id := kernelIDFrom(t, r.stderr.String())
	base := filepath.Join(e.remoteRT, "kernel-kq-"+id)
	jobLogin, watchdog := loginSide(t, base)
	must(t, syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL))
	r.wait(t, 10*time.Second)
	waitOnlyLoginSide(t, c, jobLogin, watchdog)
	for _, p := range []int{jobLogin, watchdog} {
		must(t, syscall.Kill(p, syscall.SIGKILL))
		sshdtest.WaitGone(t, p, 10*time.Second)
	}
	// Nobody beats any more, and nobody removed the beat: only its age
	// can tell the node side.
	if _, err := os.Stat(base + ".beat"); err != nil {
		t.Fatalf("the heartbeat file should be left, untouched: %v", err)
	}
	if jobs := c.Jobs(t); len(jobs) != 1 || !strings.HasSuffix(jobs[0], " RUNNING") || len(c.NodePIDs()) == 0 {
		t.Fatalf("the job should still run on the node: %q", jobs)
	}
	deadline := time.Now().Add(90 * time.Second)
	for len(c.Jobs(t)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the job outlived its stale heartbeat: %q", c.Jobs(t))
		}
		time.Sleep(500 * time.Millisecond)
	}
	must(t, os.RemoveAll(e.localRT)) // a SIGKILLed kq leaves its local file
	slurmClean(t, e, c)
}

// loginSide finds a job kernel's login-side processes from its files:
// job.sh's job_login (the kernel pid of .kq) and remote.sh's watchdog
// (.wd), each checked against the start time recorded with it.
func loginSide(t *testing.T, base string) (jobLogin, watchdog int) {
	t.Helper()
	meta, err := os.ReadFile(base + ".kq")
	must(t, err)
	var start string
	for _, l := range strings.Split(string(meta), "\n") {
		if v, ok := strings.CutPrefix(l, "pid="); ok {
			jobLogin, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(l, "start="); ok {
			start = v
		}
	}
	wd, err := os.ReadFile(base + ".wd")
	must(t, err)
	f := strings.Fields(string(wd))
	if len(f) != 2 {
		t.Fatalf("watchdog file %q", wd)
	}
	watchdog, _ = strconv.Atoi(f[0])
	if jobLogin == 0 || startTime(jobLogin) != start || !strings.Contains(cmdline(jobLogin), filepath.Base(base)+".cmd") {
		t.Fatalf("job_login %d (start %s): %s", jobLogin, start, cmdline(jobLogin))
	}
	if watchdog == 0 || startTime(watchdog) != f[1] {
		t.Fatalf("watchdog %d (start %s) is not running", watchdog, f[1])
	}
	return jobLogin, watchdog
}

// startTime is a process's start time as remote.sh records it (the 22nd
// field of /proc/PID/stat), "" if it is gone.
func startTime(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return ""
	}
	if f := strings.Fields(string(b[i+1:])); len(f) >= 20 {
		return f[19]
	}
	return ""
}

// waitOnlyLoginSide waits until nothing runs on the login node but the
// given processes and what they started (kq's ssh session has closed).
func waitOnlyLoginSide(t *testing.T, c *slurmtest.Cluster, keep ...int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var others []int
		for _, p := range c.LoginPIDs() {
			if !descendsFrom(p, keep) {
				others = append(others, p)
			}
		}
		if len(others) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kq's session is still on the login node: %v", others)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// descendsFrom: pid is one of pids or their child, grandchild, ...
func descendsFrom(pid int, pids []int) bool {
	for range 10 {
		if pid <= 1 {
			return false
		}
		if slices.Contains(pids, pid) {
			return true
		}
		pid = slurmtest.Parent(pid)
	}
	return false
}

// slurmClientCommands are slurm-client's programs: none of them may be on
// the PATH of a login node "without Slurm".
var slurmClientCommands = []string{"sacct", "sacctmgr", "salloc", "sattach", "sbatch", "sbcast", "scancel", "scontrol",
	"sdiag", "sinfo", "sprio", "squeue", "sreport", "srun", "sshare", "sstat", "strigger", "sview"}

// pathWithout is a directory of symlinks to every program in /usr/bin but
// the ones named: a PATH entry that stands for /usr/bin (and /bin, its
// symlink here) without them.
func pathWithout(t *testing.T, names []string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bin")
	must(t, os.Mkdir(dir, 0o755))
	entries, err := os.ReadDir("/usr/bin")
	must(t, err)
	for _, en := range entries {
		if !slices.Contains(names, en.Name()) {
			must(t, os.Symlink(filepath.Join("/usr/bin", en.Name()), filepath.Join(dir, en.Name())))
		}
	}
	return dir
}

// TestSlurmCommandsMissing: on a login node whose PATH has no Slurm
// commands, a Slurm profile fails with one error and a hint that says
// where they must be, exit 7, and leaves nothing behind.
func TestSlurmCommandsMissing(t *testing.T) {
	e, c := slurmEnv(t, slurmtest.Options{LoginPath: pathWithout(t, slurmClientCommands) + ":/usr/local/sbin:/usr/local/bin:/usr/sbin"})
	e.writeConfig(map[string]profile{"cluster": e.slurmProfile()})
	r, code := e.runToEnd([]string{"cluster"})
	errs := r.stderr.String()
	if code != 7 || strings.Count(errs, "kq: error:") != 1 || !strings.Contains(errs, "kq: error: start kernel on kqtest: sbatch: not found on the login node\n") ||
		!strings.Contains(errs, "kq: hint: the scheduler's commands (sbatch, squeue, scancel) must be on the login node's PATH") {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	t.Logf("stderr:\n%s", errs)
	if jobs := c.Jobs(t); len(jobs) != 0 {
		t.Fatalf("queue: %q", jobs)
	}
	slurmClean(t, e, c)
}

// lostReplySbatch is an sbatch that submits for real (the job exists) but
// loses its reply: it prints nothing and fails, as a connection or a
// controller that timed out after queuing the job would. Each call is
// logged.
const lostReplySbatch = `#!/bin/sh
printf 'call %s\n' "$*" >> "$(dirname "$0")/sbatch.log"
/usr/bin/sbatch "$@" >> "$(dirname "$0")/sbatch.log" 2>&1
exit 1
`

// wrappedSlurmEnv is a cluster whose login node runs script as command
// (first on its PATH, in the returned dir), with the profile "cluster".
func wrappedSlurmEnv(t *testing.T, command, script string) (string, *env, *slurmtest.Cluster) {
	t.Helper()
	wrap := filepath.Join(t.TempDir(), "wrap")
	must(t, os.Mkdir(wrap, 0o755))
	must(t, os.WriteFile(filepath.Join(wrap, command), []byte(script), 0o755))
	e, c := slurmEnv(t, slurmtest.Options{LoginPath: wrap + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"})
	e.writeConfig(map[string]profile{"cluster": e.slurmProfile()})
	return wrap, e, c
}

// TestSlurmLostSubmitReply: sbatch queues the job but its reply is lost;
// kq finds the job by its name (kq-<id>) instead of submitting again, and
// the session runs in that one job.
func TestSlurmLostSubmitReply(t *testing.T) {
	wrap, e, c := wrappedSlurmEnv(t, "sbatch", lostReplySbatch)
	r := e.start([]string{"cluster"}, "KQ_TEST_CODE=import socket; print(socket.gethostname())", "KQ_TEST_WAIT=1")
	rep := r.report(t)
	if strings.TrimSpace(rep.Out) != c.NodeName {
		t.Errorf("the kernel ran on %q, want the node %q", rep.Out, c.NodeName)
	}
	id := kernelIDFrom(t, r.stderr.String())
	log, err := os.ReadFile(filepath.Join(wrap, "sbatch.log"))
	must(t, err)
	calls := strings.Count(string(log), "call ")
	m := regexp.MustCompile(`(?m)^(\d+)(;\S*)?$`).FindStringSubmatch(string(log))
	if calls != 1 || m == nil {
		t.Fatalf("want one sbatch call that queued a job, the log says:\n%s", log)
	}
	if jobs := c.Jobs(t); len(jobs) != 1 || jobs[0] != m[1]+" kq-"+id+" RUNNING" {
		t.Fatalf("queue %q, want the one job %s named kq-%s", jobs, m[1], id)
	}
	if !strings.Contains(r.stderr.String(), "submitted job "+m[1]+" ") {
		t.Errorf("kq does not name the job it found:\n%s", r.stderr)
	}
	r.stdin.Close()
	if code := r.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	if log, _ := os.ReadFile(filepath.Join(wrap, "sbatch.log")); strings.Count(string(log), "call ") != 1 {
		t.Errorf("sbatch ran again:\n%s", log)
	}
	slurmClean(t, e, c)
}
