package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// footprint is what one kq session cost while mib MiB of iopub output
// streamed through it.
type footprint struct {
	method               string
	hwm                  float64   // VmHWM at the end of the stream, MiB
	peak, base           memSample // smaps_rollup: highest seen during the stream, and before it
	mbs                  float64
	teardown             float64
	leftAtExit, left     int // server processes of the session when kq exited, and after the wait
	goneAfter, kqCPU     float64
	kqProcs, sshConns    int
	samples, streamBytes int
	leftWhat             string
}

// memSampleEvery is how often the footprint mode reads kq's memory.
const memSampleEvery = 10 * time.Millisecond

// streamBatch is the most messages the footprint mode has one cell
// produce (6.4 MiB of 64 KiB messages): the kernel's iopub PUB socket
// drops what is beyond 1000 messages queued for a slow reader.
const streamBatch = 100

// stream is MB/s (10^6 bytes) of count iopub messages of size bytes, in
// cells of at most batch messages (the probe's stream op).
func (b *bench) stream(size, count, batch int) (float64, error) {
	ans, err := b.probe.call(map[string]any{"op": "stream", "size": size, "count": count, "batch": batch})
	if err != nil {
		return 0, err
	}
	sec, _ := ans["seconds"].(float64)
	n, _ := ans["bytes"].(float64)
	if sec <= 0 {
		return 0, errors.New("stream: no time measured")
	}
	return n / sec / 1e6, nil
}

// runFootprint runs one session of kq method m on sc, streams mib MiB of
// 64 KiB display_data messages through its iopub, and records kq's
// memory during the stream, its teardown and what it left on the server.
func (b *bench) runFootprint(sc *scenario, m *method, mib int) (footprint, error) {
	fp := footprint{method: m.name}
	dir, err := os.MkdirTemp(b.dir, "fp-")
	if err != nil {
		return fp, fmt.Errorf("footprint: %w", err)
	}
	defer os.RemoveAll(dir)
	r := &run{b: b, sc: sc, m: m, dir: dir, marks: map[string]float64{}}
	defer r.endAll()
	r.t0 = time.Now()
	spec, err := m.start(r)
	if err != nil {
		return fp, err
	}
	if _, err := b.probe.call(map[string]any{"op": "connect", "cf": spec.cf, "path": sc.binDir}); err != nil {
		return fp, err
	}
	pid := r.kq.Process.Pid
	fp.base, _ = readMem(pid)
	fp.kqProcs, fp.sshConns = kqTree(pid, sc.hosts[0].Port)
	stop, peaks := make(chan struct{}), make(chan memPeak, 1)
	go sampleMem(pid, stop, peaks)
	size, count := 64<<10, mib*16
	fp.mbs, err = b.stream(size, count, streamBatch)
	close(stop)
	pk := <-peaks
	fp.peak, fp.samples, fp.streamBytes = pk.max, pk.n, size*count
	fp.hwm = peakRSS(pid)
	if err != nil {
		return fp, err
	}
	if _, err := b.probe.call(map[string]any{"op": "close", "shutdown": false}); err != nil {
		return fp, err
	}
	if err := r.kqStop(); err != nil {
		return fp, err
	}
	fp.teardown, fp.kqCPU = r.marks["teardown"], r.marks["kq cpu"]
	fp.leftAtExit, fp.left, fp.goneAfter, fp.leftWhat = leftover(sc, scaleLeftWait)
	return fp, nil
}

// kqTree counts the kq processes in pid's tree (pid and its descendants
// running the kq binary) and their established TCP connections to port.
func kqTree(pid, port int) (procs, conns int) {
	exe := exePath(pid)
	tcp := establishedTCP()
	for _, p := range append([]int{pid}, descendants(pid)...) {
		if exePath(p) == exe {
			procs++
			to, _ := tcpOf(p, port, tcp)
			conns += to
		}
	}
	return procs, conns
}

// memPeak is the highest of each memory figure over n readings.
type memPeak struct {
	max memSample
	n   int
}

