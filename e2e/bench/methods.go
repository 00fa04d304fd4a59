package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// kernelCmd is the kernel every method starts.
const kernelCmd = sysPython + " -m ipykernel_launcher"

// Bounds of one method's steps.
const (
	stepTimeout = 60 * time.Second
	exitWait    = 20 * time.Second
)

// method is one way to get a kernel and a connection file for it.
type method struct {
	name string
	// start gets the kernel going and returns what the probe connects to.
	start func(r *run) (connectSpec, error)
	// ownsKernel: the probe shuts the kernel down at the end (kq does its
	// own teardown).
	ownsKernel bool
	// local: no SSH, so only in the loopback scenario.
	local bool
	// kqBin is the kq binary of a kq method.
	kqBin string
	// sshCPU: the method's first process is the one ssh that carries
	// everything, whose CPU time is recorded (to set beside kq's).
	sshCPU bool
}

// connectSpec is what the probe connects to: a connection file, through
// jupyter_client's tunnel to tunnel when set.
type connectSpec struct {
	cf, tunnel string
}

// run is one method's run in one scenario.
type run struct {
	b       *bench
	sc      *scenario
	m       *method
	dir     string
	t0      time.Time
	marks   map[string]float64
	procs   []*exec.Cmd
	waits   []chan struct{}
	front   net.Conn  // kq's frontend, held until the end
	kq      *exec.Cmd // the kq process
	kqDone  chan struct{}
	stderr  *bytes.Buffer
	kernels []int
	turns0  int64 // the proxy's round trips at the start
}

// mark records how long after the start a step ended.
func (r *run) mark(name string) {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	r.marks[name] = time.Since(r.t0).Seconds()
	if r.sc.proxy != nil {
		r.marks["rt "+name] = float64(r.sc.proxy.turns.Load() - r.turns0)
	}
}

// command is a command of this run in its own process group, ended at
// the end of the run if it is still there.
func (r *run) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = r.b.env
	return cmd
}

// startBG starts cmd and has the run's end kill its group.
func (r *run) startBG(cmd *exec.Cmd) (chan struct{}, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.procs = append(r.procs, cmd)
	r.waits = append(r.waits, done)
	return done, nil
}

