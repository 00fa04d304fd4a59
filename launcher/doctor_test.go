package launcher

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestDoctorReport: one line per check with its status, time and text; a
// failure's hint on the next line; -v detail under it; a failure after an
// interruption shown as skipped; the counts at the end.
func TestDoctorReport(t *testing.T) {
	var out bytes.Buffer
	r := &DoctorReport{W: &out}
	r.note("not shown without -v")
	r.Add(Check{Name: "config", Took: 2 * time.Millisecond, Text: "profile p"})
	r.Add(Check{Name: "host h", Status: CheckFail, Took: time.Second, Text: "refused\nat once", Hint: "start sshd"})
	r.Add(Check{Name: "python", Status: CheckSkip, Text: "needs host h"})
	r.Verbose = true
	r.note("noted")
	r.Add(Check{Name: "frontend", Text: "ok", Detail: []string{"detail"}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.ctx = ctx
	if got := r.Add(Check{Name: "kernel", Status: CheckFail, Text: "context canceled", Hint: "h"}); got != CheckSkip {
		t.Errorf("interrupted failure shown as %s", got)
	}
	r.Summary()
	want := `PASS  config              2ms  profile p
FAIL  host h               1s  refused; at once
      hint: start sshd
SKIP  python                   needs host h
PASS  frontend             0s  ok
      noted
      detail
SKIP  kernel                   interrupted
2 passed, 1 failed, 2 skipped
`
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
	if !r.Failed() {
		t.Error("Failed() false after a failure")
	}
	if strings.Contains(out.String(), "\x1b") {
		t.Error("escape codes")
	}
}
