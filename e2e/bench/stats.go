package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
)

// quantile is the q-quantile of xs (linear interpolation); NaN if empty.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

func median(xs []float64) float64 { return quantile(xs, 0.5) }

// spread is the relative half-range (max-min)/2/median, in percent: how
// far apart the repetitions were.
func spread(xs []float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	return (slices.Max(xs) - slices.Min(xs)) / 2 / median(xs) * 100
}

// summary is one method in one scenario, over its repetitions.
type summary struct {
	method, scenario        string
	n                       int
	first                   []float64 // per repetition
	reply, idle             []float64 // pooled
	busyReply, busyIdle     []float64
	big, small              []float64 // per repetition
	turns                   []float64
	marks                   map[string][]float64
	firstMed, bigMed, smMed float64
}

func summarize(results []sample, method, scenario string) *summary {
	s := &summary{method: method, scenario: scenario, marks: map[string][]float64{}}
	for _, r := range results {
		if r.Method != method || r.Scenario != scenario {
			continue
		}
		s.n++
		s.first = append(s.first, r.First)
		s.reply = append(s.reply, r.Reply...)
		s.idle = append(s.idle, r.Idle...)
		s.busyReply = append(s.busyReply, r.BusyReply...)
		s.busyIdle = append(s.busyIdle, r.BusyIdle...)
		s.big = append(s.big, r.BigMBs)
		s.small = append(s.small, r.SmallMBs)
		s.turns = append(s.turns, float64(r.Turns))
		for k, v := range r.Marks {
			s.marks[k] = append(s.marks[k], v)
		}
	}
	if s.n == 0 {
		return nil
	}
	s.firstMed, s.bigMed, s.smMed = median(s.first), median(s.big), median(s.small)
	return s
}