// runFG runs cmd to its end within stepTimeout. Its output goes to a
// file, not a pipe: what ssh -f leaves behind (a ProxyJump's ssh -W)
// keeps its stderr open, and a pipe would be waited for.
func (r *run) runFG(cmd *exec.Cmd) error {
	f, err := os.CreateTemp(r.dir, "out-")
	if err != nil {
		return err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	done, err := r.startBG(cmd)
	if err != nil {
		return err
	}
	select {
	case <-done:
	case <-time.After(stepTimeout):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	if !cmd.ProcessState.Success() {
		out, _ := os.ReadFile(f.Name())
		return fmt.Errorf("%s: %s: %s", strings.Join(cmd.Args, " "), cmd.ProcessState, bytes.TrimSpace(out))
	}
	return nil
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freePorts picks n free ports of 127.0.0.1 (distinct).
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// portNames are the connection file's ports, in jupyter_client's order.
var portNames = []string{"shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"}

// writeConnFile writes info (a connection file's fields) with the given
// local ports to path.
func writeConnFile(path string, info map[string]any, ports []int) error {
	out := map[string]any{}
	for k, v := range info {
		out[k] = v
	}
	out["ip"] = "127.0.0.1"
	for i, n := range portNames {
		out[n] = ports[i]
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// floorStart is the local kernel with no SSH: the connection file is
// written first (as a kernel manager does) and the client connects while
// the kernel starts.
func floorStart(r *run) (connectSpec, error) {
	ports, err := freePorts(5)
	if err != nil {
		return connectSpec{}, err
	}
	cf := filepath.Join(r.dir, "kernel-floor.json")
	info := map[string]any{"transport": "tcp", "signature_scheme": "hmac-sha256", "key": randomID() + randomID(), "kernel_name": ""}
	if err := writeConnFile(cf, info, ports); err != nil {
		return connectSpec{}, err
	}
	cmd := r.command(sysPython, "-m", "ipykernel_launcher", "-f", cf)
	if _, err := r.startBG(cmd); err != nil {
		return connectSpec{}, err
	}
	return connectSpec{cf: cf}, nil
}

// startRemoteKernel is the manual recipe's first two steps: ssh HOST
// kernel (python -u stands for the terminal a person would have, so its
// "--existing" line comes at once), then scp of its connection file once
// it says it is there. It returns the copied file's fields.
func startRemoteKernel(r *run) (map[string]any, error) {
	file := filepath.Join(r.sc.remoteRT, "kernel-"+randomID()+".json")
	cmd := r.command(sshdtest.SSHPath, "-F", r.sc.sshConfig, "server",
		"mkdir -p "+r.sc.remoteRT+" && exec "+sysPython+" -u -m ipykernel_launcher -f "+file)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if _, err := r.startBG(cmd); err != nil {
		return nil, err
	}
	if err := waitLine(out, "--existing", stepTimeout); err != nil {
		return nil, fmt.Errorf("ssh server kernel: %w", err)
	}
	r.mark("kernel")
	local := filepath.Join(r.dir, "remote.json")
	if err := r.runFG(r.command("/usr/bin/scp", "-q", "-F", r.sc.sshConfig, "server:"+file, local)); err != nil {
		return nil, err
	}
	r.mark("scp")
	var info map[string]any
	b, err := os.ReadFile(local)
	if err == nil {
		err = json.Unmarshal(b, &info)
	}
	return info, err
}

// waitLine reads r until a line contains s, at most d; the rest of r is
// drained in the background so the writer never blocks.
func waitLine(rd io.Reader, s string, d time.Duration) error {
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(rd)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), s) {
				ok = true
				found <- true
			}
		}
		if !ok {
			found <- false
		}
	}()
	select {
	case ok := <-found:
		if !ok {
			return fmt.Errorf("ended before %q", s)
		}
		return nil
	case <-time.After(d):
		return fmt.Errorf("no %q in %s", s, d)
	}
}

// manualStart is the manual recipe: start, scp, then one ssh -f -N -L
// per port, one after the other.
func manualStart(r *run) (connectSpec, error) {
	info, err := startRemoteKernel(r)
	if err != nil {
		return connectSpec{}, err
	}
	lports, err := freePorts(5)
	if err != nil {
		return connectSpec{}, err
	}
	for i, n := range portNames {
		rp := int(info[n].(float64))
		if err := r.runFG(r.command(sshdtest.SSHPath, "-F", r.sc.sshConfig, "-f", "-N", "-o", "ExitOnForwardFailure=yes",
			"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", lports[i], rp), "server")); err != nil {
			return connectSpec{}, err
		}
	}
	r.mark("tunnels")
	cf := filepath.Join(r.dir, "kernel-local.json")
	return connectSpec{cf: cf}, writeConnFile(cf, info, lports)
}

// jupyterStart is the manual start and scp, then jupyter_client's own
// tunnel (tunnel_to_kernel, as --ssh does) inside the warm probe.
func jupyterStart(r *run) (connectSpec, error) {
	info, err := startRemoteKernel(r)
	if err != nil {
		return connectSpec{}, err
	}
	cf := filepath.Join(r.dir, "remote-copy.json")
	b, _ := json.Marshal(info)
	return connectSpec{cf: cf, tunnel: "server"}, os.WriteFile(cf, b, 0o600)
}

