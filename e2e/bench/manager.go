package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

//go:embed manager.py
var managerSource []byte

// managerTimeout bounds one kernel's life in the manager mode.
const managerTimeout = 3 * time.Minute

// managed is what one kernel's life under jupyter_client's KernelManager
// took (manager.py), in seconds.
type managed struct {
	method, scenario string
	First            float64   `json:"first"`
	Interrupt        float64   `json:"interrupt"`
	Restart          []float64 `json:"restart"`
	Shutdown         float64   `json:"shutdown"`
}

// managerKernels writes a kernelspec per method and scenario under dir
// (the floor: the local kernel; a kq method: `kq kernel` with the
// scenario's profile) and returns their names by method and scenario.
func (b *bench) managerKernels(dir string) map[[2]string]string {
	names := map[[2]string]string{}
	add := func(m, sc string, argv []string) {
		name := fmt.Sprintf("k%d", len(names))
		kd := filepath.Join(dir, "kernels", name)
		if err := os.MkdirAll(kd, 0o755); err != nil {
			b.t.Fatalf("manager: %v", err)
		}
		data, _ := json.Marshal(map[string]any{"argv": argv, "display_name": m + " " + sc, "language": "python"})
		mustWrite(filepath.Join(kd, "kernel.json"), string(data))
		names[[2]string{m, sc}] = name
	}
	for _, m := range b.managerMethods() {
		for _, sc := range b.scenarios {
			switch {
			case m.local && sc.name == "loopback":
				add(m.name, sc.name, append(strings.Fields(kernelCmd), "-f", "{connection_file}"))
			case m.kqBin != "":
				add(m.name, sc.name, []string{m.kqBin, "--config", b.kqConfig, "kernel", sc.profile, "-f", "{connection_file}"})
			}
		}
	}
	return names
}

// managerMethods are the methods the manager mode runs: the floor and
// every kq.
func (b *bench) managerMethods() []*method {
	var out []*method
	for _, m := range b.methods {
		if m.local || m.kqBin != "" {
			out = append(out, m)
		}
	}
	return out
}

// managerRuns runs the manager mode: every method's kernel in every
// scenario, reps times (and the warm-up first), in runOrder.
func (b *bench) managerRuns(reps int) ([]managed, error) {
	dir := filepath.Join(b.dir, "manager")
	names := b.managerKernels(dir)
	script := filepath.Join(dir, "manager.py")
	mustWrite(script, string(managerSource))
	ms := b.managerMethods()
	var out []managed
	for rep := -b.o.warmup; rep < reps; rep++ {
		for _, sc := range b.scenarios {
			for _, i := range runOrder(rep+b.o.warmup, len(ms)) {
				name, ok := names[[2]string{ms[i].name, sc.name}]
				if !ok {
					continue
				}
				got, err := b.manageOne(sc, ms[i], script, dir, name)
				if err != nil {
					return out, fmt.Errorf("manager %s %s, rep %d: %w", ms[i].name, sc.name, rep, err)
				}
				fmt.Fprintf(os.Stderr, "bench: manager rep %d %-8s %-10s first %.3fs, interrupt %.3fs, restart %.3f/%.3fs, shutdown %.3fs\n",
					rep, sc.name, ms[i].name, got.First, got.Interrupt, got.Restart[0], got.Restart[1], got.Shutdown)
				if rep >= 0 {
					out = append(out, got)
				}
			}
		}
	}
	return out, nil
}

// manageOne runs manager.py on one kernelspec and ends whatever of the
// run is left (the run's sshd children, kernels).
func (b *bench) manageOne(sc *scenario, m *method, script, dir, name string) (managed, error) {
	r := &run{b: b, sc: sc, m: m}
	defer r.endAll()
	ctx, cancel := context.WithTimeout(context.Background(), managerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sysPython, script, name)
	cmd.Env = append(b.env, "JUPYTER_PATH="+dir, "PATH="+sc.binDir+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stderr strings.Builder
	cmd.Stderr = &stderr
	outp, err := cmd.Output()
	got := managed{method: m.name, scenario: sc.name}
	if err != nil {
		return got, fmt.Errorf("%w\n%s", err, lastLines(stderr.String(), 20))
	}
	if err := json.Unmarshal(outp, &got); err != nil || len(got.Restart) != 2 {
		return got, fmt.Errorf("manager.py printed %q (%v)\n%s", outp, err, lastLines(stderr.String(), 20))
	}
	return got, nil
}

// printManaged writes the manager mode's table: medians ± spread per
// method and scenario, and each time over the floor's (loopback).
func printManaged(w io.Writer, runs []managed) {
	type key struct{ sc, m string }
	var order []key
	by := map[key][]managed{}
	for _, r := range runs {
		k := key{r.scenario, r.method}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], r)
	}
	col := func(rs []managed, get func(managed) []float64) []float64 {
		var xs []float64
		for _, r := range rs {
			xs = append(xs, get(r)...)
		}
		return xs
	}
	gets := []func(managed) []float64{
		func(r managed) []float64 { return []float64{r.First} },
		func(r managed) []float64 { return []float64{r.Interrupt} },
		func(r managed) []float64 { return r.Restart },
		func(r managed) []float64 { return []float64{r.Shutdown} },
	}
	floor := by[key{"loopback", "floor"}]
	fmt.Fprintf(w, "\n**a kernel under jupyter_client's KernelManager (as JupyterLab, Notebook and VS Code drive one): median s ± spread (× the local floor)**\n\n")
	fmt.Fprintf(w, "| scenario | kernel | runs | start to first cell | interrupt to its reply | restart to a cell after it | shutdown |\n|---|---|---|---|---|---|---|\n")
	for _, k := range order {
		rs := by[k]
		fmt.Fprintf(w, "| %s | %s | %d |", k.sc, k.m, len(rs))
		for _, get := range gets {
			xs := col(rs, get)
			fmt.Fprintf(w, " %.3f ± %.0f%%", median(xs), spread(xs))
			if len(floor) > 0 && k.m != "floor" {
				fmt.Fprintf(w, " (%.2f×)", median(xs)/median(col(floor, get)))
			}
			fmt.Fprint(w, " |")
		}
		fmt.Fprintln(w)
	}
}
