// Package slurmtest starts a real Slurm cluster in network namespaces for
// kq's end-to-end tests: Debian's slurmctld and a real OpenSSH sshd on a
// "login" namespace the client (the root namespace) reaches, and slurmd on
// a "node" namespace that only the login namespace reaches, so kq must
// forward through its SSH connection to the login node to reach a kernel on
// the node.
//
// Everything of one cluster is private: namespaces kqsl<id>l and
// kqsl<id>n, a 10.x.0.0/16 block claimed with an unreachable route (so
// clusters of concurrent test runs never collide), munged with its own key
// and socket, slurm.conf with its own state and spool dirs, node names and
// job ids of its own (slurmd's cgroups are named after the node). Clean-up
// cancels the cluster's jobs, stops the daemons it started by PID, ends
// whatever is still running inside its namespaces and removes the
// namespaces, the route, the cgroups and the files, also when a test fails.
//
// The namespaces share the root file system, as a login and a compute node
// share a home directory; slurmd runs under nsenter (not ip netns exec,
// which remounts /sys and breaks the cgroup plugin) with a UTS namespace of
// its own, so a job's hostname is the node's name.
package slurmtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// Paths of the programs a cluster runs; absolute, as PATH here is pyenv's.
const (
	IPPath      = "/usr/sbin/ip"
	NsenterPath = "/usr/bin/nsenter"
	UnsharePath = "/usr/bin/unshare"
	MungedPath  = "/usr/sbin/munged"
	MungekeyBin = "/usr/sbin/mungekey"
	SlurmctldP  = "/usr/sbin/slurmctld"
	SlurmdPath  = "/usr/sbin/slurmd"
)

// Timeouts: finite, so that a broken daemon fails a test instead of hanging.
const (
	readyTimeout = 30 * time.Second // the node registers and is idle
	cmdTimeout   = 20 * time.Second // one Slurm client command
	stopTimeout  = 5 * time.Second  // per stage: after SIGTERM, after SIGKILL
	drainTimeout = 20 * time.Second // cancelled jobs leave the node
	poll         = 100 * time.Millisecond
)

// SSHPort is the port the login node's sshd listens on (in its namespace).
const SSHPort = 2222

// Options tune one cluster.
type Options struct {
	// CPUs is the node's CPU count (default 2): a job asking for all of
	// them blocks every other job, which tests of pending jobs use.
	CPUs int
	// ExtraConf holds extra slurm.conf lines, written before the node and
	// partition lines.
	ExtraConf []string
	// LoginPath, when set, is PATH in every session of the login sshd
	// (its SetEnv), for tests of what kq finds on the login node's PATH: a
	// wrapper put before a Slurm command, or no Slurm commands at all.
	// The user's shell start-up files may still add to its front.
	LoginPath string
}

// Cluster is one running test cluster.
type Cluster struct {
	// Dir holds every file of the cluster (munge key and socket, slurm.conf,
	// state, spool, logs); removed at the end.
	Dir string
	// Conf is the path of slurm.conf; the login sshd sets SLURM_CONF to it
	// for every session.
	Conf string
	// LoginNS and NodeNS are the namespaces' names.
	LoginNS, NodeNS string
	// LoginAddr is the login node's address as the client sees it; SSH
	// listens there on SSHPort.
	LoginAddr string
	// CtldAddr is the login node's address on the node's network.
	CtldAddr string
	// NodeAddr is the node's address; the client has no route to it.
	NodeAddr string
	// NodeName is the node's Slurm name and its hostname inside jobs.
	NodeName string
	// Partition is the cluster's one partition.
	Partition string
	// SSH is the login node's sshd (client key, known_hosts, ssh_config).
	SSH *sshdtest.Server

	t       testing.TB
	id      string
	base    int
	daemons []*daemon
}

