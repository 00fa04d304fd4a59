package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/kq-dev/kq/launcher/remote"
	"github.com/kq-dev/kq/launcher/sched"
	"github.com/kq-dev/kq/launcher/wire"
	"github.com/kq-dev/kq/profiles"
)

// A profile with scheduler: runs its kernel in a batch job: the session
// starts remote.sh's op_start on the login node as always, but the process
// it holds is job.sh's login side, which submits the job built here (the
// scheduler package's directives and commands) and relays the job's state;
// the kernel runs on the node under job.sh's node side and writes its
// connection file to the shared runtime dir, with the node's address in
// it, which is where the forwards go (through the login node). So every
// way the session lets go of the kernel (stop, kill, linger, kq stop)
// cancels the job, and a restart stays inside it.

// timeWarnings are the times before the job's limit at which kq warns.
var timeWarnings = []time.Duration{10 * time.Minute, 5 * time.Minute, time.Minute}

// jobState follows the session's batch job from its status lines.
type jobState struct {
	sch       sched.Scheduler
	log       reporter
	warn      func(format string, args ...any)
	submitted time.Time

	mu      sync.Mutex
	id      string
	last    sched.Status
	known   bool   // last holds a status
	shown   string // the pending line last printed
	running bool
	warned  map[time.Duration]bool
	// node and addr are where the job runs, as its node side found them
	// ($SLURMD_NODENAME and scontrol's NodeAddr).
	node, addr string
	queryErr   string
	// exited is the kernel's exit status on the node, once it ended.
	exited string
	// finalMarked is closed once kq kernel's watch of the manager's
	// shutdown is over (watchFinalShutdown); nil when nothing watches.
	finalMarked chan struct{}
}

// addJob turns spec into a batch job's when the profile names a scheduler.
func (s *session) addJob(spec *remote.KernelSpec) error {
	p := s.o.Profile
	if p.Scheduler == "" {
		return nil
	}
	sch, err := sched.For(p.Scheduler)
	if err != nil {
		return withKind(ErrUsage, "", err)
	}
	if spec.Job, err = jobSpec(sch, p, *spec); err != nil {
		return withKind(ErrUsage, "", err)
	}
	s.job = &jobState{sch: sch, log: s.log, warn: s.warn, submitted: time.Now(), warned: map[time.Duration]bool{}}
	spec.OnSched = s.job.update
	return nil
}

// jobSpec builds the job for kernel k: its batch script (directives from
// the profile, job.sh's node side as the body) and the scheduler's
// commands, with the job id and script path left for the remote side.
func jobSpec(sch sched.Scheduler, p profiles.Profile, k remote.KernelSpec) (*remote.JobSpec, error) {
	j := &remote.JobSpec{NodeAddress: sch.NodeAddress(), QueueTimeout: p.QueueTimeout, Stale: testStale()}
	k.Job = j
	name := "kq-" + k.ID
	if k.ID == "dry-run" {
		name = "kq-dry-run" // sbatch --test-only: never submitted
	}
	script, err := sch.Script(sched.Request{Name: name, Output: "kernel-kq-" + k.ID + ".out", Body: k.JobBody(),
		Resources: resources(p)})
	if err != nil {
		return nil, err
	}
	j.BatchScript = script
	j.Submit, j.Query, j.Accounting = sch.Submit(remote.ScriptArg), sch.Query(remote.JobArg), sch.Accounting(remote.JobArg)
	j.Lookup, j.Cancel, j.LiveStates = sch.Lookup(name), sch.Cancel(remote.JobArg), sch.LiveStates()
	return j, nil
}

// TestStaleEnv names an environment variable for kq's own tests, no
// setting: a duration (Go's form, "8s") that lowers how old the login
// side's heartbeat may grow before a job's node side stops the kernel, so
// that an end-to-end test of that watchdog need not wait the default
// (remote.DefaultJobStale, 180 s). It can only lower the default, never
// raise it; a value under a second or unreadable is ignored.
const TestStaleEnv = "KQ_TEST_JOB_STALE"

