//go:build linux

package launcher_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// execServer is an in-process SSH server for tests of whole sessions: it
// runs "exec" requests under the local /bin/sh (so kq's remote.sh runs as
// it would on a server), relays direct-tcpip channels to local addresses
// with OpenSSH's half-close behaviour, and answers every global request
// (keepalive@openssh.com) with failure, as OpenSSH does. It authenticates
// one client key and is host-key checked against the known_hosts file it
// writes. Only the exported API of launcher is used around it, so that
// the package's internals can move without breaking the tests.
type execServer struct {
	t    *testing.T
	ln   net.Listener
	cfg  *ssh.ServerConfig
	env  []string // the environment of exec'd commands, like sshd's
	home string

	Host       string
	Port       int
	KnownHosts string // a known_hosts file naming the server's host key
	ClientKey  string // an OpenSSH private key file the server accepts

	wg sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	conns    map[net.Conn]struct{}
	accepted int
	procs    map[int]struct{} // pids of exec'd commands still running
	events   []serverEvent
	onClose  func() // called as each SSH connection ends, before it is recorded
}

// serverEvent is one thing the server saw, in order.
type serverEvent struct {
	at   time.Time
	what string // "conn open", "conn closed", "exec start", "exec end"
}

// startExecServer starts the server on 127.0.0.1; dir receives its key
// files and home is the exec'd commands' HOME and working directory. It
// stops in t.Cleanup: the listener and every connection closed, every
// goroutine and command it started ended.
func startExecServer(t *testing.T, dir, home string) *execServer {
	t.Helper()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	s := &execServer{t: t, home: home, conns: map[net.Conn]struct{}{}, procs: map[int]struct{}{}}
	s.ClientKey = filepath.Join(dir, "id_ed25519")
	want := writeClientKey(t, s.ClientKey).Marshal()
	s.cfg = &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(want) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	s.cfg.AddHostKey(hostSigner)

	s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := s.ln.Addr().(*net.TCPAddr)
	s.Host, s.Port = "127.0.0.1", addr.Port
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(s.ln.Addr().String())}, hostSigner.PublicKey())
	if err := os.WriteFile(s.KnownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.env = commandEnv(home)

	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.stop)
	return s
}

// writeClientKey makes the one client key the server accepts and writes its
// private half to path in OpenSSH form, so kq loads it the way it loads a
// user's key; it returns the public half for the server to compare against.
func writeClientKey(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshClientPub, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "kq unit test")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return sshClientPub
}

// commandEnv is the whole environment of the exec'd commands, like the fresh
// login environment sshd gives them, so nothing of the test's own
// environment leaks into what the remote side sees.
func commandEnv(home string) []string {
	user := os.Getenv("USER")
	if user == "" {
		user = "root"
	}
	return []string{"HOME=" + home, "USER=" + user, "LOGNAME=" + user, "SHELL=/bin/sh",
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG=C.UTF-8"}
}

func (s *execServer) record(what string) {
	s.mu.Lock()
	s.events = append(s.events, serverEvent{time.Now(), what})
	s.mu.Unlock()
}

// Events returns what the server saw so far, in order.
func (s *execServer) Events() []serverEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]serverEvent(nil), s.events...)
}

// Accepted is the number of TCP connections accepted so far.
func (s *execServer) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Live is the number of connections open now.
func (s *execServer) Live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Running is the number of exec'd commands still running.
func (s *execServer) Running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.procs)
}

// SetOnClose sets a function called as each SSH connection ends.
func (s *execServer) SetOnClose(fn func()) {
	s.mu.Lock()
	s.onClose = fn
	s.mu.Unlock()
}

// DropAll closes every live connection at once, as a server that went
// away would: the client sees its TCP connection end, and the server's
// side of each session sees EOF and a closed channel (as sshd's children
// do when their connection is gone). It returns how many it dropped.
func (s *execServer) DropAll() int {
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return len(conns)
}

// stop closes the listener and every connection and waits, bounded, for
// every goroutine and command of the server to end; a command that does
// not end by itself is killed (by its pid: only the server's own).
func (s *execServer) stop() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.ln.Close()
	s.DropAll()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(30 * time.Second):
	}
	s.mu.Lock()
	var pids []int
	for pid := range s.procs {
		pids = append(pids, pid)
	}
	s.mu.Unlock()
	s.t.Errorf("ssh test server: still busy 30s after stop; killing its commands %v", pids)
	for _, pid := range pids {
		_ = syscall.Kill(-pid, syscall.SIGKILL) // each runs in its own session (Setsid)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.t.Errorf("ssh test server: goroutines still running after its commands were killed")
	}
}

func (s *execServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed by stop
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.accepted++
		s.mu.Unlock()
		s.wg.Add(1)
		go s.handleConn(c)
	}
}