// sampleMem reads pid's memory every memSampleEvery until stop, and sends
// the peaks of each figure.
func sampleMem(pid int, stop <-chan struct{}, out chan<- memPeak) {
	var p memPeak
	t := time.NewTicker(memSampleEvery)
	defer t.Stop()
	for {
		if m, ok := readMem(pid); ok {
			p.n++
			p.max.rss, p.max.anon, p.max.file = max(p.max.rss, m.rss), max(p.max.anon, m.anon), max(p.max.file, m.file)
		}
		select {
		case <-stop:
			out <- p
			return
		case <-t.C:
		}
	}
}

// footprints runs the footprint mode for every kq method, reps times, in
// runOrder.
func (b *bench) footprints(sc *scenario, mib, reps int) ([]footprint, error) {
	var kqs []*method
	for _, m := range b.methods {
		if m.kqBin != "" {
			kqs = append(kqs, m)
		}
	}
	var out []footprint
	for rep := range reps {
		for _, i := range runOrder(rep, len(kqs)) {
			m := kqs[i]
			fp, err := b.runFootprint(sc, m, mib)
			if err != nil {
				return out, fmt.Errorf("footprint %s, rep %d: %w", m.name, rep, err)
			}
			fmt.Fprintf(os.Stderr, "bench: footprint rep %d %-12s peak RSS %.1f MiB, %.0f MB/s, teardown %.3fs, left %d (%s), gone after %.2fs\n",
				rep, m.name, fp.hwm, fp.mbs, fp.teardown, fp.leftAtExit, fp.leftWhat, fp.goneAfter)
			out = append(out, fp)
		}
	}
	return out, nil
}

// printFootprints writes the footprint mode's results as Markdown, one
// row per kq method (medians over the repetitions).
func printFootprints(w io.Writer, mib int, fps []footprint) {
	fmt.Fprintf(w, "\n**footprint: %d MiB of iopub output (%d × 64 KiB display_data, cells of %d) through one kq session, loopback**\n\n", mib, mib*16, streamBatch)
	fmt.Fprintf(w, "| kq | runs | peak RSS (VmHWM) MiB | during the stream, peak anon / file MiB | before it: anon / file MiB | iopub MB/s | teardown s | kq CPU s | kq processes / TCP connections | server processes left at kq's exit / after %s |\n", scaleLeftWait)
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|\n")
	var order []string
	by := map[string][]footprint{}
	for _, f := range fps {
		if _, ok := by[f.method]; !ok {
			order = append(order, f.method)
		}
		by[f.method] = append(by[f.method], f)
	}
	for _, name := range order {
		fs := by[name]
		col := func(get func(footprint) float64) float64 {
			var xs []float64
			for _, f := range fs {
				xs = append(xs, get(f))
			}
			return median(xs)
		}
		fmt.Fprintf(w, "| %s | %d | %.1f (max %.1f) | %.1f / %.1f | %.1f / %.1f | %.0f | %.3f | %.2f | %.0f / %.0f | %.0f / %.0f |\n",
			strings.TrimPrefix(name, "kq "), len(fs), col(func(f footprint) float64 { return f.hwm }),
			maxFP(fs, func(f footprint) float64 { return f.hwm }),
			col(func(f footprint) float64 { return f.peak.anon }), col(func(f footprint) float64 { return f.peak.file }),
			col(func(f footprint) float64 { return f.base.anon }), col(func(f footprint) float64 { return f.base.file }),
			col(func(f footprint) float64 { return f.mbs }), col(func(f footprint) float64 { return f.teardown }),
			col(func(f footprint) float64 { return f.kqCPU }),
			col(func(f footprint) float64 { return float64(f.kqProcs) }), col(func(f footprint) float64 { return float64(f.sshConns) }),
			col(func(f footprint) float64 { return float64(f.leftAtExit) }), col(func(f footprint) float64 { return float64(f.left) }))
	}
}

func maxFP(fs []footprint, get func(footprint) float64) float64 {
	var xs []float64
	for _, f := range fs {
		xs = append(xs, get(f))
	}
	return maxOf(xs)
}
