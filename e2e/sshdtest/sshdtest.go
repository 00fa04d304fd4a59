// Package sshdtest starts a real OpenSSH sshd for end-to-end tests of kq.
//
// The e2e tests must prove kq against the server users actually run, not an
// in-process x/crypto/ssh server, so this package drives /usr/sbin/sshd with a
// throwaway host key, client key, known_hosts and ssh_config, all kept in one
// temporary directory and removed when the test ends. It also offers the
// probes ("is this PID alive", "is this port listening", "which processes
// mention this path") that tests use to prove kq leaves nothing behind.
//
// Every wait in this package is bounded, every process it ends is one it
// started (by PID), and all traffic stays on 127.0.0.0/8.
package sshdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Paths of the OpenSSH programs. They are absolute because sshd refuses to
// start from a relative path (it re-executes itself) and because root's PATH
// here is dominated by pyenv and cargo shims.
const (
	SSHDPath   = "/usr/sbin/sshd"
	SSHPath    = "/usr/bin/ssh"
	KeygenPath = "/usr/bin/ssh-keygen"
)

// Alias is the ssh_config Host name under which Server.SSHConfig lists the
// server, so tests can exercise kq's ssh_config resolution with "-F".
const Alias = "kqtest"

// Timeouts. They are generous because CI machines stall, but finite so that a
// hung sshd fails a test instead of hanging the suite.
const (
	readyTimeout = 10 * time.Second // sshd writes its PidFile once it listens
	stopTimeout  = 5 * time.Second  // per stage: after SIGTERM, after SIGKILL
	runTimeout   = 30 * time.Second // one Server.Run command
	toolTimeout  = 15 * time.Second // one ssh-keygen or sshd -t call
	pollInterval = 10 * time.Millisecond
	bindAttempts = 5 // free ports can be stolen between probe and bind
	dialTimeout  = 300 * time.Millisecond
)

// Options tune one test sshd.
type Options struct {
	// ExtraConfig holds extra sshd_config lines, e.g. "AllowTcpForwarding no".
	// sshd keeps the first value it reads for a keyword, so a keyword given
	// here replaces this package's default for it rather than being ignored.
	// A line starting with "Match" and all lines after it are written at the
	// end of the file, where sshd requires Match blocks to be.
	ExtraConfig []string
	// Netns, when set, is a network namespace made by the test: sshd runs
	// inside it (ip netns exec), as a separate host of a test topology.
	Netns string
	// Port is sshd's port; 0 picks a free one (only outside a namespace).
	Port int
	// HostCA, when set, is a CA private key: the host key is signed with it
	// (principal: the listen address) and sshd also offers the certificate.
	HostCA string
	// ListenAddr is the address sshd listens on; default "127.0.0.1". Outside
	// a namespace it must be in 127.0.0.0/8, so tests never leave the host.
	ListenAddr string
	// ExecName, when set, starts sshd through a symlink of that name in Dir
	// (e.g. "sshd-session"). sshd re-executes itself for every connection
	// from the path it was started from, so its per-connection processes
	// carry that name, as those of OpenSSH 9.8 and later (a separate
	// sshd-session binary) do.
	ExecName string
}

