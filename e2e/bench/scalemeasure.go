package main

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// scaleFootprint counts, while every session is up, each one's processes
// (kq's own, and the rest: its frontend) and its established TCP
// connections, and the processes of the sshd's sessions on the server.
func (b *bench) scaleFootprint(sc *scenario, ss []*scaleSession, rep *scaleReport) {
	conns := establishedTCP()
	srv := sc.hosts[0]
	for _, s := range ss {
		select {
		case <-s.done:
			continue
		default:
		}
		pid := s.cmd.Process.Pid
		exe := exePath(pid)
		for _, p := range append([]int{pid}, descendants(pid)...) {
			if exePath(p) == exe {
				s.kqProcs++
				to, all := tcpOf(p, srv.Port, conns)
				s.sshConns += to
				s.allConn += all
			} else {
				s.others++
			}
		}
		rep.kqProcs = append(rep.kqProcs, float64(s.kqProcs))
		rep.others = append(rep.others, float64(s.others))
		rep.sshConns = append(rep.sshConns, float64(s.sshConns))
		rep.allConns = append(rep.allConns, float64(s.allConn))
	}
	rep.serverProcs = len(sshSessionProcs(srv.PID, srv.Port))
}

// releaseScale lets every frontend exit at once and times each kq's
// teardown (frontend released to kq's exit).
func (b *bench) releaseScale(ss []*scaleSession, rep *scaleReport) {
	t := time.Now()
	b.mu.Lock()
	for _, s := range ss {
		if s.front != nil {
			s.front.Close()
		}
	}
	b.mu.Unlock()
	for _, s := range ss {
		select {
		case <-s.done:
		case <-time.After(time.Until(t.Add(exitWait))):
			b.setErr(s, "kq did not exit after its frontend")
			continue
		}
		b.mu.Lock()
		s.teardown = s.exitAt.Sub(t).Seconds()
		ok := s.first > 0 && s.err == "" && s.cmd.ProcessState.Success()
		if s.first > 0 && s.err == "" && !ok {
			s.err = "kq: " + s.cmd.ProcessState.String() + ": " + lastLines(s.stderr.String(), 3)
		}
		b.mu.Unlock()
		if ok {
			rep.ok++
			rep.firsts = append(rep.firsts, s.first)
			rep.teardowns = append(rep.teardowns, s.teardown)
			if at, ok := s.stderr.stepAt("connected"); ok {
				rep.connected = append(rep.connected, at.Sub(s.t0).Seconds())
			}
			if at, ok := s.stderr.stepAt("kernel"); ok {
				rep.kernel = append(rep.kernel, at.Sub(s.t0).Seconds())
			}
		}
	}
}

// leftover counts the processes of the sshd's sessions on the server (its
// per-connection children, the kernels, remote.sh and its helpers) once no
// kq runs any more, then waits for them to end, at most d. what names
// those left at kq's exit by program and count.
func leftover(sc *scenario, d time.Duration) (atExit, after int, goneAfter float64, what string) {
	srv := sc.hosts[0]
	t := time.Now()
	procs := sshSessionProcs(srv.PID, srv.Port)
	atExit, after = len(procs), len(procs)
	what = commCounts(procs)
	for after > 0 && time.Since(t) < d {
		time.Sleep(50 * time.Millisecond)
		after = len(sshSessionProcs(srv.PID, srv.Port))
	}
	return atExit, after, time.Since(t).Seconds(), what
}

