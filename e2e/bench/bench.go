package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// bench is one benchmark run's world.
type bench struct {
	t         *runner
	o         options
	dir       string
	env       []string
	probe     *probe
	methods   []*method
	scenarios []*scenario
	kqConfig  string
	notify    *net.UnixListener
	machine   string
	mu        sync.Mutex
	kqBin     string    // the kq measured (-kq, or built)
	scaleSc   *scenario // the scale mode's sshd (OpenSSH's default MaxStartups)
	fpSc      *scenario // the footprint mode's: loopback
}

// sample is what one run measured. Times in seconds, RTTs in ms.
type sample struct {
	Method, Scenario string
	Rep              int
	First            float64
	Marks            map[string]float64
	Turns            int64
	Reply, Idle      []float64
	BusyReply        []float64
	BusyIdle         []float64
	BigMBs, SmallMBs float64
}

func setup(t *runner, o options) *bench {
	b := &bench{t: t, o: o, dir: t.TempDir()}
	// Last of all (cleanups run last-first), whatever way the benchmark
	// ended: every process it started has its directory on its command
	// line; none may outlive it.
	t.Cleanup(func() {
		for _, pid := range sshdtest.ProcessesMatching(b.dir) {
			if pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	// kq remembers warm spares in the user's cache dir: here, the run's own.
	b.env = append(cleanEnv(), "XDG_CACHE_HOME="+filepath.Join(b.dir, "cache"))
	b.machine = describeMachine()
	kq := o.kq
	if kq == "" {
		kq = buildKQ(t, b.dir)
	}
	b.kqBin = kq
	all := []*method{
		{name: "floor", start: floorStart, ownsKernel: true, local: true},
		{name: "manual", start: manualStart, ownsKernel: true},
		{name: "ssh -L x5", start: oneSSHStart, ownsKernel: true, sshCPU: true},
		{name: "jupyter tunnel", start: jupyterStart, ownsKernel: true},
		{name: "kq", start: kqStart, kqBin: kq},
	}
	for _, a := range o.alts {
		label, path, ok := strings.Cut(a, "=")
		if !ok {
			t.Fatalf("-kq-alt %q: want LABEL=PATH", a)
		}
		all = append(all, &method{name: "kq " + label, start: kqStart, kqBin: path})
	}
	want := strings.Split(o.methods, ",")
	for _, m := range all {
		if o.methods == "" || slices.Contains(want, m.name) || (m.kqBin != "" && slices.Contains(want, "kq*")) {
			b.methods = append(b.methods, m)
		}
	}
	b.listenNotify()
	b.setupScenarios()
	b.writeKQConfig()
	b.probe = startProbe(t, b.dir)
	return b
}

// setupScenarios starts the scenarios the comparison and the modes need.
func (b *bench) setupScenarios() {
	t, o := b.t, b.o
	scs := strings.Split(o.scenarios, ",")
	if !o.compare && o.manager == 0 {
		scs = nil
	}
	for _, s := range scs {
		switch s {
		case "loopback":
			b.scenarios = append(b.scenarios, loopback(t, b.dir))
		case "hop":
			b.scenarios = append(b.scenarios, hop(t, b.dir, o.hopRTT))
		default:
			t.Fatalf("unknown scenario %q", s)
		}
	}
	if o.footprint > 0 {
		for _, sc := range b.scenarios {
			if sc.name == "loopback" {
				b.fpSc = sc
			}
		}
		if b.fpSc == nil {
			b.fpSc = loopback(t, b.dir)
		}
	}
	if o.scale > 0 {
		b.scaleSc = scaleLoopback(t, b.dir)
	}
}

// cleanEnv is the environment without an agent or the user's Jupyter
// and kq settings.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "SSH_AUTH_SOCK" || strings.HasPrefix(k, "KQ_") || strings.HasPrefix(k, "JUPYTER_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// writeKQConfig writes kq's config: one profile per scenario, whose
// frontend is this program in notify mode.
func (b *bench) writeKQConfig() {
	self, err := os.Executable()
	if err != nil {
		b.t.Fatalf("executable: %v", err)
	}
	profiles := map[string]any{}
	for _, sc := range append(slices.Clone(b.scenarios), b.fpSc, b.scaleSc) {
		if sc == nil {
			continue
		}
		profiles[sc.profile] = map[string]any{
			"host": "server", "ssh_config": sc.sshConfig, "runtime_dir": sc.remoteRT, "kernel": kernelCmd,
			"frontend": []string{self, notifyArg, b.notify.Addr().String(), "{connection_file}"},
		}
	}
	data, _ := json.Marshal(map[string]any{"profiles": profiles})
	b.kqConfig = filepath.Join(b.dir, "kq.yaml")
	mustWrite(b.kqConfig, string(data))
}

func (b *bench) methodNames() []string {
	var out []string
	for _, m := range b.methods {
		out = append(out, m.name)
	}
	return out
}

// runOrder is the order of n methods in repetition rep: rotated by one
// each repetition, so that none always runs first, and reversed every
// other one, so that none always runs right after the same other method
// (a method's leftovers, such as a kernel still exiting, would weigh on
// that one alone).
func runOrder(rep, n int) []int {
	out := make([]int, n)
	for i := range n {
		j := i
		if rep%2 == 1 {
			j = n - 1 - i
		}
		out[i] = (rep + j) % n
	}
	return out
}

// loop runs every method in every scenario, warm-up first, in runOrder.
func (b *bench) loop() ([]sample, error) {
	var results []sample
	failures := 0
	for rep := -b.o.warmup; rep < b.o.reps; rep++ {
		for _, sc := range b.scenarios {
			for _, i := range runOrder(rep+b.o.warmup, len(b.methods)) {
				m := b.methods[i]
				if m.local && sc.name != "loopback" {
					continue
				}
				s, err := b.runOne(sc, m, rep)
				if err != nil {
					failures++
					fmt.Fprintf(os.Stderr, "bench: %s / %s, rep %d: %v\n", m.name, sc.name, rep, err)
					if errors.Is(err, errProbeStuck) {
						return nil, err
					}
					if failures >= b.o.maxFailures {
						return nil, errors.New("too many failed runs")
					}
					continue
				}
				if rep >= 0 {
					results = append(results, s)
				}
				fmt.Fprintf(os.Stderr, "bench: rep %d %-9s %-16s first cell %.3fs\n", rep, sc.name, m.name, s.First)
			}
		}
	}
	return results, nil
}

// runOne starts method m in scenario sc, measures it and ends it.
func (b *bench) runOne(sc *scenario, m *method, rep int) (sample, error) {
	dir, err := os.MkdirTemp(b.dir, "run-")
	if err != nil {
		return sample{}, err
	}
	defer os.RemoveAll(dir)
	r := &run{b: b, sc: sc, m: m, dir: dir, marks: map[string]float64{}}
	defer r.endAll()
	s := sample{Method: m.name, Scenario: sc.name, Rep: rep, Marks: r.marks}
	if sc.proxy != nil {
		r.turns0 = sc.proxy.turns.Load()
	}
	r.t0 = time.Now()
	spec, err := m.start(r)
	if err != nil {
		return s, err
	}
	ans, err := b.probe.call(map[string]any{"op": "connect", "cf": spec.cf, "tunnel": spec.tunnel, "path": sc.binDir})
	if err != nil {
		return s, err
	}
	first, _ := ans["first"].(float64)
	s.First = first - float64(r.t0.UnixNano())/1e9
	if sc.proxy != nil {
		s.Turns = sc.proxy.turns.Load() - r.turns0
	}
	if pid, ok := ans["pid"].(float64); ok {
		r.kernels = append(r.kernels, int(pid))
	}
	if err := b.measure(&s); err != nil {
		return s, err
	}
	b.mu.Lock()
	s.Marks = copyMarks(r.marks)
	b.mu.Unlock()
	return s, b.end(r, m, &s)
}

func copyMarks(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// measure runs the RTT and throughput measurements on the connected
// probe.
func (b *bench) measure(s *sample) error {
	ans, err := b.probe.call(map[string]any{"op": "rtt", "n": b.o.rtts})
	if err != nil {
		return err
	}
	s.Reply, s.Idle = floats(ans, "reply"), floats(ans, "idle")
	if _, err := b.probe.call(map[string]any{"op": "busy", "on": true}); err != nil {
		return err
	}
	ans, err = b.probe.call(map[string]any{"op": "rtt", "n": b.o.rtts})
	if err != nil {
		return err
	}
	s.BusyReply, s.BusyIdle = floats(ans, "reply"), floats(ans, "idle")
	if _, err := b.probe.call(map[string]any{"op": "busy", "on": false}); err != nil {
		return err
	}
	if s.BigMBs, err = b.throughput(b.o.bigSize, 1); err != nil {
		return err
	}
	s.SmallMBs, err = b.throughput(64<<10, b.o.smallCount)
	return err
}

// throughput is MB/s (10^6 bytes) of count iopub messages of size bytes.
func (b *bench) throughput(size, count int) (float64, error) {
	ans, err := b.probe.call(map[string]any{"op": "throughput", "size": size, "count": count})
	if err != nil {
		return 0, err
	}
	sec, _ := ans["seconds"].(float64)
	n, _ := ans["bytes"].(float64)
	if sec <= 0 {
		return 0, errors.New("throughput: no time measured")
	}
	return n / sec / 1e6, nil
}

// end closes the probe's client (shutting the kernel down unless kq owns
// it), lets kq end, and waits for the kernel to be gone.
func (b *bench) end(r *run, m *method, s *sample) error {
	if _, err := b.probe.call(map[string]any{"op": "close", "shutdown": m.ownsKernel}); err != nil {
		return err
	}
	if m.kqBin != "" {
		if err := r.kqStop(); err != nil {
			return err
		}
		for _, k := range []string{"teardown", "kq cpu", "kq rss", "kq syscr", "kq syscw", "kq procs", "kq conns"} {
			s.Marks[k] = r.marks[k]
		}
	}
	for _, pid := range r.kernels {
		waitGone(pid, 10*time.Second)
	}
	if m.sshCPU && len(r.procs) > 0 {
		select { // the session ends with its kernel
		case <-r.waits[0]:
			ps := r.procs[0].ProcessState
			s.Marks["ssh cpu"] = (ps.UserTime() + ps.SystemTime()).Seconds()
		case <-time.After(5 * time.Second):
		}
	}
	return nil
}

// notifyArg makes this program kq's frontend: it hands the connection
// file to the benchmark and exits when the benchmark lets it go.
const notifyArg = "-notify"

func (b *bench) listenNotify() {
	path := filepath.Join(b.dir, "notify.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		b.t.Fatalf("notify socket: %v", err)
	}
	b.notify = ln
	b.t.Cleanup(func() { ln.Close() })
}

// acceptFrontend waits for kq's frontend to report its connection file,
// at most d, or until kq ends.
func (b *bench) acceptFrontend(d time.Duration, kqDone <-chan struct{}) (net.Conn, string, error) {
	_ = b.notify.SetDeadline(time.Now().Add(d))
	type res struct {
		c    net.Conn
		path string
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := b.notify.Accept()
		if err != nil {
			ch <- res{err: err}
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(d))
		line, err := bufio.NewReader(c).ReadString('\n')
		_ = c.SetReadDeadline(time.Time{})
		ch <- res{c, strings.TrimSpace(line), err}
	}()
	select {
	case x := <-ch:
		return x.c, x.path, x.err
	case <-kqDone:
		_ = b.notify.SetDeadline(time.Now())
		if x := <-ch; x.c != nil {
			x.c.Close()
		}
		return nil, "", errors.New("kq exited before its frontend started")
	}
}

// notifyMain is the frontend side: send the file, wait for EOF (bounded:
// a benchmark that died must not leave kq running for ever).
func notifyMain(sock string, args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "bench -notify SOCKET CONNECTION_FILE")
		return 2
	}
	c, err := net.DialTimeout("unix", sock, 10*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	if _, err := fmt.Fprintln(c, args[0]); err != nil {
		return 1
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Minute))
	buf := make([]byte, 1)
	_, _ = c.Read(buf)
	return 0
}