// oneSSHStart is the best a careful person does by hand: ports chosen
// here, one ssh with five -L whose session starts the kernel on those
// ports and prints its connection file once it is complete.
func oneSSHStart(r *run) (connectSpec, error) {
	ports, err := freePorts(10) // 5 local, 5 remote (loopback: one machine)
	if err != nil {
		return connectSpec{}, err
	}
	file := filepath.Join(r.sc.remoteRT, "kernel-"+randomID()+".json")
	script := fmt.Sprintf("mkdir -p %s; %s -f %s --shell=%d --iopub=%d --stdin=%d --control=%d --hb=%d >/dev/null 2>&1 & "+
		"until grep -q '^}' %s 2>/dev/null; do sleep 0.02; done; cat %s; wait",
		r.sc.remoteRT, kernelCmd, file, ports[5], ports[6], ports[7], ports[8], ports[9], file, file)
	args := []string{"-F", r.sc.sshConfig, "-o", "ExitOnForwardFailure=yes"}
	for i := range 5 {
		args = append(args, "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", ports[i], ports[5+i]))
	}
	cmd := r.command(sshdtest.SSHPath, append(args, "server", script)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return connectSpec{}, err
	}
	if _, err := r.startBG(cmd); err != nil {
		return connectSpec{}, err
	}
	info, err := readJSON(out, stepTimeout)
	if err != nil {
		return connectSpec{}, fmt.Errorf("ssh -L x5: %w", err)
	}
	r.mark("kernel")
	cf := filepath.Join(r.dir, "kernel-local.json")
	return connectSpec{cf: cf}, writeConnFile(cf, info, ports[:5])
}

// readJSON decodes one JSON object from rd within d, then drains rd.
func readJSON(rd io.Reader, d time.Duration) (map[string]any, error) {
	type res struct {
		m   map[string]any
		err error
	}
	ch := make(chan res, 1)
	go func() {
		var m map[string]any
		err := json.NewDecoder(rd).Decode(&m)
		ch <- res{m, err}
		_, _ = io.Copy(io.Discard, rd)
	}()
	select {
	case x := <-ch:
		return x.m, x.err
	case <-time.After(d):
		return nil, fmt.Errorf("no connection file in %s", d)
	}
}

// kqSteps are kq's progress lines, by the step each one ends.
var kqSteps = []struct{ prefix, name string }{
	{"kq: connected to", "connected"},
	{"kq: kernel started", "kernel"},
	{"kq: kernel taken warm", "kernel"}, // a spare, taken or claimed
	{"kq: forwarded", "forwarded"},
	{"kq: ready", "ready"}, // "ready in", or a claim's "ready: the claim was answered"
}

// kqStart runs kq PROFILE with the notifying frontend and returns the
// connection file the frontend was given.
func kqStart(r *run) (connectSpec, error) {
	cmd := r.command(r.m.kqBin, "--config", r.b.kqConfig, r.sc.profile)
	cmd.Env = append(cmd.Env, "JUPYTER_RUNTIME_DIR="+filepath.Join(r.dir, "local-rt"))
	pr, pw := io.Pipe()
	r.stderr = &bytes.Buffer{}
	cmd.Stderr = pw
	done, err := r.startBG(cmd)
	if err != nil {
		return connectSpec{}, err
	}
	r.kq, r.kqDone = cmd, done
	go func() { <-done; pw.Close() }()
	go r.kqLines(pr)
	conn, path, err := r.b.acceptFrontend(stepTimeout, done)
	if err != nil {
		return connectSpec{}, fmt.Errorf("kq: %w\n%s", err, r.stderr)
	}
	r.front = conn
	r.mark("frontend")
	return connectSpec{cf: path}, nil
}

// kqLines marks kq's steps as their lines arrive.
func (r *run) kqLines(rd io.Reader) {
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		l := sc.Text()
		r.b.mu.Lock()
		r.stderr.WriteString(l + "\n")
		for _, s := range kqSteps {
			if strings.HasPrefix(l, s.prefix) {
				r.marks[s.name] = time.Since(r.t0).Seconds()
				if r.sc.proxy != nil {
					r.marks["rt "+s.name] = float64(r.sc.proxy.turns.Load() - r.turns0)
				}
			}
		}
		r.b.mu.Unlock()
	}
}

