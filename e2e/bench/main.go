// Command bench measures kq against the other ways to reach a remote
// Jupyter kernel, side by side in one run: a local kernel with no SSH (the
// floor), the manual recipe (ssh HOST kernel, scp, five ssh -f -N -L), one
// ssh with five -L and a session, jupyter_client's own tunnel
// (tunnel_to_kernel, as --ssh does) and kq, on a real sshd on 127.0.0.1
// and through a login host in a network namespace behind a proxy that adds
// round-trip time. Methods are interleaved, with warm-up runs and
// repetitions; it prints medians, spread and ratios, and with -out writes
// results.md and PNG charts (-json: every sample).
//
//	go run ./e2e/bench            # full run (root: namespaces, sshd)
//	go run ./e2e/bench -quick     # one small repetition, a smoke test
//	go run ./e2e/bench -compare=false -scale 50 -footprint 100
//	                              # only 50 sessions at once, and kq's memory
//	                              # while 100 MiB of output streams through it
//	go run ./e2e/bench -compare=false -manager 5
//	                              # only kq kernel under jupyter_client's
//	                              # KernelManager: start, interrupt, restart
//
// It needs root, /usr/sbin/sshd and Debian's Jupyter (/usr/bin/python3),
// no network beyond this machine, and removes everything it made (sshd,
// kernels, namespaces, files), also on failure or Ctrl-C.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// options are the command's flags.
type options struct {
	reps, warmup int
	rtts         int
	bigSize      int
	smallCount   int
	hopRTT       time.Duration
	out          string
	json         string
	kq           string
	alts         multiFlag
	methods      string
	scenarios    string
	quick        bool
	verbose      bool
	maxFailures  int
	compare      bool // the interleaved comparison of the methods
	scale        int  // sessions of the scale mode, 0: none
	footprint    int  // MiB streamed in the footprint mode, 0: none
	manager      int  // repetitions of the manager mode, 0: none
	scaleHold    bool // hold sshd until every session's connection waits
}

// multiFlag is a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func parseFlags(args []string) options {
	var o options
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.IntVar(&o.reps, "reps", 5, "measured repetitions of every method in every scenario")
	fs.IntVar(&o.warmup, "warmup", 1, "unmeasured repetitions first")
	fs.IntVar(&o.rtts, "rtts", 100, "execute round trips per run, idle and busy each")
	fs.IntVar(&o.bigSize, "big", 20_000_000, "bytes of the one large iopub message")
	fs.IntVar(&o.smallCount, "small", 320, "number of 64 KiB iopub messages")
	fs.DurationVar(&o.hopRTT, "hop-rtt", 50*time.Millisecond, "round-trip time added on the client-login link")
	fs.StringVar(&o.out, "out", "", "directory for results.md and the charts")
	fs.StringVar(&o.json, "json", "", "file for every sample as JSON")
	fs.StringVar(&o.kq, "kq", "", "kq binary to measure (default: build ./cmd/kq)")
	fs.Var(&o.alts, "kq-alt", "LABEL=PATH: another kq binary measured beside it, e.g. an older commit (repeatable)")
	fs.StringVar(&o.methods, "methods", "", "comma-separated subset of methods (default all)")
	fs.StringVar(&o.scenarios, "scenarios", "loopback,hop", "scenarios to run")
	fs.BoolVar(&o.quick, "quick", false, "smoke test: 1 repetition, no warm-up, small sizes")
	fs.BoolVar(&o.verbose, "v", false, "log every run")
	fs.IntVar(&o.maxFailures, "max-failures", 3, "give up after this many failed runs")
	fs.BoolVar(&o.compare, "compare", true, "run the interleaved comparison of the methods (false: only -scale and -footprint)")
	fs.IntVar(&o.scale, "scale", 0, "scale mode: start this many kq sessions at once on an sshd with OpenSSH's default MaxStartups")
	fs.BoolVar(&o.scaleHold, "scale-hold", true, "scale mode: stop sshd until every session's TCP connection waits in its listen queue, so that all arrive at once")
	fs.IntVar(&o.footprint, "footprint", 0, "footprint mode: stream this many MiB of iopub output through one session of each kq method, -reps times")
	fs.IntVar(&o.manager, "manager", 0, "manager mode: this many repetitions of a kernel's life under jupyter_client's KernelManager (start, interrupt, two restarts, shutdown), the local kernel and kq kernel of each kq method in each scenario")
	_ = fs.Parse(args)
	if o.quick {
		o.reps, o.warmup, o.rtts, o.bigSize, o.smallCount = 1, 0, 10, 2_000_000, 32
	}
	return o
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == notifyArg {
		os.Exit(notifyMain(os.Args[2], os.Args[3:]))
	}
	os.Exit(benchMain(parseFlags(os.Args[1:])))
}

// benchMain runs the benchmark and cleans up on every way out.
func benchMain(o options) (code int) {
	t := &runner{verbose: o.verbose}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	var once sync.Once
	finish := func() { once.Do(t.finish) }
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "bench: %s: cleaning up\n", s)
		finish()
		os.Exit(130)
	}()
	defer finish()
	defer func() {
		if p := recover(); p != nil {
			if !errors.Is(asError(p), errFatal) {
				fmt.Fprintf(os.Stderr, "bench: %v\n", p)
			}
			code = 1
		}
	}()
	b := setup(t, o)
	if o.compare {
		results, err := b.loop()
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
		report(os.Stdout, o, results, b.methodNames())
		if o.out != "" || o.json != "" {
			if err := writeOutputs(o, b.machine, results, b.methodNames()); err != nil {
				fmt.Fprintf(os.Stderr, "bench: %v\n", err)
				return 1
			}
		}
	}
	if err := b.modes(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	if t.Failed() {
		return 1
	}
	return 0
}

func asError(p any) error {
	if e, ok := p.(error); ok {
		return e
	}
	return fmt.Errorf("%v", p)
}

// buildKQ builds ./cmd/kq into dir.
func buildKQ(t *runner, dir string) string {
	path := filepath.Join(dir, "kq")
	cmd := exec.Command("go", "build", "-o", path, "github.com/kq-dev/kq/cmd/kq")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build kq: %v", err)
	}
	return path
}