// testStale is TestStaleEnv's duration, 0 when unset or unreadable.
func testStale() time.Duration {
	d, err := time.ParseDuration(os.Getenv(TestStaleEnv))
	if err != nil || d < time.Second || d >= remote.DefaultJobStale {
		return 0
	}
	return d
}

// resources are the profile's slurm: settings.
func resources(p profiles.Profile) sched.Resources {
	return sched.Resources{Time: p.SlurmTime, Partition: p.SlurmPartition, Account: p.SlurmAccount, QOS: p.SlurmQOS,
		Constraint: p.SlurmConstraint, Gres: p.SlurmGres, GPUs: p.SlurmGPUs, CPUs: p.SlurmCPUs, Mem: p.SlurmMem,
		Extra: p.SlurmExtra}
}

// update reads one status line of job.sh: KIND|CLUSTER-TIME|TEXT.
func (j *jobState) update(line string) {
	kind, rest, _ := strings.Cut(line, "|")
	stamp, text, _ := strings.Cut(rest, "|")
	clusterNow, _ := time.Parse("2006-01-02T15:04:05", stamp)
	j.log.detail("job status: %s", line)
	j.mu.Lock()
	defer j.mu.Unlock()
	var sts []sched.Status
	var err error
	switch kind {
	case "S":
		j.learnID(text)
		return
	case "N":
		f := append(strings.Fields(text), "", "", "")
		node, addr := f[0], f[1]
		j.node, j.addr = node, addr
		j.learnID(f[2])
		if !j.running {
			j.running = true
			j.log.status("")
			j.log.step("job %s running on %s (%s) after %s in the queue", j.id, node, addr, roundWait(time.Since(j.submitted)))
		}
		return
	case "Q":
		sts, err = j.sch.ParseStatus(text)
	case "A":
		sts, err = j.sch.ParseAccounting(text)
	case "X":
		j.exited = text
		return
	case "R":
		j.id = text
		j.log.step("restarting the kernel in job %s (the same allocation)", text)
		return
	case "E":
		if text != j.queryErr {
			j.log.step("job %s: the scheduler did not answer (%s); asking again", j.id, strings.TrimSpace(text))
		}
		j.queryErr = text
		return
	}
	if err != nil || len(sts) == 0 {
		return
	}
	j.queryErr = ""
	j.set(sts[0], clusterNow)
}

// set takes a new status: a pending job's line when it changed, the node
// when it starts, warnings as the time limit nears.
func (j *jobState) set(st sched.Status, clusterNow time.Time) {
	j.last, j.known = st, true
	j.learnID(st.ID)
	switch st.Phase {
	case sched.Pending:
		line := fmt.Sprintf("job %s pending", j.id)
		if st.Reason != "" && st.Reason != "None" {
			line += " (" + st.Reason + ")"
		}
		if !st.Start.IsZero() && !clusterNow.IsZero() {
			line += fmt.Sprintf(", est. start in %s", roundWait(st.Start.Sub(clusterNow)))
		}
		if line != j.shown {
			j.shown = line
			if j.log.live() { // one line, redrawn with the time waited
				j.log.statusSince(j.submitted, "%s, waited", line)
			} else {
				j.log.step("%s, waited %s", line, roundWait(time.Since(j.submitted)))
			}
		}
	case sched.Running:
		if !j.running {
			j.log.status("")
			j.running = true
			j.log.step("job %s running on %s after %s in the queue", j.id, orDash(st.Node), roundWait(time.Since(j.submitted)))
		}
		j.timeWarning(st.TimeLeft)
	}
}

// learnID notes the job's id the first time it is seen.
func (j *jobState) learnID(id string) {
	if j.id == "" && id != "" {
		j.id = id
		j.log.step("submitted job %s to %s", id, j.sch.Name())
	}
}

