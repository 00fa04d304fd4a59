// Package sched puts batch schedulers behind one small seam: what kq
// submits (a batch script with the scheduler's directives and the argv that
// submits it), how it asks about, looks up and cancels a job, and how the
// scheduler's replies map onto kq's three job phases (pending, running,
// ended with a reason).
//
// The commands run on the login node, in kq's remote program (remote.sh and
// the job wrapper it runs), never on a command line kq builds itself: this
// package only builds argv and parses the text the commands print, so it
// is pure and its parsers are tested against captured real output.
package sched

import (
	"errors"
	"fmt"
	"time"
)

// Command is one scheduler command as argv. The job id and the script's
// path are what the caller passed, so a caller that builds a command before
// the job exists passes a placeholder its remote side fills in.
type Command []string

// Phase is where a job is in its life.
type Phase int

// The phases kq tells apart.
const (
	// Unknown: the reply did not say (a state kq does not know).
	Unknown Phase = iota
	// Pending: queued, not yet on a node.
	Pending
	// Running: on a node (also while it is being set up or wound down).
	Running
	// Ended: finished, for the reason in Status.Reason.
	Ended
)

func (p Phase) String() string {
	return [...]string{"unknown", "pending", "running", "ended"}[p]
}

// End reasons: why a job ended, in kq's words.
const (
	EndCompleted   = "completed"
	EndTimeLimit   = "time limit"
	EndPreempted   = "preempted"
	EndNodeFailure = "node failure"
	EndOutOfMemory = "out of memory"
	EndCancelled   = "cancelled"
	EndFailed      = "failed"
)

// Status is one job as the scheduler reports it.
type Status struct {
	// ID is the scheduler's job id.
	ID string
	// Name is the job's name (kq's jobs: kq-<kernel id>).
	Name string
	// State is the scheduler's own word for the state (PENDING, TIMEOUT).
	State string
	// Phase is State in kq's terms.
	Phase Phase
	// Reason is, when pending, why (Priority, Resources, a QOS limit);
	// when ended, kq's end reason (EndTimeLimit, ...).
	Reason string
	// Node is the node the job runs on (the first, for several).
	Node string
	// Start is the (estimated, when pending) start time; zero if unknown.
	Start time.Time
	// TimeLeft is the time until the job's time limit, when running; -1
	// when it has none.
	TimeLeft time.Duration
}

// Request is one kernel job: what kq asks the scheduler for, and what the
// job runs.
type Request struct {
	// Name is the job's name, kq-<kernel id>.
	Name string
	// Output is the file that receives the job's output.
	Output string
	// Body is the shell program the job runs on the node.
	Body string
	// Resources are the profile's slurm: settings.
	Resources
}

// Resources are a job's requests, as a profile's scheduler block gives
// them; empty fields are left to the scheduler's defaults.
type Resources struct {
	// Time is the time limit (Slurm's forms: "90", "2:00:00", "1-12").
	Time string
	// Partition, Account, QOS and Constraint are passed as given.
	Partition, Account, QOS, Constraint string
	// Gres ("gpu:1") and GPUs ("1", "a100:2") request GPUs.
	Gres, GPUs string
	// CPUs is the number of CPUs for the kernel; Mem its memory ("16G").
	CPUs, Mem string
	// Extra holds any other options, each as the scheduler takes it
	// ("--exclusive", "--reservation=x").
	Extra []string
}

// Scheduler is one batch system: the commands kq runs on the login node and
// the readers of what they print.
type Scheduler interface {
	// Name is the scheduler's name as a profile's scheduler: key says it.
	Name() string
	// Script is the batch script for r: directives, then r.Body.
	Script(r Request) (string, error)
	// Submit submits the script at path and prints the job id; Test reads
	// a script on its stdin and asks for an estimated start without
	// submitting it.
	Submit(path string) Command
	Test() Command
	// Query, Lookup and List print status lines (ParseStatus) of one job, of
	// the jobs with one name, and of the user's kq jobs.
	Query(job string) Command
	Lookup(name string) Command
	List(namePrefix string) Command
	// Accounting asks the accounting database about a job that the live
	// queue no longer knows (ParseAccounting).
	Accounting(job string) Command
	// Cancel cancels a job.
	Cancel(job string) Command
	// ParseSubmit reads Submit's output; ParseTest the estimate Test printed.
	ParseSubmit(out string) (string, error)
	ParseTest(out string) (time.Time, error)
	ParseStatus(out string) ([]Status, error)
	ParseAccounting(out string) ([]Status, error)
	// LiveStates are the states of a job that is not over: the remote side
	// keeps watching a job in one of them.
	LiveStates() []string
	// NodeAddress is a POSIX sh snippet run inside the job on the node that
	// prints the node's name and its address as the scheduler knows them.
	NodeAddress() string
}

// ErrNoJob: a reply that names no job (an empty query, a submit that
// printed no id).
var ErrNoJob = errors.New("no such job")

// For returns the scheduler a profile's scheduler: key names.
func For(name string) (Scheduler, error) {
	switch name {
	case "slurm":
		return Slurm{}, nil
	}
	return nil, fmt.Errorf("unknown scheduler %q (kq knows: slurm)", name)
}