// Server is one running sshd with its own host key, one client key authorised
// for the current user (root), a known_hosts that trusts it, and an ssh_config
// naming it.
type Server struct {
	// Dir is the temporary directory holding every file of this server; it is
	// removed when the test ends, after sshd has been stopped.
	Dir string
	// Addr is "HOST:PORT", ready for net.Dial.
	Addr string
	// Host is the listen address, "127.0.0.1" by default.
	Host string
	// Port is the TCP port sshd listens on.
	Port int
	// User is the current user's name, the account the client key logs into.
	User string
	// ClientKey is the path of an unencrypted ed25519 private key authorised
	// on the server (its public half is ClientKey+".pub").
	ClientKey string
	// KnownHosts is the path of a known_hosts file holding the server's host
	// key in OpenSSH form for "[HOST]:PORT".
	KnownHosts string
	// SSHConfig is the path of an ssh_config with "Host kqtest" (Alias) set to
	// HostName, Port, User, IdentityFile ClientKey, IdentitiesOnly yes,
	// UserKnownHostsFile KnownHosts, StrictHostKeyChecking yes and
	// GlobalKnownHostsFile /dev/null.
	SSHConfig string
	// Alias is the Host name used in SSHConfig, "kqtest".
	Alias string
	// HostKeyFingerprint is the host key's SHA256 fingerprint ("SHA256:..."),
	// as ssh prints it when asking about an unknown host.
	HostKeyFingerprint string
	// HostKeyLine is the host key in authorized_keys form ("ssh-ed25519 AAAA...").
	HostKeyLine string
	// Log is the path of the file receiving sshd's stderr (LogLevel VERBOSE).
	Log string
	// PID is the process ID of the listening sshd. Per-connection sshd
	// children have other PIDs and outlive Close.
	PID int

	t         testing.TB
	done      chan struct{} // closed when the sshd process has been reaped
	closeOnce sync.Once
}

// Start starts a fresh sshd for t and stops it when t ends. It fails the test
// (never skips) when sshd cannot be started, so a broken environment cannot
// hide as a green run.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	requirePrograms(t)
	s := newServer(t, listenHost(t, opts))
	files := s.makeKeys(t, opts.HostCA, opts.ExtraConfig)
	// Log the sshd output on failure. Registered before the stop cleanup so
	// it runs after it (cleanups are LIFO) and includes shutdown messages.
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpLog()
		}
	})
	s.listen(t, s.sshdExe(t, opts.ExecName), opts, files)
	t.Cleanup(s.Close)
	s.writeClientFiles(t)
	return s
}

// requirePrograms fails at once when OpenSSH is missing, because otherwise the
// first symptom would be an exec error deep inside key generation.
func requirePrograms(t testing.TB) {
	t.Helper()
	for _, p := range []string{SSHDPath, SSHPath, KeygenPath} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("sshdtest: %s is required for end-to-end tests: %v", p, err)
		}
	}
}

// listenHost returns the address sshd is to listen on, refusing anything that
// could expose a passwordless root login beyond this host: outside a test's
// own network namespace only 127.0.0.0/8 will do.
func listenHost(t testing.TB, opts Options) string {
	t.Helper()
	host := opts.ListenAddr
	if host == "" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || ip.To4() == nil || (!ip.IsLoopback() && opts.Netns == "") {
		t.Fatalf("sshdtest: ListenAddr %q is not an IPv4 loopback address (127.0.0.0/8)", host)
	}
	return host
}

// newServer makes the directory that will hold every file of the server and
// fills in what is known before any key exists. The directory is removed by
// the first cleanup registered, so it goes last, after sshd has stopped.
func newServer(t testing.TB, host string) *Server {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshdtest: current user: %v", err)
	}
	// sshd's privilege separation needs this directory; a container may not
	// have it because nothing started the system sshd.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshdtest: create /run/sshd: %v", err)
	}
	// A short path rather than t.TempDir: test names make long paths, and
	// paths here may end up in unix socket names (108-byte limit).
	dir, err := os.MkdirTemp("", "kqsshd-")
	if err != nil {
		t.Fatalf("sshdtest: temp dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("sshdtest: remove %s: %v", dir, err)
		}
	})
	return &Server{
		Dir:       dir,
		Host:      host,
		User:      u.Username,
		ClientKey: filepath.Join(dir, "id_ed25519"),
		Alias:     Alias,
		Log:       filepath.Join(dir, "sshd.log"),
		t:         t,
	}
}

// sshdFiles are the paths sshd_config names and the extra lines it carries;
// they are fixed before the first bind attempt and reused by every retry.
type sshdFiles struct {
	hostKey, authKeys, config, pidFile string
	extra                              []string
}