// commCounts is "NAME×COUNT, ..." of the processes' names (comm).
func commCounts(pids []int) string {
	n := map[string]int{}
	for _, p := range pids {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
		n[strings.TrimSpace(string(b))]++
	}
	var out []string
	for k, v := range n {
		out = append(out, fmt.Sprintf("%s×%d", k, v))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// forwardedRE is one port of kq's "forwarded" line: "shell 41234→127.0.0.1:45678".
var forwardedRE = regexp.MustCompile(`(\w+) (\d+)→[^,)]*:(\d+)`)

// scalePorts reads every session's forwarded ports and MaxStartups
// retries from its -v output, and counts ports that two sessions share.
func scalePorts(ss []*scaleSession, rep *scaleReport) {
	local, remote := map[int]int{}, map[int]int{}
	for _, s := range ss {
		out := s.stderr.String()
		s.retries = strings.Count(out, "trying again")
		rep.retries += s.retries
		for _, l := range strings.Split(out, "\n") {
			if !strings.HasPrefix(l, "kq: forwarded") {
				continue
			}
			for _, m := range forwardedRE.FindAllStringSubmatch(l, -1) {
				lp, _ := strconv.Atoi(m[2])
				rp, _ := strconv.Atoi(m[3])
				s.local, s.remote = append(s.local, lp), append(s.remote, rp)
				local[lp]++
				remote[rp]++
			}
		}
		if len(s.local) > 0 {
			rep.portsWant += 5
		}
	}
	rep.localPorts, rep.remotePort = len(local), len(remote)
	for p, n := range local {
		rep.collisions += n - 1
		rep.collisions += remote[p] // loopback: one machine, one port space
	}
	for _, n := range remote {
		rep.collisions += n - 1
	}
	for _, s := range ss {
		if s.err != "" {
			rep.errors = append(rep.errors, fmt.Sprintf("session %d: %s", s.i, s.err))
		}
	}
}

// endScale ends whatever of the scale mode is still running: kq's process
// groups, then the server's session processes.
func (b *bench) endScale(sc *scenario, ss []*scaleSession) {
	for _, s := range ss {
		if s.cmd == nil || s.cmd.Process == nil {
			continue
		}
		select {
		case <-s.done:
		default:
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
	}
	srv := sc.hosts[0]
	for _, p := range sshSessionProcs(srv.PID, srv.Port) {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

// printScale writes the scale mode's results as Markdown.
func printScale(w io.Writer, rep *scaleReport) {
	fmt.Fprintf(w, "\n**scale: %d kq sessions started at once on one sshd (MaxStartups 10:30:100, OpenSSH's default)**\n\n", rep.n)
	fmt.Fprintf(w, "| sessions | succeeded | SSH connected p50 / p95 / max (s) | kernel started p50 / p95 | first cell p50 / p95 / max (s) | teardown p50 / max (s) | MaxStartups drops (sshd log) / retries (kq -v) | distinct local / remote ports (want) | port collisions | kq processes per session | TCP connections to sshd per session (all established) | server processes: all up / left at last kq exit / after %s |\n", scaleLeftWait)
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| %d | %d | %.2f / %.2f / %.2f | %.2f / %.2f | %.2f / %.2f / %.2f | %.2f / %.2f | %d / %d | %d / %d (%d) | %d | %s | %s (%s) | %d / %d / %d |\n",
		rep.n, rep.ok, quantile(rep.connected, 0.5), quantile(rep.connected, 0.95), maxOf(rep.connected),
		quantile(rep.kernel, 0.5), quantile(rep.kernel, 0.95), quantile(rep.firsts, 0.5), quantile(rep.firsts, 0.95), maxOf(rep.firsts),
		quantile(rep.teardowns, 0.5), maxOf(rep.teardowns), rep.drops, rep.retries,
		rep.localPorts, rep.remotePort, rep.portsWant, rep.collisions,
		minMax(rep.kqProcs), minMax(rep.sshConns), minMax(rep.allConns), rep.serverProcs, rep.leftAtExit, rep.left)
	if rep.leftWhat != "" {
		fmt.Fprintf(w, "\nLeft on the server when the last kq exited: %s; all gone %.2f s later.\n", rep.leftWhat, rep.goneAfter)
	}
	if rep.held > 0 {
		fmt.Fprintf(w, "\nsshd was held (SIGSTOP) for %.2f s while the sessions started, until %d of their connections waited in its listen queue; then all were let in at once.\n", rep.held, rep.queued)
	}
	for _, e := range rep.errors {
		fmt.Fprintf(w, "\n- %s", e)
	}
	fmt.Fprintln(w)
}

func maxOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return slices.Max(xs)
}

// minMax is "N" when every value is N, else "MIN–MAX".
func minMax(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	lo, hi := slices.Min(xs), slices.Max(xs)
	if lo == hi {
		return fmt.Sprintf("%.0f", lo)
	}
	return fmt.Sprintf("%.0f–%.0f", lo, hi)
}