// kqStop lets kq's frontend exit and times kq's teardown.
func (r *run) kqStop() error {
	if r.front == nil {
		return nil
	}
	r.procIO()
	r.countTree()
	hwm := peakRSS(r.kq.Process.Pid)
	t := time.Now()
	r.front.Close()
	select {
	case <-r.kqDone:
	case <-time.After(exitWait):
		return errors.New("kq did not exit after its frontend")
	}
	r.marks["teardown"] = time.Since(t).Seconds()
	ps := r.kq.ProcessState
	r.marks["kq cpu"] = (ps.UserTime() + ps.SystemTime()).Seconds()
	// VmHWM before the frontend was let go: kq's own peak. wait4's
	// ru_maxrss would also count the largest child kq reaped, and so
	// show the frontend's when that was larger.
	r.marks["kq rss"] = hwm
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok && hwm == 0 {
		r.marks["kq rss"] = float64(ru.Maxrss) / 1024 // KiB to MiB
	}
	if !ps.Success() {
		return fmt.Errorf("kq: %s\n%s", r.kq.ProcessState, r.stderr)
	}
	return nil
}

// countTree records how many kq processes the session runs and how many
// TCP connections they hold to the first hop's sshd (the proxy's port
// through the hop): one and one, also through the login host, whose SSH
// connection to the server kq carries inside the first.
func (r *run) countTree() {
	port := r.sc.hosts[0].Port
	if r.sc.proxy != nil {
		port = r.sc.proxy.port()
	}
	procs, conns := kqTree(r.kq.Process.Pid, port)
	r.marks["kq procs"], r.marks["kq conns"] = float64(procs), float64(conns)
}

// procIO records kq's read and write system calls so far (syscr and
// syscw of /proc/PID/io): the copy paths' cost, free of timing noise.
func (r *run) procIO() {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", r.kq.Process.Pid))
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ": ")
		var n float64
		if _, err := fmt.Sscanf(v, "%g", &n); ok && err == nil && (k == "syscr" || k == "syscw") {
			r.marks["kq "+k] = n
		}
	}
}

// endAll ends what is left of the run: the processes of the scenario's
// sshds (every one belongs to this run, the only one; walked first, while
// they are still below sshd), its own process groups, the ssh -f tunnels
// that carry this scenario's config path, and any kernel that outlived
// its shutdown (every kernel the benchmark starts has the benchmark's
// directory on its command line).
func (r *run) endAll() {
	var below []int
	for _, top := range r.sc.sshds {
		below = append(below, descendants(top)...)
	}
	for i, cmd := range r.procs {
		select {
		case <-r.waits[i]:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-r.waits[i]
		}
	}
	for _, pid := range append(below, sshdtest.ProcessesMatching(r.sc.sshConfig)...) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range sshdtest.ProcessesMatching(r.b.dir) {
		if c := cmdline(pid); strings.Contains(c, "ipykernel_launcher") && !isSpare(c) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// isSpare says a kernel's command line is a warm spare's (its connection
// file has a .spare marker beside it): kq keeps it for the next warm run,
// and the benchmark's last clean-up ends it.
func isSpare(cmdline string) bool {
	f := strings.Fields(cmdline)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "-f" {
			_, err := os.Stat(strings.TrimSuffix(f[i+1], ".json") + ".spare")
			return err == nil
		}
	}
	return false
}

// cmdline is a process's command line, "" once it is gone.
func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

// descendants are the processes below pid, from /proc.
func descendants(pid int) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var p int
		if _, err := fmt.Sscanf(e.Name(), "%d", &p); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at ')'.
		i := bytes.LastIndexByte(b, ')')
		var state byte
		var pp int
		if i < 0 || func() error { _, err := fmt.Sscanf(string(b[i+1:]), " %c %d", &state, &pp); return err }() != nil {
			continue
		}
		parent[p] = pp
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// waitGone waits for pid to end, at most d.
func waitGone(pid int, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for ctx.Err() == nil && cmdline(pid) != "" {
		time.Sleep(20 * time.Millisecond)
	}
}