// daemon is one process the cluster started and will stop.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start builds and starts a cluster for t, stopped and removed when t
// ends. It fails the test (never skips) when any part cannot start.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	requirePrograms(t)
	if opts.CPUs == 0 {
		opts.CPUs = 2
	}
	c := &Cluster{t: t, id: randomID()}
	c.NodeName, c.Partition = "kqsl"+c.id+"n", "kqpart"
	c.makeDir(t)
	c.makeNetwork(t)
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs()
		}
	})
	t.Cleanup(c.stop)
	c.startMunge(t)
	c.writeConf(t, opts)
	c.startCtld(t)
	c.startSlurmd(t)
	setEnv := "SetEnv SLURM_CONF=" + c.Conf // one line: sshd takes the first SetEnv only
	if opts.LoginPath != "" {
		setEnv += " PATH=" + opts.LoginPath
	}
	c.SSH = sshdtest.Start(t, sshdtest.Options{Netns: c.LoginNS, ListenAddr: c.LoginAddr, Port: SSHPort,
		ExtraConfig: []string{setEnv}})
	c.waitIdle(t)
	return c
}

func requirePrograms(t testing.TB) {
	t.Helper()
	for _, p := range []string{IPPath, NsenterPath, UnsharePath, MungedPath, MungekeyBin, SlurmctldP, SlurmdPath} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("slurmtest: %s is required (apt-get install slurmctld slurmd slurm-client munge): %v", p, err)
		}
	}
}

func randomID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// makeDir makes the cluster's directory; short, as munge's socket path must
// fit a unix socket name.
func (c *Cluster) makeDir(t testing.TB) {
	t.Helper()
	dir, err := os.MkdirTemp("", "kqsl-")
	if err != nil {
		t.Fatalf("slurmtest: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("slurmtest: remove %s: %v", dir, err)
		}
	})
	// munged's socket dir must be 0755 and everything leading to it must not
	// be writable by others.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("slurmtest: %v", err)
	}
	for _, d := range []string{"munge", "state", "spool", "log"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("slurmtest: %v", err)
		}
	}
	c.Dir = dir
	c.Conf = filepath.Join(dir, "slurm.conf")
}

