// Package remote is kq's side on the server: remote.sh, a POSIX sh program
// sent on the stdin of one constant command, and the one Go parser of its
// line protocol. Its ops (start, attach, list, stop, interrupt, restart,
// cat, rm) run behind a Runner: an SSH session in production, a local sh
// in tests. It knows nothing of SSH chains, forwarding or sessions.
package remote

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// lib is kq's remote program; see the comments in remote.sh.
//
//go:embed remote.sh
var lib string

// jobLib is the side of a kernel in a batch job (job.sh): the login
// side's watcher and the batch script's body.
//
//go:embed job.sh
var jobLib string

// Command is the one command line kq runs on a host, for every op: the
// program and its settings arrive on the session's stdin, so nothing
// secret is ever on a command line there, and a login shell of any syntax
// (csh and tcsh reject newlines inside quotes) only parses this.
const Command = "exec /bin/sh -s"

// KernelSpec is what the remote side needs to start one kernel.
type KernelSpec struct {
	// Command is the user's kernel command; "-f FILE" is appended.
	Command string
	// RuntimeDir is where the connection file goes; "" asks the server.
	RuntimeDir string
	// Workdir is the kernel's working directory; "" is the login directory.
	Workdir string
	// Env is exported to the kernel.
	Env map[string]string
	// ID names the remote files kernel-kq-<ID>.*.
	ID string
	// IP, when set, is passed as --ip so the kernel listens there (a
	// compute node's address) instead of its default 127.0.0.1.
	IP string
	// Linger is how long the kernel outlives the last kq session.
	Linger time.Duration
	// Keep leaves the kernel up with no kq session at all, until kq stop.
	Keep bool
	// Preset, when set, is a connection file (key, signature scheme,
	// ports 0) written where the kernel reads it with -f, so that the
	// kernel uses the key a local kernel manager chose and binds free ports
	// of its own, which it writes back (kq kernel).
	Preset []byte
	// Owner tags the kernel with who launched it (kq kernel: a hash of the
	// manager's key); starting a kernel with an owner first stops any
	// older kernel with the same owner, so a manager's restart leaves one.
	Owner string
	// Warm: take a spare kernel of the same flavor (start script and
	// linger) when there is one, and leave a new spare behind (warm: 1).
	// Not with Preset: a spare has a key of its own.
	Warm bool
	// WarmCode is Python the kernel runs as it starts, one statement per
	// line (ipykernel's --IPKernelApp.exec_lines).
	WarmCode string
	// Job, when set, runs the kernel in a batch job on a compute node; the
	// process remote.sh starts and holds is then the job's login side.
	Job *JobSpec
	// OnSched receives a batch job's status lines as they change
	// (KIND|CLUSTER-TIME|TEXT, see job.sh), from the hold's reader.
	OnSched func(line string)
}

// Flavor tells kernels apart that a warm session may take for each other:
// the same start script (command, workdir, env:, warm_code) and linger.
func (k KernelSpec) Flavor() string {
	sum := sha256.Sum256([]byte(k.StartScript() + "\n" + k.Linger.String()))
	return hex.EncodeToString(sum[:8])
}

// JobArg and ScriptArg stand for the job id and the batch script's path in
// a JobSpec's commands; the remote side fills them in.
const (
	JobArg    = "\x00JOB\x00"
	ScriptArg = "\x00SCRIPT\x00"
)

// JobSpec is a batch job for the kernel: what the scheduler package
// built, for job.sh to run on the login node.
type JobSpec struct {
	// BatchScript is the whole batch script: directives, then JobBody.
	BatchScript string
	// Submit, Query, Accounting, Lookup and Cancel are the scheduler's
	// commands (argv, with JobArg and ScriptArg); Query and Lookup print
	// "STATE|...|...|...|...|ID|NAME" lines, Accounting "STATE...|...".
	Submit, Query, Accounting, Lookup, Cancel []string
	// LiveStates are the states of a job that is not over.
	LiveStates []string
	// NodeAddress is a sh snippet, run in the job, that prints "NODE ADDRESS".
	NodeAddress string
	// Stale is how old the login side's heartbeat may grow before the
	// job's node side stops the kernel; only a value below
	// DefaultJobStale (kq's own tests) changes it.
	Stale time.Duration
	// QueueTimeout bounds the wait for the kernel's connection file (the
	// queue wait and the start); 0 waits as long as kq runs.
	QueueTimeout time.Duration
}

