package main

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

//go:embed probe.py
var probeSource []byte

// sysPython is Debian's Python, which has Jupyter.
const sysPython = "/usr/bin/python3"

// probeTimeout bounds one probe command (its own waits are shorter).
const probeTimeout = 150 * time.Second

// probe is the warm measuring client (probe.py).
type probe struct {
	mu    sync.Mutex // one command at a time
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan []byte
	done  chan struct{}
}

// errProbe is an answer of the probe that reports a failure;
// errProbeStuck one that never came (the probe's state is then unknown,
// and the benchmark stops).
var (
	errProbe      = errors.New("probe")
	errProbeStuck = errors.New("probe stuck")
)

func startProbe(t *runner, dir string) *probe {
	path := filepath.Join(dir, "probe.py")
	mustWrite(path, string(probeSource))
	cmd := exec.Command(sysPython, path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("probe: %v", err)
	}
	p := &probe{cmd: cmd, in: in, lines: make(chan []byte, 4), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(outp)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			p.lines <- append([]byte(nil), sc.Bytes()...)
		}
		close(p.lines)
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		in.Close()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	if _, err := p.read(); err != nil {
		t.Fatalf("probe did not start: %v", err)
	}
	return p
}

func (p *probe) read() (map[string]any, error) {
	select {
	case l, ok := <-p.lines:
		if !ok {
			return nil, fmt.Errorf("%w: exited", errProbeStuck)
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			return nil, fmt.Errorf("%w: %q: %w", errProbe, l, err)
		}
		if e, ok := m["error"]; ok {
			return nil, fmt.Errorf("%w: %v", errProbe, e)
		}
		return m, nil
	case <-time.After(probeTimeout):
		return nil, fmt.Errorf("%w: no answer in %s", errProbeStuck, probeTimeout)
	}
}

// call sends one command and returns its answer; calls from several
// goroutines take turns.
func (p *probe) call(cmd map[string]any) (map[string]any, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, _ := json.Marshal(cmd)
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("%w: %w", errProbe, err)
	}
	return p.read()
}

// floats reads a list of numbers from an answer.
func floats(m map[string]any, key string) []float64 {
	raw, _ := m[key].([]any)
	out := make([]float64, 0, len(raw))
	for _, v := range raw {
		if f, ok := v.(float64); ok {
			out = append(out, f)
		}
	}
	return out
}
