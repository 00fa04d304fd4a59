package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// scaleSession is one of the scale mode's kq sessions, all started at
// once, each its own kq process with the notifying frontend.
type scaleSession struct {
	i      int
	dir    string // its JUPYTER_RUNTIME_DIR is under it
	cmd    *exec.Cmd
	done   chan struct{}
	exitAt time.Time
	t0     time.Time
	stderr lockedBuffer

	// Set under bench.mu once known.
	front    net.Conn
	first    float64 // seconds from kq's start to the first cell's reply
	err      string
	teardown float64

	local, remote     []int // forwarded ports, from kq's "forwarded" line
	kqProcs, others   int   // processes of the session: kq's, the rest (the frontend)
	sshConns, allConn int   // its established TCP connections: to sshd, all
	retries           int   // MaxStartups drops kq retried (its -v lines)
}

// lockedBuffer is a bytes.Buffer safe for a writer and readers at once.
// It also notes when kq's first step lines arrive.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	at map[string]time.Time
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, st := range kqSteps[:3] { // connected, kernel started or taken warm
		if _, ok := l.at[st.name]; !ok && bytes.Contains(p, []byte(st.prefix)) {
			if l.at == nil {
				l.at = map[string]time.Time{}
			}
			l.at[st.name] = time.Now()
		}
	}
	return l.b.Write(p)
}