// commandLine is the kernel command as the remote shell runs it, with the
// connection file path in "$1".
func (k KernelSpec) commandLine() string {
	cmd := strings.TrimSpace(k.Command)
	if k.Job != nil {
		cmd += ` --ip="$KQ_NODE_ADDR"` // the node's address, known in the job
	} else if k.IP != "" {
		cmd += " --ip=" + shQuote(k.IP)
	}
	for _, line := range strings.Split(k.WarmCode, "\n") {
		if strings.TrimSpace(line) != "" {
			cmd += " " + shQuote("--IPKernelApp.exec_lines="+line)
		}
	}
	return cmd + ` -f "$1"`
}

// StartScript is the kernel's own start script (kernel-kq-ID.cmd), kept on
// the server so that kq restart can run it again; --dry-run shows it.
// Every value is quoted data: a workdir or env value never runs as shell.
// A simple command is exec'ed (through env(1) when it begins with
// VAR=value assignments), so the recorded pid is the kernel's own.
func (k KernelSpec) StartScript() string {
	if k.Job != nil {
		return k.jobLogin()
	}
	return k.kernelScript()
}

// kernelScript starts the kernel itself (on the host, or on a job's node).
func (k KernelSpec) kernelScript() string {
	var lines []string
	if k.Workdir != "" {
		d := shPath(k.Workdir)
		lines = append(lines, fmt.Sprintf(`cd -- %s || { printf 'cannot cd to workdir %%s\n' %s >&2; exit 1; }`, d, d))
	}
	for _, key := range slices.Sorted(maps.Keys(k.Env)) {
		lines = append(lines, "export "+key+"="+shQuote(k.Env[key]))
	}
	cmd := k.commandLine()
	if !strings.ContainsAny(k.Command, ";&|\n()`") {
		if leadingAssignment.MatchString(k.Command) {
			cmd = "env " + cmd
		}
		cmd = "exec " + cmd
	}
	return strings.Join(append(lines, cmd), "\n")
}

// leadingAssignment matches a command that starts with VAR=value, which
// exec would take for the program's name.
var leadingAssignment = regexp.MustCompile(`^\s*[A-Za-z_][A-Za-z0-9_]*=`)

// KernelScript is the kernel's own start script; for a batch job it is
// what the job's node side runs, while StartScript is the job's login side.
func (k KernelSpec) KernelScript() string { return k.kernelScript() }

// JobBody is the batch script's body for the kernel's job: job.sh's node
// side with its settings. Scheduler directives go before it.
func (k KernelSpec) JobBody() string {
	var b strings.Builder
	b.WriteString("# kq: the kernel's node side (job.sh); it starts in the runtime dir.\n")
	fmt.Fprintf(&b, "id=%s\nstale=%d\npark=%d\nq_node=%s\n", shQuote(k.ID), jobStale(k.Job), k.park(), shQuote(k.Job.NodeAddress))
	b.WriteString(jobLib)
	b.WriteString("job_node\n")
	return b.String()
}

// jobPark is how long a kernel manager's job keeps its allocation once its
// kernel is gone, for the manager's restart (a new kq kernel with the same
// owner, within a second or two) to start the next kernel in it.
const jobPark = 10 * time.Second

// park is job.sh's park, in seconds: a kernel manager's kernel only.
func (k KernelSpec) park() int {
	if k.Owner == "" {
		return 0
	}
	return int(jobPark / time.Second)
}

// DefaultJobStale is how old the login side's heartbeat may grow before a
// job's node side stops the kernel: well above NFS attribute caching
// (acregmax is 60 s) and the login side's longest poll (5 s).
const DefaultJobStale = 180 * time.Second

// jobStale is the heartbeat staleness in whole seconds: JobSpec.Stale when
// it is at least a second and below the default (it only ever lowers it),
// else the default.
func jobStale(j *JobSpec) int {
	if j.Stale >= time.Second && j.Stale < DefaultJobStale {
		return int(j.Stale / time.Second)
	}
	return int(DefaultJobStale / time.Second)
}

