package launcher

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// CheckStatus is the outcome of one kq doctor check.
type CheckStatus int

// The outcomes. A check that depends on one that failed is skipped.
const (
	CheckPass CheckStatus = iota
	CheckFail
	CheckSkip
)

// String is the word kq doctor prints.
func (c CheckStatus) String() string {
	switch c {
	case CheckPass:
		return "PASS"
	case CheckFail:
		return "FAIL"
	}
	return "SKIP"
}

// Check is one line of kq doctor: what was checked, how it went, how long
// it took, what was found (or what went wrong), and on a failure a hint.
type Check struct {
	Name   string
	Status CheckStatus
	// Took is shown as it is: the checks round it (since).
	Took time.Duration
	Text string
	Hint string
	// Detail is shown with -v, under the line.
	Detail []string
}

// DoctorReport prints kq doctor's checks as they finish, as plain text
// (no escape codes: it is read in logs and pasted into bug reports), and
// counts them.
type DoctorReport struct {
	// W gets the lines; Verbose adds each check's detail.
	W       io.Writer
	Verbose bool

	counts  [3]int
	pending []string        // detail noted before its check's line
	ctx     context.Context // once it ends, a check that fails was cut short
}

// nameWidth aligns the texts of the usual check names.
const nameWidth = 14

// Add prints c; detail noted since the last check goes with it. It
// returns c's status as shown: a failure once the run was interrupted is
// shown as skipped.
func (r *DoctorReport) Add(c Check) CheckStatus {
	if c.Status == CheckFail && r.ctx != nil && r.ctx.Err() != nil {
		c.Status, c.Text, c.Hint = CheckSkip, "interrupted", ""
	}
	r.counts[c.Status]++
	took := ""
	if c.Status != CheckSkip {
		took = c.Took.String()
	}
	fmt.Fprintf(r.W, "%s  %-*s %8s  %s\n", c.Status, nameWidth, c.Name, took, oneLine(c.Text))
	if c.Status == CheckFail && c.Hint != "" {
		fmt.Fprintf(r.W, "      hint: %s\n", oneLine(c.Hint))
	}
	if r.Verbose {
		for _, d := range append(r.pending, c.Detail...) {
			fmt.Fprintf(r.W, "      %s\n", oneLine(d))
		}
	}
	r.pending = nil
	return c.Status
}

// note keeps a detail line for the next check's -v output.
func (r *DoctorReport) note(format string, args ...any) {
	r.pending = append(r.pending, fmt.Sprintf(format, args...))
}

// Failed says whether any check failed.
func (r *DoctorReport) Failed() bool { return r.counts[CheckFail] > 0 }

// Summary prints the counts.
func (r *DoctorReport) Summary() {
	fmt.Fprintf(r.W, "%d passed, %d failed, %d skipped\n", r.counts[CheckPass], r.counts[CheckFail], r.counts[CheckSkip])
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

// skipAll reports names as skipped for why.
func (r *DoctorReport) skipAll(why string, names ...string) {
	for _, n := range names {
		r.Add(Check{Name: n, Status: CheckSkip, Text: why})
	}
}

// doctorLinger bounds how long a doctor's kernel outlives a kq doctor
// that was killed before it could stop it.
const doctorLinger = 15 * time.Second

// Doctor runs kq doctor's checks for a resolved profile, in order, after
// the config check its caller made: each hop (resolved, connected, host
// key known, authenticated; known_hosts is never written and nothing is
// asked), the remote Python and ipykernel, the remote runtime dir, a
// kernel started, asked for kernel_info through the tunnel and stopped,
// the local frontend, and kq's kernelspecs. A check whose premise failed
// is skipped. Whatever it started is stopped before it returns.
func Doctor(ctx context.Context, o Options, r *DoctorReport) {
	r.ctx = ctx
	o.Quiet, o.Verbose, o.NoPrompt, o.Detach, o.Attach = true, false, true, false, nil
	o.Profile.Keep, o.Profile.Linger = false, min(o.Profile.Linger, doctorLinger)
	s := newSession(o)
	defer func() {
		if err := s.unwind(); err != nil {
			s.warn("cleanup: %v", err)
		}
	}()
	if !s.doctorConnect(ctx, r) {
		r.skipAll("needs the connection to the host", "python", "runtime dir", "kernel")
	} else {
		py := s.doctorPython(ctx, r)
		rt := s.doctorRuntimeDir(ctx, r)
		switch {
		case py == CheckFail:
			r.skipAll("needs a Python that can run the kernel", "kernel")
		case rt == CheckFail:
			r.skipAll("needs a usable runtime dir", "kernel")
		default:
			s.doctorKernel(ctx, r)
		}
	}
	doctorFrontend(o.Profile, r)
	DoctorKernelspecs(ctx, r)
}

// DoctorNoProfile runs what kq doctor can check without a profile (the
// config did not parse, or the profile did not resolve): kq's
// kernelspecs; the rest is skipped.
func DoctorNoProfile(ctx context.Context, r *DoctorReport) {
	r.ctx = ctx
	r.skipAll("needs the profile", "hosts", "python", "runtime dir", "kernel", "frontend")
	DoctorKernelspecs(ctx, r)
}