// makeKeys creates the host key and the authorised client key and records the
// host key's public forms, which tests compare against what kq prints. With a
// host CA it also certifies the host key for the listen address, so tests of
// @cert-authority trust have a certificate sshd really offers.
func (s *Server) makeKeys(t testing.TB, hostCA string, extra []string) sshdFiles {
	t.Helper()
	f := sshdFiles{
		hostKey:  filepath.Join(s.Dir, "ssh_host_ed25519_key"),
		authKeys: filepath.Join(s.Dir, "authorized_keys"),
		config:   filepath.Join(s.Dir, "sshd_config"),
		pidFile:  filepath.Join(s.Dir, "sshd.pid"),
		extra:    extra,
	}
	keygen(t, f.hostKey, "kq-sshdtest-host")
	keygen(t, s.ClientKey, "kq-sshdtest-client")
	writeFile(t, f.authKeys, readFile(t, s.ClientKey+".pub"))

	s.HostKeyLine = keyLine(t, f.hostKey+".pub")
	s.HostKeyFingerprint = fingerprint(t, f.hostKey+".pub")
	if hostCA != "" {
		out, err := exec.Command(KeygenPath, "-q", "-s", hostCA, "-I", "kq-sshdtest-host", "-h", "-n", s.Host,
			f.hostKey+".pub").CombinedOutput()
		if err != nil {
			t.Fatalf("sshdtest: sign host key: %v\n%s", err, out)
		}
		// A copy: appending to the caller's slice could write into its array.
		f.extra = append(append([]string(nil), extra...), "HostCertificate "+f.hostKey+"-cert.pub")
	}
	return f
}

// sshdExe is the path to start sshd from: SSHDPath itself, or a symlink named
// execName so that sshd's per-connection processes carry that name.
func (s *Server) sshdExe(t testing.TB, execName string) string {
	t.Helper()
	if execName == "" {
		return SSHDPath
	}
	if strings.Contains(execName, "/") {
		t.Fatalf("sshdtest: ExecName %q is not a plain file name", execName)
	}
	exe := filepath.Join(s.Dir, execName)
	if err := os.Symlink(SSHDPath, exe); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	return exe
}

// listen writes sshd_config and starts sshd, retrying on another free port
// when the one it picked was taken in the meantime; a port the test chose is
// never swapped, so that failure is reported. Only the first config is
// checked with "sshd -t": retries differ from it only in the port.
func (s *Server) listen(t testing.TB, exe string, opts Options, f sshdFiles) {
	t.Helper()
	var lastErr error
	for attempt := 1; attempt <= bindAttempts; attempt++ {
		port := opts.Port
		if port == 0 {
			var err error
			if port, err = freePort(s.Host); err != nil {
				t.Fatalf("sshdtest: find a free port on %s: %v", s.Host, err)
			}
		}
		writeFile(t, f.config, sshdConfig(s.Host, port, f.hostKey, f.pidFile, f.authKeys, f.extra))
		if attempt == 1 {
			checkConfig(t, f.config)
		}
		_ = os.Remove(f.pidFile)
		err := s.launch(exe, opts.Netns, f.config, f.pidFile)
		if err == nil {
			s.Port = port
			s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(port))
			return
		}
		lastErr = err
		if !errors.Is(err, errBind) || opts.Port != 0 {
			break
		}
	}
	s.dumpLog()
	t.Fatalf("sshdtest: start sshd: %v", lastErr)
}

// writeClientFiles writes known_hosts and ssh_config, which can only be
// written once the port is known.
func (s *Server) writeClientFiles(t testing.TB) {
	t.Helper()
	s.KnownHosts = filepath.Join(s.Dir, "known_hosts")
	writeFile(t, s.KnownHosts, s.knownHostsEntry(s.HostKeyLine))
	s.SSHConfig = filepath.Join(s.Dir, "ssh_config")
	writeFile(t, s.SSHConfig, s.clientConfig())
}

// errBind marks a start that failed because the port was taken, which is
// worth retrying with another port.
var errBind = errors.New("sshd could not bind its port")

// launch starts sshd from exe (SSHDPath or a symlink to it) and waits
// until it has written its PidFile, which it does only once it listens. On
// success it sets s.PID and s.done.
func (s *Server) launch(exe, netns, configPath, pidFile string) error {
	logf, err := os.OpenFile(s.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open sshd log: %w", err)
	}
	defer logf.Close() // the child has its own copy of the descriptor
	cmd := sshdCommand(exe, netns, configPath, logf)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", exe, err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	pid, err := c.awaitPidFile(pidFile, s.Log)
	if err != nil {
		return err
	}
	s.PID = pid
	s.done = c.done
	return nil
}