// timeWarning warns once per threshold crossed (the tightest, when several
// are crossed at once); a limit extended past a threshold re-arms it.
func (j *jobState) timeWarning(left time.Duration) {
	if left < 0 {
		return
	}
	var crossed time.Duration
	for _, t := range timeWarnings {
		switch {
		case left > t:
			j.warned[t] = false
		case !j.warned[t]:
			j.warned[t] = true
			crossed = t
		}
	}
	if crossed > 0 {
		j.warn("job %s reaches its time limit in %s: the kernel stops then (your notebook is local: only the kernel's state is lost)",
			j.id, left.Round(time.Second))
	}
}

// endAsk bounds asking the scheduler why a job ended: a job is COMPLETING
// for a moment before its final state shows.
const endAsk = 20 * time.Second

// jobEnd is the error for the session's job once it is over: the end the
// status lines said, else the scheduler's answer now (the login side's last
// line can be lost with its files). Asking squeue again on a failure, then
// accounting: a failed query is never taken for "the job is gone". nil
// when there is no job, or no answer.
func (s *session) jobEnd() error {
	if s.job == nil {
		return nil
	}
	if err := s.job.ended(); err != nil || s.job.jobID() == "" || s.linkDeadAtEnd() {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), endAsk)
	defer cancel()
	id := s.job.jobID()
	for ctx.Err() == nil {
		st, ok := s.askJob(ctx, id)
		if ok && st.Phase == sched.Ended {
			s.job.mu.Lock()
			s.job.last, s.job.known = st, true
			s.job.mu.Unlock()
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	// The scheduler's reason (time limit, preemption, ...) says more than
	// the kernel's status, which says more than "completed" or "failed".
	s.job.mu.Lock()
	reason := s.job.last.Reason
	s.job.mu.Unlock()
	if rc, node := s.job.exitStatus(); rc != "" && (reason == "" || reason == sched.EndCompleted || reason == sched.EndFailed) {
		return withKind(ErrKernel, "the kernel process exited or was killed on the node (out of memory? see the job's output)",
			fmt.Errorf("the kernel exited (status %s) on %s; job %s ends with it", rc, orDash(node), id))
	}
	return s.job.ended()
}

// finalMarkWithin bounds how long kq kernel, its kernel gone, waits for
// the login node to take its word that the end is final (op_final): the
// manager escalates soon, and without the word the job is only released
// later (parked, then cancelled).
const finalMarkWithin = time.Second

// watchFinalShutdown, in kq kernel on a scheduler profile, watches the
// kernel's IOPub (through kq's own forward) for its broadcast answer to a
// shutdown_request: when the manager asked for no restart, the kernel is
// finished for good, and the login node is told at once (remote.MarkFinal),
// so that the job ends with the kernel instead of keeping the allocation
// parked for a restart that will not come. A manager's restart (restart
// true, or a kill) leaves the job parked for the manager's next kq kernel.
func (s *session) watchFinalShutdown(ctx context.Context) {
	if s.job == nil || s.k.id == "" {
		return
	}
	done := make(chan struct{})
	s.job.finalMarked = done
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", s.localPort("iopub_port"))
	key, rt, id := []byte(s.k.info.Key), s.k.rt, s.k.id
	go func() {
		defer close(done)
		restart, err := wire.WaitShutdownReply(ctx, ep, key)
		if err != nil || restart {
			return
		}
		s.log.detail("the kernel manager shut the kernel down for good: its job ends with it")
		mctx, cancel := context.WithTimeout(context.Background(), remoteOpTimeout)
		defer cancel()
		if err := remote.MarkFinal(mctx, s.runner(), rt, id); err != nil {
			s.log.detail("telling the login node the end is final: %v (the job is cancelled after its park)", err)
		}
	}()
}

// awaitFinalMark gives watchFinalShutdown's word to the login node a
// moment to arrive before kq kernel exits.
func (j *jobState) awaitFinalMark() {
	if j.finalMarked == nil {
		return
	}
	select {
	case <-j.finalMarked:
	case <-time.After(finalMarkWithin):
	}
}

// kernelModeJobEnd is jobEnd for kq kernel, from what is known already (the
// manager is waiting): a kernel that exited 0, or a job that completed, is
// the normal end after the manager's shutdown_request.
func (s *session) kernelModeJobEnd() error {
	if s.job == nil {
		return nil
	}
	s.job.awaitFinalMark()
	if rc, node := s.job.exitStatus(); rc != "" && rc != "0" {
		return withKind(ErrKernel, "the kernel process exited or was killed on the node (out of memory? see the job's output)",
			fmt.Errorf("the kernel exited (status %s) on %s; job %s ends with it", rc, orDash(node), s.job.jobID()))
	}
	s.job.mu.Lock()
	completed := s.job.last.Phase == sched.Ended && s.job.last.Reason == sched.EndCompleted
	s.job.mu.Unlock()
	if completed {
		return nil
	}
	return s.job.ended()
}

// askJob asks the queue about job id, then accounting if the queue does
// not know it.
func (s *session) askJob(ctx context.Context, id string) (sched.Status, bool) {
	sch := s.job.sch
	for _, c := range []struct {
		argv  sched.Command
		parse func(string) ([]sched.Status, error)
	}{{sch.Query(id), sch.ParseStatus}, {sch.Accounting(id), sch.ParseAccounting}} {
		out, code, err := remote.Sched(ctx, s.runner(), c.argv)
		if err != nil || code != 0 {
			continue
		}
		if sts, err := c.parse(out); err == nil && len(sts) > 0 {
			return sts[0], true
		}
	}
	return sched.Status{}, false
}

// ended is the error for a job that is over: why, in the scheduler's
// words mapped to kq's, or nil while it is not (or not known to be) over.
func (j *jobState) ended() error {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	st, known, id := j.last, j.known, j.id
	j.mu.Unlock()
	if !known || st.Phase != sched.Ended {
		return nil
	}
	if st.Reason == sched.EndCompleted {
		return withKind(ErrKernel, "the kernel exited on its own; its output is in the job's log",
			fmt.Errorf("the kernel exited on %s; job %s ended with it", orDash(st.Node), id))
	}
	return withKind(ErrKernel, endHint(st.Reason), fmt.Errorf("job %s ended: %s", id, st.Reason))
}

// endHint says what a job's end means for the user.
func endHint(reason string) string {
	switch reason {
	case sched.EndTimeLimit:
		return "the job reached its time limit; your notebook is local, only the kernel's state is lost; ask for more with --slurm-time or slurm: time:"
	case sched.EndPreempted:
		return "a job of higher priority took the node; your notebook is local, only the kernel's state is lost"
	case sched.EndNodeFailure:
		return "the compute node failed; your notebook is local, only the kernel's state is lost"
	case sched.EndOutOfMemory:
		return "the job used more memory than it asked for: raise slurm: mem:"
	case sched.EndCancelled:
		return "someone cancelled the job (scancel), or the cluster's admins did"
	}
	return "the job's output ends with the line above; run the kernel command in a job by hand (srun --pty) to see more"
}

// exitStatus is the kernel's exit status on the node, "" while unknown,
// and the node.
func (j *jobState) exitStatus() (string, string) {
	if j == nil {
		return "", ""
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.exited, j.node
}

// jobID is the job's id, once submitted.
func (j *jobState) jobID() string {
	if j == nil {
		return ""
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.id
}

// startError explains a failed start of a job's kernel: the job's end if it
// ended, commands missing on the login node, else err itself.
func (s *session) startError(err error) error {
	if s.job == nil {
		return err
	}
	if errors.Is(err, ErrInterrupted) {
		if id := s.job.jobID(); id != "" {
			s.log.step("cancelled job %s", id)
		}
		return err
	}
	msg := err.Error()
	if m := endedJob.FindStringSubmatch(msg); m != nil && s.job.jobID() == "" {
		s.job.mu.Lock()
		s.job.id = m[1] // it ran and ended before its first status line came
		s.job.mu.Unlock()
	}
	if jerr := s.jobEnd(); jerr != nil {
		return fmt.Errorf("%w, before the kernel started: %w", jerr, err)
	}
	switch {
	case s.job.jobID() == "" && strings.Contains(msg, "not found"):
		if m := notFound.FindString(msg); m != "" { // the shell's words, without "refused"
			err = fmt.Errorf("start kernel on %s: %s on the login node", s.hostAlias(), m)
		}
		return withKind(ErrKernel, "the scheduler's commands (sbatch, squeue, scancel) must be on the login node's PATH for a non-interactive shell", err)
	case strings.Contains(msg, "refused the kernel's batch job"):
		return withKind(ErrKernel, "fix the profile's slurm: settings (partition, gres, mem, time, ...); sbatch --test-only on the login node tries a request", err)
	case s.job.jobID() != "":
		return withKind(ErrKernel, "the job's output is above; run the kernel command in a job by hand (srun --pty) to see more", err)
	}
	return err
}

// notFound finds the shell's report of a missing command ("sbatch: not
// found", bash's "sbatch: command not found").
var notFound = regexp.MustCompile(`[\w.-]+: (command )?not found`)

// endedJob finds the job id in remote.sh's report of a job that ended
// before its kernel wrote the connection file.
var endedJob = regexp.MustCompile(`batch job (\d[\d_]*) ended before`)

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// roundWait rounds a wait for a status line: seconds, then minutes.
func roundWait(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	if d < 2*time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(time.Minute)
}

// addJobs adds to kq ls what the scheduler says of kq's jobs: each kernel's
// job, and jobs of kq whose kernel file is gone (listed by their name, so
// that kq stop can cancel them).
func (m *manager) addJobs(ctx context.Context, entries []KernelEntry) ([]KernelEntry, error) {
	if m.o.Profile.Scheduler == "" {
		return entries, nil
	}
	sch, err := sched.For(m.o.Profile.Scheduler)
	if err != nil {
		return nil, withKind(ErrUsage, "", err)
	}
	out, code, err := remote.Sched(ctx, m.runner(), sch.List("kq-"))
	if err != nil {
		return nil, withKind(ErrKernel, "the scheduler's commands must be on the login node's PATH", fmt.Errorf("list jobs on %s: %w", m.host, err))
	}
	jobs, perr := sch.ParseStatus(out)
	if code != 0 || perr != nil {
		return nil, withKind(ErrKernel, "", fmt.Errorf("list jobs on %s: %s", m.host, strings.TrimSpace(out)))
	}
	byID := map[string]int{}
	for i, e := range entries {
		byID[e.ID] = i
	}
	for _, st := range jobs {
		id, ok := strings.CutPrefix(st.Name, "kq-")
		if !ok {
			continue
		}
		je := &remote.JobEntry{ID: st.ID, State: st.State, Reason: st.Reason, Node: st.Node, TimeLeftSeconds: int(st.TimeLeft / time.Second)}
		if st.TimeLeft < 0 {
			je.TimeLeftSeconds = -1
		}
		if i, ok := byID[id]; ok {
			entries[i].Job = je
			continue
		}
		entries = append(entries, KernelEntry{ID: id, KQ: true, Alive: st.Phase != sched.Ended, Job: je})
	}
	return entries, nil
}

// cancelJob cancels a stopped kernel's job if it is still there (its
// login side was gone, or its kernel file was).
func (m *manager) cancelJob(ctx context.Context, e KernelEntry) error {
	if e.Job == nil || m.o.Profile.Scheduler == "" {
		return nil
	}
	sch, err := sched.For(m.o.Profile.Scheduler)
	if err != nil {
		return err
	}
	out, code, err := remote.Sched(ctx, m.runner(), sch.Query(e.Job.ID))
	if err != nil {
		return err
	}
	if sts, perr := sch.ParseStatus(out); code == 0 && perr == nil && len(sts) > 0 && sts[0].Phase == sched.Ended {
		return nil
	}
	out, code, err = remote.Sched(ctx, m.runner(), sch.Cancel(e.Job.ID))
	if err != nil {
		return fmt.Errorf("cancel job %s: %w", e.Job.ID, err)
	}
	if code != 0 {
		return fmt.Errorf("cancel job %s: %s", e.Job.ID, strings.TrimSpace(out))
	}
	m.log.always("cancelled job %s", e.Job.ID)
	return nil
}

// planJob is --dry-run's part for a scheduler profile: the batch script's
// directives and what runs in the job.
func planJob(w func(string, ...any), p profiles.Profile) error {
	if p.Scheduler == "" {
		return nil
	}
	sch, err := sched.For(p.Scheduler)
	if err != nil {
		return withKind(ErrUsage, "", err)
	}
	script, err := batchScript(sch, p, "<uuid>")
	if err != nil {
		return withKind(ErrUsage, "", err)
	}
	w("batch job (%s): submitted from RUNTIME with %s, watched with %s, cancelled with %s on every exit:", sch.Name(),
		strings.Join(sch.Submit("RUNTIME/kernel-kq-<uuid>.sbatch"), " "), strings.Join(sch.Query("<job>"), " "),
		strings.Join(sch.Cancel("<job>"), " "))
	lines := strings.Split(strings.TrimSuffix(script, "\n"), "\n")
	body := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "#!") || strings.HasPrefix(l, "#SBATCH") || body == 0 && strings.HasPrefix(l, "# kq:") {
			w("      %s", l)
			continue
		}
		body++
	}
	w("      ... and %d lines of kq's node side (job.sh): the kernel's start script above as its child, bound to the node's address", body)
	return nil
}

// batchScript is the batch script for kernel id of profile p.
func batchScript(sch sched.Scheduler, p profiles.Profile, id string) (string, error) {
	k := newKernelSpec(p, id)
	j, err := jobSpec(sch, p, k)
	if err != nil {
		return "", err
	}
	return j.BatchScript, nil
}

// PlanStart is --dry-run --connect for a scheduler profile: it asks the
// scheduler on the login node when the batch job would start (sbatch
// --test-only: nothing is submitted).
func PlanStart(ctx context.Context, o Options) (string, error) {
	p := o.Profile
	if p.Scheduler == "" {
		return "", withKind(ErrUsage, "", fmt.Errorf("profile %s has no scheduler: --connect asks a scheduler", p.Name))
	}
	sch, err := sched.For(p.Scheduler)
	if err != nil {
		return "", withKind(ErrUsage, "", err)
	}
	script, err := batchScript(sch, p, "dry-run")
	if err != nil {
		return "", withKind(ErrUsage, "", err)
	}
	log := reporter{w: o.Stderr, quiet: o.Quiet, verbose: o.Verbose}
	d, err := dialProfile(ctx, o, log)
	if err != nil {
		return "", err
	}
	defer d.closeTerminal()
	defer d.ch.Close()
	out, code, err := remote.SchedInput(ctx, remote.SSH{Client: d.ch.Host()}, sch.Test(), script)
	if err != nil {
		return "", withKind(ErrKernel, "the scheduler's commands must be on the login node's PATH", err)
	}
	at, perr := sch.ParseTest(out)
	if code != 0 || perr != nil {
		return "", withKind(ErrKernel, "fix the profile's slurm: settings", fmt.Errorf("%s refuses the job: %s", sch.Name(), strings.TrimSpace(out)))
	}
	return fmt.Sprintf("estimated start: %s (the cluster's clock; %s)\n", at.Format("2006-01-02 15:04:05"), strings.TrimSpace(out)), nil
}
