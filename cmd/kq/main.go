// Command kq gives you a Jupyter kernel on a remote machine in one command.
// See the README for profiles and exit codes.
package main

import (
	"os"
	"runtime/debug"

	"github.com/kq-dev/kq/cmd"
)

// memoryLimit is kq's soft memory limit (runtime/debug.SetMemoryLimit):
// what the Go runtime maps, not counting the binary's own pages. Output
// streaming through kq is garbage at once (x/crypto decrypts each packet
// into a fresh buffer), and with GOGC alone the heap grows to twice what is
// live before the collector runs; near this limit it runs sooner. It is
// soft: a session that needs more gets it (the collector's CPU is capped).
// Measured by go run ./e2e/bench -footprint 100 (100 MiB through one
// session), against none: peak RSS 0.88-0.97x with 16 MiB, CPU and iopub
// MB/s within the noise; 12 MiB gave 0.85x for 1.4x the CPU, 8 MiB 3.5x.
const memoryLimit = 16 << 20

func main() {
	setMemoryLimit(os.Getenv)
	os.Exit(cmd.Main(os.Args[1:]))
}

// setMemoryLimit sets memoryLimit unless the user tuned the collector
// (GOMEMLIMIT or GOGC in the environment); it reports whether it did.
func setMemoryLimit(getenv func(string) string) bool {
	if getenv("GOMEMLIMIT") != "" || getenv("GOGC") != "" {
		return false
	}
	debug.SetMemoryLimit(memoryLimit)
	return true
}