// sshdCommand builds the sshd command line, in the foreground (-D) so the PID
// stays the listener's, with output to logf.
func sshdCommand(exe, netns, configPath string, logf *os.File) *exec.Cmd {
	cmd := exec.Command(exe, "-D", "-e", "-f", configPath)
	if netns != "" {
		// ip netns exec execs sshd in place, so the PID is sshd's own.
		cmd = exec.Command("/usr/sbin/ip", "netns", "exec", netns, exe, "-D", "-e", "-f", configPath)
	}
	// A file, not a pipe: per-connection sshd children inherit stderr and
	// outlive the listener, and a pipe would make Wait block until they end.
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// If the test binary dies without running cleanups (kill -9,
		// timeout panic), take the listener with it.
		Pdeathsig: syscall.SIGKILL,
	}
	return cmd
}

// child is a started sshd and the result of reaping it, so the wait for its
// PidFile can tell "exited" from "still starting" without a second Wait.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait has returned
	err  error         // Wait's result; read it only after done is closed
}

// awaitPidFile polls for sshd's PidFile, the only sign that it listens, and
// returns the PID in it. A PidFile naming another process means the path is
// shared with some other sshd, which would make Close stop the wrong one.
func (c *child) awaitPidFile(pidFile, logPath string) (int, error) {
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return 0, c.exitError(logPath)
		case <-deadline.C:
			c.kill()
			return 0, fmt.Errorf("sshd did not write %s within %v", pidFile, readyTimeout)
		case <-tick.C:
			pid, ok := readPidFile(pidFile)
			if !ok {
				continue
			}
			if pid != c.cmd.Process.Pid {
				c.kill()
				return 0, fmt.Errorf("sshd pid file says %d, started %d", pid, c.cmd.Process.Pid)
			}
			return pid, nil
		}
	}
}

// exitError explains an sshd that exited before listening, marking a lost
// port with errBind so Start can retry on another one.
func (c *child) exitError(logPath string) error {
	log, _ := os.ReadFile(logPath)
	if bytes.Contains(log, []byte("Address already in use")) ||
		bytes.Contains(log, []byte("Cannot bind any address")) {
		return fmt.Errorf("%w: %v", errBind, c.err)
	}
	return fmt.Errorf("sshd exited before listening: %v (see log)", c.err)
}

// kill ends the child and waits for it to be reaped; it is our own child, so
// Wait returns promptly.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// readPidFile returns the PID in path once sshd has written it completely:
// sshd writes the newline last, so a file without one is still being written.
func readPidFile(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil
}

// Close stops the listening sshd: SIGTERM, a bounded wait, then SIGKILL. It
// is idempotent and also runs as a test cleanup. Sessions already accepted
// are served by their own sshd processes and are not ended by Close.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		if s.done == nil {
			return
		}
		_ = syscall.Kill(s.PID, syscall.SIGTERM)
		select {
		case <-s.done:
			return
		case <-time.After(stopTimeout):
		}
		s.t.Logf("sshdtest: sshd %d ignored SIGTERM for %v, sending SIGKILL", s.PID, stopTimeout)
		_ = syscall.Kill(s.PID, syscall.SIGKILL)
		select {
		case <-s.done:
		case <-time.After(stopTimeout):
			s.t.Errorf("sshdtest: sshd %d still running %v after SIGKILL", s.PID, stopTimeout)
		}
	})
}