// table is the results as a Markdown table per scenario, with ratios
// against kq measured in the same run.
func table(results []sample, methods []string, scenarios []string) string {
	var b strings.Builder
	for _, sc := range scenarios {
		var sums []*summary
		var kq *summary
		for _, m := range methods {
			if s := summarize(results, m, sc); s != nil {
				sums = append(sums, s)
				if m == "kq" {
					kq = s
				}
			}
		}
		if len(sums) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n**%s**\n\n", scenarioTitle(sc))
		b.WriteString("| method | first cell (s) ± spread | × kq | execute RTT p50 / p90 (ms) | until idle p90 | busy: RTT p50 / p90, until idle p90 | iopub MB/s 1 large / 64 KiB | × kq (large / 64 KiB) | round trips to first cell |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
		for _, s := range sums {
			b.WriteString(row(s, kq))
		}
	}
	return b.String()
}

func scenarioTitle(sc string) string {
	if sc == "hop" {
		return "through a login host (ProxyJump), with added round-trip time on the client-login link"
	}
	return "loopback (sshd on 127.0.0.1)"
}

func row(s, kq *summary) string {
	ratio, tput := "—", "—"
	if kq != nil {
		ratio = fmt.Sprintf("%.2f", s.firstMed/kq.firstMed)
		tput = fmt.Sprintf("%.2f / %.2f", kq.bigMed/s.bigMed, kq.smMed/s.smMed)
	}
	turns := "—"
	if median(s.turns) > 0 {
		turns = fmt.Sprintf("%.0f", median(s.turns))
	}
	name := s.method
	if strings.HasPrefix(name, "kq") {
		name = "**" + name + "**"
	}
	return fmt.Sprintf("| %s | %.3f ± %.0f%% | %s | %.2f / %.2f | %.2f | %.2f / %.2f, %.2f | %.0f / %.0f | %s | %s |\n",
		name, s.firstMed, spread(s.first), ratio,
		quantile(s.reply, 0.5), quantile(s.reply, 0.9), quantile(s.idle, 0.9),
		quantile(s.busyReply, 0.5), quantile(s.busyReply, 0.9), quantile(s.busyIdle, 0.9),
		s.bigMed, s.smMed, tput, turns)
}

// stepNames are the marks of a method's steps, in the order they end.
var stepNames = []string{"connected", "kernel", "scp", "tunnels", "forwarded", "ready", "frontend"}

// stepsByTime are the steps that have marks, in stepNames' order, except
// that a kq whose ready check runs beside the frontend (its "ready" after
// "frontend") has them the other way round.
func stepsByTime(marks map[string][]float64) []string {
	var out []string
	for _, k := range stepNames {
		if _, ok := marks[k]; ok {
			out = append(out, k)
		}
	}
	r, f := slices.Index(out, "ready"), slices.Index(out, "frontend")
	if r >= 0 && f == r+1 && median(marks["ready"]) > median(marks["frontend"]) {
		out[r], out[f] = out[f], out[r]
	}
	return out
}

// breakdown is when each step of each method ended (medians, seconds
// after the start), then the first cell.
func breakdown(results []sample, methods []string, scenarios []string) string {
	var b strings.Builder
	b.WriteString("| scenario | method | step ended at, median s (+delta from the step before, round trips on the slow link so far) | first cell | kq teardown s | kq CPU s per run (ssh's for ssh -L x5) | kq peak RSS MiB | kq read / write syscalls per run | kq processes / TCP connections to the first hop |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, sc := range scenarios {
		for _, m := range methods {
			s := summarize(results, m, sc)
			if s == nil {
				continue
			}
			var steps []string
			prev := 0.0
			for _, k := range stepsByTime(s.marks) {
				med := median(s.marks[k])
				step := fmt.Sprintf("%s %.3f (+%.3f", k, med, med-prev)
				if rt, ok := s.marks["rt "+k]; ok {
					step += fmt.Sprintf(", %.0f RT", median(rt))
				}
				steps = append(steps, step+")")
				prev = med
			}
			kq := []string{"—", "—", "—", "—", "—"}
			for i, k := range []string{"teardown", "kq cpu", "kq rss"} {
				if v, ok := s.marks[k]; ok {
					kq[i] = fmt.Sprintf("%.3f", median(v))
				}
			}
			if v, ok := s.marks["ssh cpu"]; ok {
				kq[1] = fmt.Sprintf("(ssh: %.3f)", median(v))
			}
			if r, ok := s.marks["kq syscr"]; ok {
				kq[3] = fmt.Sprintf("%.0f / %.0f", median(r), median(s.marks["kq syscw"]))
			}
			if p, ok := s.marks["kq procs"]; ok {
				kq[4] = fmt.Sprintf("%.0f / %.0f", maxOf(p), maxOf(s.marks["kq conns"]))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %.3f (+%.3f) | %s |\n", sc, m, strings.Join(steps, ", "), s.firstMed, s.firstMed-prev,
				strings.Join(kq, " | "))
		}
	}
	return b.String()
}

// report prints the tables.
func report(w io.Writer, o options, results []sample, methods []string) {
	scs := strings.Split(o.scenarios, ",")
	fmt.Fprintf(w, "\n%d repetitions (+%d warm-up), %d RTTs per run, one %d-byte message, %d × 64 KiB; hop adds %s RTT\n",
		o.reps, o.warmup, o.rtts, o.bigSize, o.smallCount, o.hopRTT)
	fmt.Fprint(w, table(results, methods, scs))
	fmt.Fprint(w, "\n"+breakdown(results, methods, scs))
}

// describeMachine says what this machine is, for the doc.
func describeMachine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, model, _ = strings.Cut(l, ":")
				model = strings.TrimSpace(model)
				break
			}
		}
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	sshv, _ := exec.Command("/usr/bin/ssh", "-V").CombinedOutput()
	aes := "no AES-NI"
	if b, _ := os.ReadFile("/proc/cpuinfo"); strings.Contains(string(b), " aes ") {
		aes = "AES-NI"
	}
	return fmt.Sprintf("%d CPUs (%s, %s), Linux %s, %s, %s", runtime.NumCPU(), model, aes,
		strings.TrimSpace(string(kernel)), strings.TrimSpace(string(sshv)), runtime.Version())
}