// stepAt is when the line of step name ("connected", "kernel") was
// written, if it was.
func (l *lockedBuffer) stepAt(name string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.at[name]
	return t, ok
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// scaleReport is what the scale mode measured.
type scaleReport struct {
	n, ok                  int
	firsts                 []float64
	connected, kernel      []float64 // kq's "connected" and "kernel started" lines, s after its start
	teardowns              []float64
	retries, drops         int
	localPorts, remotePort int // distinct ports seen
	portsWant, collisions  int
	kqProcs, others        []float64 // per session
	sshConns, allConns     []float64
	serverProcs            int // processes of the sshd's sessions while all were up
	leftAtExit, left       int // those left when the last kq exited, and after leftWait
	goneAfter              float64
	leftWhat               string // what was left at the last kq's exit
	errors                 []string
	queued                 int     // connections waiting when the held sshd was let go
	held                   float64 // seconds it was held
}

// Bounds of the scale mode.
const (
	scaleLeftWait = 10 * time.Second
	scaleHoldMax  = 5 * time.Second
)

// waitQueued waits until n connections to port are established (in the
// stopped sshd's listen queue), at most d; it returns how many there were
// and how long it waited.
func waitQueued(port, n int, d time.Duration) (int, float64) {
	t := time.Now()
	for {
		q := 0
		for _, c := range establishedTCP() {
			if c.localPort == port {
				q++
			}
		}
		if q >= n || time.Since(t) > d {
			return q, time.Since(t).Seconds()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runScale starts n kq sessions on sc at once, runs one cell in each,
// records their footprint, ends them all at once and counts what is left
// on the server.
func (b *bench) runScale(sc *scenario, kqBin string, n int) (*scaleReport, error) {
	dir, err := os.MkdirTemp(b.dir, "scale-")
	if err != nil {
		return nil, fmt.Errorf("scale: %w", err)
	}
	defer os.RemoveAll(dir)
	ss := make([]*scaleSession, n)
	for i := range ss {
		ss[i] = &scaleSession{i: i, dir: filepath.Join(dir, fmt.Sprint(i)), done: make(chan struct{})}
	}
	defer b.endScale(sc, ss)
	srv := sc.hosts[0]
	drops0 := countLines(srv.Log, "past MaxStartups")
	deadline := time.Now().Add(60*time.Second + time.Duration(n)*2*time.Second)
	go b.acceptScale(ss, deadline)
	rep := &scaleReport{n: n}
	if b.o.scaleHold {
		_ = syscall.Kill(srv.PID, syscall.SIGSTOP)
		defer func() { _ = syscall.Kill(srv.PID, syscall.SIGCONT) }()
	}
	for _, s := range ss {
		if err := b.startScaleSession(sc, kqBin, s); err != nil {
			return nil, err
		}
	}
	if b.o.scaleHold {
		rep.queued, rep.held = waitQueued(srv.Port, n, scaleHoldMax)
		_ = syscall.Kill(srv.PID, syscall.SIGCONT)
	}
	b.collectCells(ss, deadline)
	b.scaleFootprint(sc, ss, rep)
	b.releaseScale(ss, rep)
	rep.leftAtExit, rep.left, rep.goneAfter, rep.leftWhat = leftover(sc, scaleLeftWait)
	rep.drops = countLines(srv.Log, "past MaxStartups") - drops0
	scalePorts(ss, rep)
	return rep, nil
}

// startScaleSession starts one kq session in its own process group.
func (b *bench) startScaleSession(sc *scenario, kqBin string, s *scaleSession) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("scale: %w", err)
	}
	s.cmd = exec.Command(kqBin, "-v", "--config", b.kqConfig, sc.profile)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.cmd.Env = append(b.env, "JUPYTER_RUNTIME_DIR="+filepath.Join(s.dir, "local-rt"))
	s.cmd.Stderr = &s.stderr
	s.t0 = time.Now()
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("scale: start kq %d: %w", s.i, err)
	}
	go func() {
		_ = s.cmd.Wait()
		b.mu.Lock()
		s.exitAt = time.Now()
		b.mu.Unlock()
		close(s.done)
	}()
	return nil
}

// acceptScale takes the sessions' frontends as they report their
// connection files, and has the probe run each one's first cell at once.
func (b *bench) acceptScale(ss []*scaleSession, deadline time.Time) {
	_ = b.notify.SetDeadline(deadline)
	defer func() { _ = b.notify.SetDeadline(time.Time{}) }()
	for range ss {
		c, err := b.notify.Accept()
		if err != nil {
			return
		}
		go b.scaleFrontend(ss, c, deadline)
	}
}

// scaleFrontend reads one frontend's connection file and starts its cell.
func (b *bench) scaleFrontend(ss []*scaleSession, c net.Conn, deadline time.Time) {
	_ = c.SetReadDeadline(deadline)
	line, err := bufio.NewReader(c).ReadString('\n')
	_ = c.SetReadDeadline(time.Time{})
	path := strings.TrimSpace(line)
	var s *scaleSession
	for _, x := range ss {
		if strings.HasPrefix(path, x.dir+string(filepath.Separator)) {
			s = x
		}
	}
	if err != nil || s == nil {
		c.Close()
		return
	}
	b.mu.Lock()
	s.front = c
	b.mu.Unlock()
	timeout := time.Until(deadline).Seconds()
	if _, err := b.probe.call(map[string]any{"op": "cell_start", "tag": s.i, "cf": path, "timeout": timeout}); err != nil {
		b.setErr(s, err.Error())
	}
}

func (b *bench) setErr(s *scaleSession, msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.err == "" && s.first == 0 {
		s.err = msg
	}
}

// collectCells gathers the first cells' replies until every session has
// one, failed or ended, or deadline.
func (b *bench) collectCells(ss []*scaleSession, deadline time.Time) {
	for time.Now().Before(deadline) {
		ans, err := b.probe.call(map[string]any{"op": "cells", "wait": 0.5})
		if err != nil {
			for _, s := range ss {
				b.setErr(s, err.Error())
			}
			return
		}
		raw, _ := ans["cells"].([]any)
		for _, r := range raw {
			b.noteCell(ss, r)
		}
		if b.scaleSettled(ss) {
			return
		}
	}
	for _, s := range ss {
		b.setErr(s, "no first cell before the deadline")
	}
}

// noteCell records one of the probe's first-cell answers.
func (b *bench) noteCell(ss []*scaleSession, r any) {
	m, _ := r.(map[string]any)
	tag, ok := m["tag"].(float64)
	if !ok || int(tag) < 0 || int(tag) >= len(ss) {
		return
	}
	s := ss[int(tag)]
	if e, ok := m["error"].(string); ok {
		b.setErr(s, "first cell: "+e)
		return
	}
	first, _ := m["first"].(float64)
	b.mu.Lock()
	s.first = first - float64(s.t0.UnixNano())/1e9
	b.mu.Unlock()
}

// scaleSettled says every session has its first cell or will never get
// one (it failed, or kq ended).
func (b *bench) scaleSettled(ss []*scaleSession) bool {
	all := true
	for _, s := range ss {
		select {
		case <-s.done:
			b.setErr(s, "kq exited before its first cell: "+lastLines(s.stderr.String(), 3))
		default:
		}
		b.mu.Lock()
		if s.first == 0 && s.err == "" {
			all = false
		}
		b.mu.Unlock()
	}
	return all
}

// lastLines is the last n lines of s, joined by " | ".
func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], " | ")
}

// countLines counts the occurrences of s in a file (one a line in sshd's log).
func countLines(path, s string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), s)
}
