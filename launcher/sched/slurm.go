package sched

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Slurm is the Slurm scheduler (sbatch, squeue, sacct, scancel). Its
// queries use squeue's --format with a "|" delimiter and sacct's --parsable2,
// which every Slurm since 2.x prints the same way (squeue --json needs
// 21.08 and a serializer plugin).
type Slurm struct{}

// slurmFormat is squeue's line: state first (the remote side's sh reads
// it), the name last (it may hold the delimiter).
const slurmFormat = "%T|%r|%S|%L|%N|%i|%j"

// slurmAcctFields is sacct's line, for jobs the queue no longer holds.
const slurmAcctFields = "State,Reason,Start,NodeList,JobID,JobName"

// Name implements Scheduler.
func (Slurm) Name() string { return "slurm" }

// Script implements Scheduler: #SBATCH lines for every request, then the
// body. --no-requeue, because a requeued kernel would come back without
// its kq; --signal=B:USR1@600 warns the batch shell ten minutes before the
// time limit.
func (Slurm) Script(r Request) (string, error) {
	if strings.TrimSpace(r.Time) == "" {
		return "", errors.New("slurm: time is required (slurm: time: in the profile or defaults:, or --slurm-time)")
	}
	opts := []string{"--job-name=" + r.Name, "--no-requeue", "--time=" + r.Time, "--output=" + r.Output,
		"--signal=B:USR1@600"}
	for _, o := range []struct{ flag, v string }{{"partition", r.Partition}, {"gres", r.Gres}, {"gpus", r.GPUs},
		{"cpus-per-task", r.CPUs}, {"mem", r.Mem}, {"account", r.Account}, {"qos", r.QOS}, {"constraint", r.Constraint}} {
		if o.v != "" {
			opts = append(opts, "--"+o.flag+"="+o.v)
		}
	}
	opts = append(opts, r.Extra...)
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	for _, o := range opts {
		if strings.ContainsAny(o, "\n\r") {
			return "", fmt.Errorf("slurm: option %q holds a line break", o)
		}
		b.WriteString("#SBATCH " + o + "\n")
	}
	b.WriteString(r.Body)
	if !strings.HasSuffix(r.Body, "\n") {
		b.WriteString("\n")
	}
	return b.String(), nil
}

// Submit implements Scheduler.
func (Slurm) Submit(path string) Command { return Command{"sbatch", "--parsable", path} }

// Test implements Scheduler; sbatch reads the script on stdin and prints
// the estimate on stderr.
func (Slurm) Test() Command { return Command{"sbatch", "--test-only"} }

// Query implements Scheduler: -t all, so that a job that just ended is
// still reported (for MinJobAge) with the state it ended in.
func (Slurm) Query(job string) Command {
	return Command{"squeue", "-h", "-t", "all", "-j", job, "-o", slurmFormat}
}

// Lookup implements Scheduler.
func (Slurm) Lookup(name string) Command {
	return Command{"squeue", "-h", "-t", "all", "--me", "-n", name, "-o", slurmFormat}
}

// List implements Scheduler; ParseStatus's caller keeps the names with the
// prefix (squeue has no name-prefix filter).
func (Slurm) List(string) Command { return Command{"squeue", "-h", "--me", "-o", slurmFormat} }

// Accounting implements Scheduler.
func (Slurm) Accounting(job string) Command {
	return Command{"sacct", "-n", "-P", "-X", "-j", job, "-o", slurmAcctFields}
}

// Cancel implements Scheduler.
func (Slurm) Cancel(job string) Command { return Command{"scancel", job} }

// ParseSubmit implements Scheduler: --parsable prints "ID" or "ID;CLUSTER".
func (Slurm) ParseSubmit(out string) (string, error) {
	for _, line := range strings.Split(out, "\n") {
		id, _, _ := strings.Cut(strings.TrimSpace(line), ";")
		if id != "" && strings.Trim(id, "0123456789_") == "" {
			return id, nil
		}
	}
	return "", fmt.Errorf("sbatch printed no job id: %w", ErrNoJob)
}

// slurmTest is sbatch --test-only's line.
var slurmTest = regexp.MustCompile(`Job \d+ to start at (\S+)`)

// ParseTest implements Scheduler; the time is the cluster's local time, read
// as UTC (compare it with the cluster's clock, not this machine's).
func (Slurm) ParseTest(out string) (time.Time, error) {
	m := slurmTest.FindStringSubmatch(out)
	if m == nil {
		return time.Time{}, fmt.Errorf("sbatch --test-only: %s", strings.TrimSpace(out))
	}
	return slurmTime(m[1]), nil
}

// ParseStatus implements Scheduler.
func (Slurm) ParseStatus(out string) ([]Status, error) {
	var jobs []Status
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.SplitN(line, "|", 7)
		if len(f) != 7 {
			return nil, fmt.Errorf("squeue: unexpected line %q", line)
		}
		s := Status{State: f[0], Node: firstNode(f[4]), Start: slurmTime(f[2]), TimeLeft: slurmDuration(f[3]),
			ID: f[5], Name: f[6]}
		s.Phase, s.Reason = slurmPhase(s.State, f[1])
		jobs = append(jobs, s)
	}
	return jobs, nil
}