// Command returns an unstarted /usr/bin/ssh command for this server using
// SSHConfig and BatchMode=yes, so it can never prompt. args follow the
// options, e.g. Command(ctx, "-o", "UserKnownHostsFile=x", s.Alias, "true");
// options given here win over SSHConfig because ssh keeps the first value.
func (s *Server) Command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"-F", s.SSHConfig, "-o", "BatchMode=yes"}, args...)
	cmd := exec.CommandContext(ctx, SSHPath, full...)
	cmd.Stdin = nil // /dev/null: the remote command must not wait for input
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// Run runs command on the server through the real ssh client and returns its
// stdout. It fails the test if ssh or the command fails or runs longer than
// 30 seconds, quoting stderr.
func (s *Server) Run(t testing.TB, command string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := s.Command(ctx, s.Alias, command)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (timed out after %v)", err, runTimeout)
		}
		t.Fatalf("sshdtest: ssh %s %q: %v\nstdout:\n%s\nstderr:\n%s", s.Alias, command, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String()
}

// WrongKnownHosts writes a known_hosts file that lists a different host key
// for "[HOST]:PORT" and returns its path: the "host key changed" case, which
// kq must refuse.
func (s *Server) WrongKnownHosts(t testing.TB) string {
	t.Helper()
	other := filepath.Join(s.Dir, fmt.Sprintf("other_host_key_%d", time.Now().UnixNano()))
	keygen(t, other, "kq-sshdtest-impostor")
	path := filepath.Join(s.Dir, "known_hosts.wrong")
	writeFile(t, path, s.knownHostsEntry(keyLine(t, other+".pub")))
	return path
}

// EmptyKnownHosts writes an empty known_hosts file and returns its path: the
// "unknown host" case, which kq must refuse when it cannot ask.
func (s *Server) EmptyKnownHosts(t testing.TB) string {
	t.Helper()
	path := filepath.Join(s.Dir, "known_hosts.empty")
	writeFile(t, path, "")
	return path
}

// KnownHostsPattern is the host pattern ssh uses for this server in
// known_hosts: "[HOST]:PORT" (the port is never 22).
func (s *Server) KnownHostsPattern() string {
	return "[" + s.Host + "]:" + strconv.Itoa(s.Port)
}

func (s *Server) knownHostsEntry(keyLine string) string {
	return s.KnownHostsPattern() + " " + keyLine + "\n"
}

func (s *Server) clientConfig() string {
	lines := []string{
		"# Written by kq's e2e/sshdtest for one test sshd.",
		"Host " + s.Alias,
		"  HostName " + s.Host,
		"  Port " + strconv.Itoa(s.Port),
		"  User " + s.User,
		"  IdentityFile " + s.ClientKey,
		"  IdentitiesOnly yes",
		"  UserKnownHostsFile " + s.KnownHosts,
		"  GlobalKnownHostsFile /dev/null",
		"  StrictHostKeyChecking yes",
		// Keep ssh from rewriting known_hosts behind the test's back.
		"  UpdateHostKeys no",
	}
	return strings.Join(lines, "\n") + "\n"
}

func (s *Server) dumpLog() {
	b, err := os.ReadFile(s.Log)
	if errors.Is(err, os.ErrNotExist) {
		return // sshd never ran, e.g. its config was rejected
	}
	if err != nil {
		s.t.Logf("sshdtest: read sshd log: %v", err)
		return
	}
	s.t.Logf("sshdtest: sshd log (%s):\n%s", s.Log, b)
}

// sshdConfig renders sshd_config. sshd keeps the first value of a keyword,
// so ExtraConfig's global lines come first and defaults they name are left
// out (repeating some keywords, such as Subsystem, is an error).
func sshdConfig(host string, port int, hostKey, pidFile, authKeys string, extra []string) string {
	defaults := [][2]string{
		{"ListenAddress", host},
		{"Port", strconv.Itoa(port)},
		{"HostKey", hostKey},
		{"PidFile", pidFile},
		{"AuthorizedKeysFile", authKeys},
		{"PubkeyAuthentication", "yes"},
		{"PasswordAuthentication", "no"},
		{"KbdInteractiveAuthentication", "no"},
		{"UsePAM", "no"},
		{"StrictModes", "no"},
		{"PermitRootLogin", "prohibit-password"},
		{"AllowTcpForwarding", "yes"},
		{"LogLevel", "VERBOSE"},
		{"Subsystem", "sftp internal-sftp"},
		{"PrintMotd", "no"},
		{"PrintLastLog", "no"},
		// Parallel tests open many connections at once; don't drop them.
		{"MaxStartups", "100"},
	}
	var global, match []string
	for i, line := range extra {
		if f := strings.Fields(line); len(f) > 0 && strings.EqualFold(f[0], "Match") {
			match = extra[i:]
			break
		}
		global = append(global, line)
	}
	given := map[string]bool{}
	for _, line := range global {
		if f := strings.Fields(strings.ReplaceAll(line, "=", " ")); len(f) > 0 {
			given[strings.ToLower(f[0])] = true
		}
	}
	var b strings.Builder
	b.WriteString("# Written by kq's e2e/sshdtest for one test sshd.\n")
	for _, line := range global {
		b.WriteString(line + "\n")
	}
	for _, kv := range defaults {
		if !given[strings.ToLower(kv[0])] {
			b.WriteString(kv[0] + " " + kv[1] + "\n")
		}
	}
	for _, line := range match {
		b.WriteString(line + "\n")
	}
	return b.String()
}