// ip runs ip(8) and fails the test on error.
func ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(IPPath, args...).CombinedOutput(); err != nil {
		t.Fatalf("slurmtest: ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// makeNetwork claims a 10.base.0.0/16 block (its unreachable route keeps
// every packet for it off the default route, and a second claim fails),
// then makes root <-> login (10.base.1.0/24) and login <-> node
// (10.base.2.0/24). The root namespace has no route to the node.
func (c *Cluster) makeNetwork(t testing.TB) {
	t.Helper()
	var block string
	for try := 0; ; try++ {
		n, _ := rand.Int(rand.Reader, big.NewInt(100))
		c.base = 100 + int(n.Int64())
		block = fmt.Sprintf("10.%d.0.0/16", c.base)
		out, err := exec.Command(IPPath, "route", "add", "unreachable", block).CombinedOutput()
		if err == nil {
			break
		}
		if try == 50 || !strings.Contains(string(out), "File exists") {
			t.Fatalf("slurmtest: ip route add unreachable %s: %v\n%s", block, err, out)
		}
	}
	c.LoginNS, c.NodeNS = "kqsl"+c.id+"l", "kqsl"+c.id+"n"
	t.Cleanup(func() {
		for _, ns := range []string{c.NodeNS, c.LoginNS} {
			if out, err := exec.Command(IPPath, "netns", "del", ns).CombinedOutput(); err != nil && !bytes.Contains(out, []byte("No such file")) {
				t.Errorf("slurmtest: ip netns del %s: %v %s", ns, err, out)
			}
		}
		if out, err := exec.Command(IPPath, "route", "del", "unreachable", block).CombinedOutput(); err != nil {
			t.Errorf("slurmtest: ip route del %s: %v %s", block, err, out)
		}
	})
	for _, ns := range []string{c.LoginNS, c.NodeNS} {
		ip(t, "netns", "add", ns)
		ip(t, "-n", ns, "link", "set", "lo", "up")
	}
	_, c.LoginAddr = c.link(t, 1, "", c.LoginNS)
	c.CtldAddr, c.NodeAddr = c.link(t, 2, c.LoginNS, c.NodeNS)
}

// link joins namespaces a and b ("" is the root namespace) with a veth pair
// on 10.base.n.0/24 and returns their addresses.
func (c *Cluster) link(t testing.TB, n int, a, b string) (addrA, addrB string) {
	t.Helper()
	va, vb := fmt.Sprintf("kqsl%s%da", c.id, n), fmt.Sprintf("kqsl%s%db", c.id, n)
	ip(t, "link", "add", va, "type", "veth", "peer", "name", vb)
	addrA, addrB = fmt.Sprintf("10.%d.%d.1", c.base, n), fmt.Sprintf("10.%d.%d.2", c.base, n)
	for _, end := range []struct{ ns, dev, addr string }{{a, va, addrA}, {b, vb, addrB}} {
		if end.ns == "" {
			ip(t, "addr", "add", end.addr+"/24", "dev", end.dev)
			ip(t, "link", "set", end.dev, "up")
			continue
		}
		ip(t, "link", "set", end.dev, "netns", end.ns)
		ip(t, "-n", end.ns, "addr", "add", end.addr+"/24", "dev", end.dev)
		ip(t, "-n", end.ns, "link", "set", end.dev, "up")
	}
	return addrA, addrB
}

// SetClientLink takes the client's link to the login node down (up=false)
// or back up: a network that drops every packet, for tests of dead links.
func (c *Cluster) SetClientLink(t testing.TB, up bool) {
	t.Helper()
	state := map[bool]string{true: "up", false: "down"}[up]
	ip(t, "link", "set", fmt.Sprintf("kqsl%s1a", c.id), state)
}

// path names a file of the cluster.
func (c *Cluster) path(name string) string { return filepath.Join(c.Dir, name) }

// startMunge makes a key (0600) and runs munged in the foreground on a
// socket in the cluster's dir; every namespace reaches it by path.
func (c *Cluster) startMunge(t testing.TB) {
	t.Helper()
	key := c.path("munge.key")
	if out, err := exec.Command(MungekeyBin, "-c", "-k", key).CombinedOutput(); err != nil {
		t.Fatalf("slurmtest: mungekey: %v\n%s", err, out)
	}
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatalf("slurmtest: %v", err)
	}
	c.spawn(t, "munged", MungedPath, "-F", "-f", "-S", c.socket(), "--key-file="+key,
		"--pid-file="+c.path("munge/munged.pid"), "--log-file="+c.path("log/munged.log"),
		"--seed-file="+c.path("munge/munged.seed"))
	c.await(t, "munged socket", func() bool { _, err := os.Stat(c.socket()); return err == nil })
}

func (c *Cluster) socket() string { return c.path("munge/socket") }

// writeConf writes slurm.conf and cgroup.conf.
func (c *Cluster) writeConf(t testing.TB, opts Options) {
	t.Helper()
	// Job ids of their own, so that two clusters' jobs never share a cgroup
	// or a name in a test's messages.
	n, _ := rand.Int(rand.Reader, big.NewInt(1000))
	lines := []string{
		"ClusterName=kqsl" + c.id,
		fmt.Sprintf("SlurmctldHost=kqsl%sl(%s)", c.id, c.CtldAddr),
		"SlurmUser=root", "SlurmdUser=root",
		"AuthType=auth/munge", "CredType=cred/munge", "AuthInfo=socket=" + c.socket(),
		"StateSaveLocation=" + c.path("state"), "SlurmdSpoolDir=" + c.path("spool"),
		"SlurmctldPidFile=" + c.path("slurmctld.pid"), "SlurmdPidFile=" + c.path("slurmd.pid"),
		"SlurmctldLogFile=" + c.path("log/slurmctld.log"), "SlurmdLogFile=" + c.path("log/slurmd.log"),
		"SlurmctldDebug=info", "SlurmdDebug=info", "MailProg=/bin/true",
		"ProctrackType=proctrack/cgroup", "TaskPlugin=task/none",
		"JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
		"SchedulerType=sched/backfill", "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=1",
		"SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
		"ReturnToService=2", "MinJobAge=300", "KillWait=2", "MpiDefault=none",
		fmt.Sprintf("FirstJobId=%d", 1000000+60000*int(n.Int64())), // MaxJobId is 67043328
	}
	lines = append(lines, opts.ExtraConf...)
	lines = append(lines,
		fmt.Sprintf("NodeName=%s NodeAddr=%s NodeHostname=%s CPUs=%d Sockets=1 CoresPerSocket=%d ThreadsPerCore=1 RealMemory=1000 State=UNKNOWN",
			c.NodeName, c.NodeAddr, c.NodeName, opts.CPUs, opts.CPUs),
		fmt.Sprintf("PartitionName=%s Nodes=%s Default=YES MaxTime=INFINITE State=UP", c.Partition, c.NodeName))
	write(t, c.Conf, strings.Join(lines, "\n")+"\n")
	write(t, c.path("cgroup.conf"), "CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\nConstrainCores=no\nConstrainRAMSpace=no\n")
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatalf("slurmtest: %v", err)
	}
}