// ParseAccounting implements Scheduler: sacct -P lines; a job's steps are
// left out (-X), a state may carry "by UID" (CANCELLED by 1000).
func (Slurm) ParseAccounting(out string) ([]Status, error) {
	var jobs []Status
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.SplitN(line, "|", 6)
		if len(f) != 6 {
			return nil, fmt.Errorf("sacct: unexpected line %q", line)
		}
		state, _, _ := strings.Cut(f[0], " ")
		s := Status{State: state, Node: firstNode(f[3]), Start: slurmTime(f[2]), TimeLeft: -1, ID: f[4], Name: f[5]}
		s.Phase, s.Reason = slurmPhase(state, f[1])
		jobs = append(jobs, s)
	}
	return jobs, nil
}

// slurmStates maps Slurm's job states to kq's phases and end reasons.
var slurmStates = map[string]struct {
	phase  Phase
	reason string
}{
	"PENDING": {Pending, ""}, "REQUEUED": {Pending, ""}, "REQUEUE_HOLD": {Pending, ""}, "REQUEUE_FED": {Pending, ""},
	"RESV_DEL_HOLD": {Pending, ""}, "SPECIAL_EXIT": {Pending, ""},
	"RUNNING": {Running, ""}, "CONFIGURING": {Running, ""}, "COMPLETING": {Running, ""}, "RESIZING": {Running, ""},
	"SIGNALING": {Running, ""}, "STAGE_OUT": {Running, ""}, "SUSPENDED": {Running, ""}, "STOPPED": {Running, ""},
	"COMPLETED": {Ended, EndCompleted}, "TIMEOUT": {Ended, EndTimeLimit}, "DEADLINE": {Ended, EndTimeLimit},
	"PREEMPTED": {Ended, EndPreempted}, "NODE_FAIL": {Ended, EndNodeFailure}, "BOOT_FAIL": {Ended, EndNodeFailure},
	"OUT_OF_MEMORY": {Ended, EndOutOfMemory}, "CANCELLED": {Ended, EndCancelled}, "REVOKED": {Ended, EndCancelled},
	"FAILED": {Ended, EndFailed},
}

// slurmPhase maps a state; the scheduler's reason is kept for a pending
// job only (an ended job's squeue reason is the last pending one).
func slurmPhase(state, reason string) (Phase, string) {
	m, ok := slurmStates[state]
	switch {
	case !ok:
		return Unknown, ""
	case m.phase == Pending:
		return Pending, reason
	}
	return m.phase, m.reason
}

// LiveStates implements Scheduler.
func (Slurm) LiveStates() []string {
	var live []string
	for _, s := range slices.Sorted(maps.Keys(slurmStates)) {
		if m := slurmStates[s]; m.phase == Pending || m.phase == Running {
			live = append(live, s)
		}
	}
	return live
}

// NodeAddress implements Scheduler: the node's name from the job's
// environment, its address from scontrol (the address slurmctld reaches it
// at, so one the login node routes to).
func (Slurm) NodeAddress() string {
	return `node=${SLURMD_NODENAME:-$(hostname)}
addr=$(scontrol -o show node "$node" 2>/dev/null | tr ' ' '\n' | sed -n 's/^NodeAddr=//p' | head -n 1)
printf '%s %s\n' "$node" "$addr"`
}

// firstNode is the first node of a node list ("n[1-3]" -> "n1"); "" for
// none ("n/a", "None assigned").
func firstNode(list string) string {
	list = strings.TrimSpace(list)
	if list == "" || strings.EqualFold(list, "n/a") || strings.HasPrefix(list, "None") || strings.HasPrefix(list, "(") {
		return ""
	}
	if i := strings.IndexByte(list, '['); i >= 0 {
		first := strings.FieldsFunc(list[i+1:], func(r rune) bool { return r == ',' || r == '-' || r == ']' })
		if len(first) > 0 {
			return list[:i] + first[0]
		}
		return list[:i]
	}
	first, _, _ := strings.Cut(list, ",")
	return first
}

// slurmTime reads Slurm's ISO-8601 local time; "N/A", "Unknown", "None"
// are the zero time.
func slurmTime(s string) time.Time {
	t, err := time.Parse("2006-01-02T15:04:05", strings.TrimSpace(s))
	if err != nil {
		return time.Time{}
	}
	return t
}

// slurmDuration reads [days-][hours:]minutes:seconds; -1 for UNLIMITED,
// NOT_SET, INVALID and anything else.
func slurmDuration(s string) time.Duration {
	s = strings.TrimSpace(s)
	var days int
	if d, rest, ok := strings.Cut(s, "-"); ok {
		n, err := strconv.Atoi(d)
		if err != nil {
			return -1
		}
		days, s = n, rest
	}
	parts := strings.Split(s, ":")
	if len(parts) > 3 || (days > 0 && len(parts) != 3) {
		return -1 // squeue prints days-hours:minutes:seconds
	}
	total := 0
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return -1
		}
		total = total*60 + n
	}
	return time.Duration(days)*24*time.Hour + time.Duration(total)*time.Second
}
