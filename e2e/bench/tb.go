package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// errFatal is the panic of runner.Fatalf; main recovers it.
var errFatal = errors.New("benchmark setup failed")

// runner is the testing.TB the e2e helpers (sshdtest, netns) get outside
// a test: cleanups registered with Cleanup run last-first, once, when
// the benchmark ends, whether it succeeded, failed or was interrupted.
// Fatalf must only be called from the main goroutine.
type runner struct {
	testing.TB // never called: only the methods below are used

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	done     bool
	verbose  bool
}

func (r *runner) Helper()      {}
func (r *runner) Name() string { return "bench" }

func (r *runner) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *runner) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *runner) Logf(format string, args ...any) {
	if r.verbose {
		fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	}
}

func (r *runner) Log(args ...any) { r.Logf("%s", fmt.Sprint(args...)) }

func (r *runner) Errorf(format string, args ...any) {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
	fmt.Fprintf(os.Stderr, "bench: error: "+format+"\n", args...)
}

func (r *runner) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }

func (r *runner) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(errFatal)
}

func (r *runner) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// TempDir is a new directory removed at the end.
func (r *runner) TempDir() string {
	d, err := os.MkdirTemp("", "kq-bench-")
	if err != nil {
		r.Fatalf("temp dir: %v", err)
	}
	r.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// finish runs the cleanups, last registered first, once.
func (r *runner) finish() {
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return
	}
	r.done = true
	cs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}