// inNS is the argv that runs prog in namespace ns under hostname host:
// nsenter and unshare exec in place, so the PID stays prog's own.
func inNS(ns, host string, prog ...string) []string {
	return append([]string{NsenterPath, "--net=/run/netns/" + ns, UnsharePath, "--uts", "/bin/sh", "-c",
		`hostname "$0" && exec "$@"`, host}, prog...)
}

func (c *Cluster) startCtld(t testing.TB) {
	t.Helper()
	c.spawn(t, "slurmctld", inNS(c.LoginNS, "kqsl"+c.id+"l", SlurmctldP, "-D", "-i", "-f", c.Conf)...)
}

func (c *Cluster) startSlurmd(t testing.TB) {
	t.Helper()
	c.spawn(t, "slurmd", inNS(c.NodeNS, c.NodeName, SlurmdPath, "-D", "-f", c.Conf)...)
}

// spawn starts one daemon with its output in log/NAME.out; it dies with the
// test binary (Pdeathsig) if clean-up never runs.
func (c *Cluster) spawn(t testing.TB, name string, argv ...string) {
	t.Helper()
	out, err := os.OpenFile(c.path("log/"+name+".out"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("slurmtest: %v", err)
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "SLURM_CONF="+c.Conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("slurmtest: start %s: %v", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	c.daemons = append(c.daemons, d)
}

// await polls cond until it holds, failing the test after readyTimeout or
// when a daemon has exited.
func (c *Cluster) await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for !cond() {
		for _, d := range c.daemons {
			select {
			case <-d.done:
				t.Fatalf("slurmtest: %s exited while waiting for %s (see log/%s.out)", d.name, what, d.name)
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("slurmtest: no %s after %v", what, readyTimeout)
		}
		time.Sleep(poll)
	}
}

// waitIdle waits until the node has registered and takes jobs.
func (c *Cluster) waitIdle(t testing.TB) {
	t.Helper()
	c.await(t, "idle node", func() bool {
		out, err := c.run(context.Background(), "sinfo", "-h", "-N", "-o", "%T")
		return err == nil && strings.TrimSpace(out) == "idle"
	})
}

// Command returns a Slurm client command (sbatch, squeue, ...) run in the
// login namespace with this cluster's SLURM_CONF: what a user on the login
// node runs.
func (c *Cluster) Command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, NsenterPath, append([]string{"--net=/run/netns/" + c.LoginNS, prog}, args...)...)
	cmd.Env = append(os.Environ(), "SLURM_CONF="+c.Conf)
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

func (c *Cluster) run(ctx context.Context, prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := c.Command(ctx, prog, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", prog, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// Run runs a Slurm client command on the login node and returns its
// stdout, failing the test if it fails.
func (c *Cluster) Run(t testing.TB, prog string, args ...string) string {
	t.Helper()
	out, err := c.run(context.Background(), prog, args...)
	if err != nil {
		t.Fatalf("slurmtest: %v", err)
	}
	return out
}

// Jobs returns the cluster's jobs that are not finished, as "ID NAME
// STATE" lines.
func (c *Cluster) Jobs(t testing.TB) []string {
	t.Helper()
	var jobs []string
	for _, l := range strings.Split(c.Run(t, "squeue", "-h", "-o", "%i %j %T"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			jobs = append(jobs, l)
		}
	}
	return jobs
}

// NodePIDs returns the processes running in the node namespace other than
// slurmd: a job's slurmstepd, its script and whatever it started.
func (c *Cluster) NodePIDs() []int {
	var pids []int
	for _, p := range nsPIDs(c.NodeNS) {
		if !c.isDaemon(p) {
			pids = append(pids, p)
		}
	}
	return pids
}

// LoginPIDs returns the processes running in the login namespace other
// than slurmctld and the sshd listener: ssh sessions and what they started.
func (c *Cluster) LoginPIDs() []int {
	var pids []int
	for _, p := range nsPIDs(c.LoginNS) {
		if !c.isDaemon(p) && (c.SSH == nil || p != c.SSH.PID) {
			pids = append(pids, p)
		}
	}
	return pids
}

// AssertClean fails the test unless the cluster has no job left (pending
// or running), nothing but slurmd runs on the node and nothing but the
// daemons on the login node, waiting up to timeout for jobs that are being
// cancelled to go.
func (c *Cluster) AssertClean(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		jobs := strings.TrimSpace(c.Run(t, "squeue", "-h", "-o", "%i %j %T %r"))
		pids := append(c.NodePIDs(), c.LoginPIDs()...)
		if jobs == "" && len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slurmtest: left behind after %v: jobs %q, processes %s", timeout, jobs, describe(pids))
		}
		time.Sleep(poll)
	}
}

// describe names processes by pid and command line.
func describe(pids []int) string {
	var parts []string
	for _, p := range pids {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline")
		parts = append(parts, fmt.Sprintf("%d %q", p, strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// isDaemon: pid is a daemon the cluster started, or a helper process of
// one (slurmctld's slurmscriptd).
func (c *Cluster) isDaemon(pid int) bool {
	for _, p := range []int{pid, parent(pid)} {
		for _, d := range c.daemons {
			if d.cmd.Process != nil && d.cmd.Process.Pid == p && (p == pid || d.name == "slurmctld") {
				return true
			}
		}
	}
	return false
}

// Parent is pid's parent process id, 0 if unknown.
func Parent(pid int) int { return parent(pid) }

// parent is pid's parent process id, 0 if unknown.
func parent(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

// nsPIDs lists the processes in namespace ns (ip netns pids).
func nsPIDs(ns string) []int {
	out, err := exec.Command(IPPath, "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil && sshdtest.ProcessAlive(p) {
			pids = append(pids, p)
		}
	}
	return pids
}

// stop ends the cluster: its jobs are cancelled and given time to leave the
// node, the daemons it started are stopped by PID, then whatever still runs
// in its namespaces (a job's processes, sessions of the login sshd) is
// killed, and the node's cgroups are removed.
func (c *Cluster) stop() {
	if len(c.daemons) > 0 {
		_, _ = c.run(context.Background(), "scancel", "--user=root", "--full")
		deadline := time.Now().Add(drainTimeout)
		for time.Now().Before(deadline) {
			out, err := c.run(context.Background(), "squeue", "-h", "-o", "%i")
			if err == nil && strings.TrimSpace(out) == "" && len(c.NodePIDs()) == 0 {
				break
			}
			time.Sleep(poll)
		}
	}
	for i := len(c.daemons) - 1; i >= 0; i-- {
		c.daemons[i].stop(c.t)
	}
	for _, ns := range []string{c.NodeNS, c.LoginNS} {
		for _, p := range nsPIDs(ns) {
			c.t.Logf("slurmtest: killing %s left in %s", describe([]int{p}), ns)
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
	c.removeCgroups()
}

// stop: SIGTERM, a bounded wait, then SIGKILL.
func (d *daemon) stop(t testing.TB) {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return
	case <-time.After(stopTimeout):
	}
	_ = d.cmd.Process.Kill()
	select {
	case <-d.done:
	case <-time.After(stopTimeout):
		t.Errorf("slurmtest: %s (%d) still running after SIGKILL", d.name, d.cmd.Process.Pid)
	}
}

// removeCgroups removes the cgroups slurmd made for this node (named after
// it, so no other cluster's), deepest first.
func (c *Cluster) removeCgroups() {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/slurm_" + c.NodeName)
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
				c.t.Logf("slurmtest: rmdir %s: %v", dirs[i], err)
			}
		}
	}
}

func (c *Cluster) dumpLogs() {
	for _, name := range []string{"slurmctld.out", "slurmctld.log", "slurmd.out", "slurmd.log", "munged.out", "munged.log"} {
		b, err := os.ReadFile(c.path("log/" + name))
		if err != nil {
			continue
		}
		if len(b) > 16<<10 {
			b = b[len(b)-16<<10:]
		}
		c.t.Logf("slurmtest: %s:\n%s", name, b)
	}
}