func (s *execServer) handleConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		fn := s.onClose
		s.mu.Unlock()
		if fn != nil {
			fn()
		}
		s.record("conn closed")
		// Last, so that Live() == 0 means every close is recorded.
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // the handshake's
	sc, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	s.record("conn open")
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for req := range reqs { // keepalive@openssh.com and the rest
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
	}()
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			s.wg.Add(1)
			go s.session(nc)
		case "direct-tcpip":
			s.wg.Add(1)
			go s.directTCPIP(nc)
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "unsupported channel type")
		}
	}
	sc.Close()
}

// session serves one session channel: one exec, run as /bin/sh -c.
func (s *execServer) session(nc ssh.NewChannel) {
	defer s.wg.Done()
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	var cmd *exec.Cmd
	for req := range reqs {
		switch req.Type {
		case "exec":
			if cmd != nil {
				_ = req.Reply(false, nil)
				continue
			}
			var p struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &p); err != nil {
				_ = req.Reply(false, nil)
				continue
			}
			cmd, err = s.startCommand(ch, p.Command)
			if err != nil {
				_ = req.Reply(false, nil)
				fmt.Fprintf(ch.Stderr(), "exec: %v\n", err)
				ch.Close()
				continue
			}
			_ = req.Reply(true, nil)
		case "env":
			// sshd accepts and ignores a variable its AcceptEnv does not
			// list; this server lists none.
			if req.WantReply {
				_ = req.Reply(true, nil)
			}
		case "signal":
			var p struct{ Signal string }
			if cmd != nil && ssh.Unmarshal(req.Payload, &p) == nil {
				if sig, ok := sshSignals[ssh.Signal(p.Signal)]; ok {
					_ = cmd.Process.Signal(sig)
				}
			}
		default: // pty-req, shell, subsystem, x11-req, window-change...
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
	}
	if cmd == nil {
		ch.Close()
	}
	// With a command, its waiter closes the channel once it has ended: a
	// channel closed by the client (or a dropped connection) leaves the
	// command to see EOF on stdin, as sshd does.
}

var sshSignals = map[ssh.Signal]os.Signal{
	ssh.SIGINT: syscall.SIGINT, ssh.SIGTERM: syscall.SIGTERM, ssh.SIGKILL: syscall.SIGKILL,
	ssh.SIGHUP: syscall.SIGHUP, ssh.SIGQUIT: syscall.SIGQUIT, ssh.SIGUSR1: syscall.SIGUSR1,
	ssh.SIGUSR2: syscall.SIGUSR2,
}

// startCommand runs command under /bin/sh -c in its own session, as sshd
// does, with stdin, stdout and stderr on ch; when it ends, the exit status
// (or signal) is sent and the channel closed.
func (s *execServer) startCommand(ch ssh.Channel, command string) (*exec.Cmd, error) {
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Env, cmd.Dir = s.env, s.home
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	// A background process that kept stdout would hold Wait for ever.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	s.mu.Lock()
	s.procs[pid] = struct{}{}
	s.mu.Unlock()
	s.record("exec start")
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		_, _ = io.Copy(stdin, ch) // ends when the client sends EOF, or the channel closes
		stdin.Close()
	}()
	go func() {
		defer s.wg.Done()
		err := cmd.Wait()
		s.mu.Lock()
		delete(s.procs, pid)
		s.mu.Unlock()
		s.record("exec end")
		var ee *exec.ExitError
		switch {
		case err == nil:
			_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
		case errors.As(err, &ee):
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				name := string(signalName(ws.Signal()))
				_, _ = ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
					Signal     string
					CoreDumped bool
					Error      string
					Lang       string
				}{name, ws.CoreDump(), "", ""}))
			} else {
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(ee.ExitCode())}))
			}
		}
		_ = ch.CloseWrite()
		ch.Close()
	}()
	return cmd, nil
}

func signalName(sig syscall.Signal) ssh.Signal {
	for name, s := range sshSignals {
		if s == sig {
			return name
		}
	}
	return ssh.Signal(strconv.Itoa(int(sig)))
}

// directTCPIP relays one direct-tcpip channel to its target, like
// OpenSSH: EOF each way is passed on as a half-close, and the channel's
// close (or the connection's end) closes the TCP connection at once.
func (s *execServer) directTCPIP(nc ssh.NewChannel) {
	defer s.wg.Done()
	var p struct {
		Addr     string
		Port     uint32
		OrigAddr string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "bad direct-tcpip request")
		return
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(p.Addr, strconv.Itoa(int(p.Port))), 5*time.Second)
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		conn.Close()
		return
	}
	tcp := conn.(*net.TCPConn)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for req := range reqs {
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
		tcp.Close() // the channel is closed: so is the connection
	}()
	var copies sync.WaitGroup
	copies.Add(2)
	go func() {
		defer copies.Done()
		_, _ = io.Copy(tcp, ch)
		_ = tcp.CloseWrite()
	}()
	go func() {
		defer copies.Done()
		_, _ = io.Copy(ch, tcp)
		_ = ch.CloseWrite()
	}()
	copies.Wait()
	ch.Close()
	tcp.Close()
}