// checkConfig runs "sshd -t" so that a bad ExtraConfig line fails the test
// with sshd's own message instead of as a start-up timeout.
func checkConfig(t testing.TB, configPath string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, SSHDPath, "-t", "-f", configPath).CombinedOutput()
	if err != nil {
		cfg, _ := os.ReadFile(configPath)
		t.Fatalf("sshdtest: sshd rejects its config: %v\n%s\nconfig:\n%s", err, out, cfg)
	}
}

func keygen(t testing.TB, path, comment string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, KeygenPath, "-q", "-N", "", "-t", "ed25519", "-C", comment, "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("sshdtest: ssh-keygen %s: %v\n%s", path, err, out)
	}
}

// keyLine returns "TYPE BASE64" from a .pub file, without its comment.
func keyLine(t testing.TB, pubPath string) string {
	t.Helper()
	f := strings.Fields(readFile(t, pubPath))
	if len(f) < 2 {
		t.Fatalf("sshdtest: %s is not an OpenSSH public key", pubPath)
	}
	return f[0] + " " + f[1]
}

func fingerprint(t testing.TB, pubPath string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, KeygenPath, "-l", "-E", "sha256", "-f", pubPath).CombinedOutput()
	if err != nil {
		t.Fatalf("sshdtest: ssh-keygen -l %s: %v\n%s", pubPath, err, out)
	}
	// "256 SHA256:xxxx comment (ED25519)"
	f := strings.Fields(string(out))
	if len(f) < 2 || !strings.HasPrefix(f[1], "SHA256:") {
		t.Fatalf("sshdtest: unexpected ssh-keygen -l output: %q", out)
	}
	return f[1]
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	return string(b)
}

// writeFile writes with mode 0600: ssh refuses config and key files that
// others can write, and nothing here is meant for other users.
func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
}

// ProcessAlive reports whether pid names a running process. A zombie (or a
// dead task) counts as gone: it runs nothing and holds no ports, it only
// waits for its parent to reap it.
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "PID (comm) S ...": comm may hold spaces and parentheses, so the
	// state is the first field after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) == 0 {
		return false
	}
	switch f[0] {
	case "Z", "X", "x":
		return false
	}
	return true
}

// WaitGone fails the test if pid is still alive after timeout. It polls, so
// it works for processes that are not the test's children.
func WaitGone(t testing.TB, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for ProcessAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("sshdtest: process %d still alive after %v: %s", pid, timeout, cmdline(pid))
		}
		time.Sleep(pollInterval)
	}
}

// Listening reports whether something accepts TCP connections on
// 127.0.0.1:port, dialling with a short timeout. (It does not see a server
// started with another ListenAddr; dial its Addr for that.)
func Listening(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dialTimeout)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// ProcessesMatching returns the PIDs of live processes, other than the
// calling one, whose command line contains substr, e.g. a connection file
// path that only one kernel would have on its command line. Arguments are
// joined with spaces before matching.
func ProcessesMatching(substr string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if strings.Contains(cmdline(pid), substr) && ProcessAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cmdline returns the process's arguments joined by spaces, or "" if it is
// gone or is a zombie.
func cmdline(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	return strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
}