// jobLogin is the start script of a kernel in a batch job: job.sh's login
// side, which writes the batch script and the kernel's start script next to
// the connection file ("$1"), submits and watches the job.
func (k KernelSpec) jobLogin() string {
	j := k.Job
	var b strings.Builder
	fmt.Fprintf(&b, "id=%s\nstale=%d\npark=%d\njob_batch=%s\njob_kernel=%s\n", shQuote(k.ID), jobStale(j), k.park(),
		shQuote(j.BatchScript), shQuote(k.kernelScript()))
	for _, c := range []struct {
		name string
		argv []string
	}{{"q_submit", j.Submit}, {"q_query", j.Query}, {"q_acct", j.Accounting}, {"q_lookup", j.Lookup}, {"q_cancel", j.Cancel}} {
		fmt.Fprintf(&b, "%s=%s\n", c.name, shQuote(shWords(c.argv)))
	}
	fmt.Fprintf(&b, "q_live=%s\n", shQuote(strings.Join(j.LiveStates, " ")))
	b.WriteString(jobLib)
	b.WriteString("job_login \"$1\"\n")
	return b.String()
}

// shWords is argv as sh words for eval, with JobArg and ScriptArg as the
// variables job.sh keeps them in.
func shWords(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		switch a {
		case JobArg:
			words[i] = `"$job"`
		case ScriptArg:
			words[i] = `"$base.sbatch"`
		default:
			words[i] = shQuote(a)
		}
	}
	return strings.Join(words, " ")
}

// vars are the settings an op reads.
type vars struct {
	rt, id  string
	linger  time.Duration
	keep    bool
	start   string // start_script, for op_start
	path    string // for op_cat and op_rm
	graceDS int    // tenths of a second, for op_stop
	preset  []byte // conn_json, for op_start
	owner   string // for op_start
	poll    bool   // for op_start: wait for the connection file by polling even where inotifywait exists (tests)
	warm    bool   // for op_start: take a spare, leave one
	flavor  string // for op_start with warm: which spares fit
	// wait is how long op_start waits for the connection file: 0 is the
	// default 120 s, -1 no limit (a batch job's queue wait).
	wait  time.Duration
	sched string // sched_cmd, for op_sched (path holds its program)
	adopt bool   // op_start may take over this owner's batch job kernel
}

// startWait is start_wait in tenths of a second (0: no limit).
func (v vars) startWait() int {
	switch {
	case v.wait < 0:
		return 0
	case v.wait == 0:
		return 1200
	}
	return max(int(v.wait/(100*time.Millisecond)), 1)
}

// program is one op as a POSIX sh program, as sent on stdin: the
// settings, the library and the call.
func program(v vars, op string) string {
	var b strings.Builder
	rt := "''"
	if v.rt != "" {
		rt = shPath(v.rt)
	}
	keep := 0
	if v.keep {
		keep = 1
	}
	linger := int(v.linger / time.Second)
	inotify := 1
	if v.poll {
		inotify = 0
	}
	warm := 0
	if v.warm {
		warm = 1
	}
	fmt.Fprintf(&b, "rt=%s\nid=%s\nlinger=%d\nkeep=%d\nstart_script=%s\npath=%s\ngrace=%s\nconn_json=%s\nowner=%s\ninotify=%d\nwarm=%d\nflavor=%s\n",
		rt, shQuote(v.id), max(linger, 2), keep, shQuote(v.start), shQuote(v.path), strconv.Itoa(v.graceDS),
		shQuote(string(v.preset)), shQuote(v.owner), inotify, warm, shQuote(v.flavor))
	adopt := 0
	if v.adopt {
		adopt = 1
	}
	fmt.Fprintf(&b, "start_wait=%d\nsched_cmd=%s\nadopt=%d\n", v.startWait(), shQuote(v.sched), adopt)
	b.WriteString(lib)
	// One line, so the shell has read all of the program before the op
	// runs and reads kq's lines itself.
	b.WriteString("\n" + op + "; exit\n")
	return b.String()
}

// shQuote quotes s for a POSIX shell.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shPath quotes a path but lets a leading ~ expand to $HOME remotely.
func shPath(p string) string {
	if p == "~" {
		return `"$HOME"`
	}
	if strings.HasPrefix(p, "~/") {
		return `"$HOME"/` + shQuote(p[2:])
	}
	return shQuote(p)
}
