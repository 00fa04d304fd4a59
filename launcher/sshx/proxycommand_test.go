package sshx

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher/kinds"
	"github.com/kq-dev/kq/profiles"
)

// TestProxyRelayHelper is not a test: run as a ProxyCommand (with
// KQ_TEST_RELAY=host:port), it relays its stdin and stdout to a TCP
// address, as `nc %h %p` would, and writes its pid to KQ_TEST_RELAY_PID.
func TestProxyRelayHelper(t *testing.T) {
	addr := os.Getenv("KQ_TEST_RELAY")
	if addr == "" {
		t.Skip("helper process only")
	}
	if f := os.Getenv("KQ_TEST_RELAY_PID"); f != "" {
		_ = os.WriteFile(f, []byte(strconv.Itoa(os.Getpid())), 0o600)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		os.Stderr.WriteString("relay: " + err.Error() + "\n")
		os.Exit(3)
	}
	go func() { _, _ = io.Copy(c, os.Stdin); os.Exit(0) }()
	_, _ = io.Copy(os.Stdout, c)
	os.Exit(0)
}

// relayCommand is a ProxyCommand that reaches addr through the helper.
func relayCommand(t *testing.T, addr, pidFile string) string {
	t.Setenv("KQ_TEST_RELAY", addr)
	t.Setenv("KQ_TEST_RELAY_PID", pidFile)
	return "'" + os.Args[0] + "' -test.run='^TestProxyRelayHelper$'"
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// groupLive says a process of group pgid runs (zombies, which an init
// that does not reap leaves behind, do not count).
func groupLive(pgid int) bool {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

// TestProxyCommandHop: a hop reached over a ProxyCommand authenticates and
// is host-key checked as a TCP one is (the host key under the hop's
// address); closing the chain ends the command and reaps it.
func TestProxyCommandHop(t *testing.T) {
	addr, kh := kbdServer(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	s := settingsFor(addr, "pw", kh)
	s.KbdInteractiveAuthentication = false
	s.ProxyCommand = relayCommand(t, addr, pidFile)
	s.HostName, s.Port = "127.0.0.1", mustPort(t, addr) // what %h %p gave the command
	p := &scripted{answers: []string{"s3cret"}}
	ch, err := Dial(context.Background(), NewAuthenticator(p), []profiles.SSHSettings{s})
	if err != nil {
		t.Fatalf("dial over ProxyCommand: %v", err)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(data))
	if !alive(pid) {
		t.Fatalf("proxy %d not running during the session", pid)
	}
	start := time.Now()
	if err := ch.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if alive(pid) {
		t.Fatalf("proxy %d still there after Chain.Close", pid)
	}
	if time.Since(start) > proxyGrace+time.Second {
		t.Fatalf("close took %s", time.Since(start))
	}
}

// TestProxyCommandFails: a command that exits before the banner gets its
// own error, naming the command and carrying its stderr; kinds.Connect.
func TestProxyCommandFails(t *testing.T) {
	addr, kh := kbdServer(t)
	s := settingsFor(addr, "pw", kh)
	s.ProxyCommand = `sh -c "echo 'no route to bastion' >&2; exit 7"`
	_, _, err := dialHop(context.Background(), NewAuthenticator(noPrompter{}), nil, s, "host kbd")
	var pe *ProxyCommandError
	if !errors.As(err, &pe) || !errors.Is(err, kinds.Connect) {
		t.Fatalf("got %v, want a ProxyCommandError marked Connect", err)
	}
	if pe.Command != s.ProxyCommand || !strings.Contains(pe.Stderr, "no route to bastion") ||
		!strings.Contains(err.Error(), "exit status 7") {
		t.Fatalf("error lacks command, stderr or status: %v", err)
	}
	s.ProxyCommand = "/nonexistent/proxy %h"
	if _, _, err := dialHop(context.Background(), NewAuthenticator(noPrompter{}), nil, s, "host kbd"); !errors.As(err, &pe) {
		t.Fatalf("missing program: %v", err)
	}
}

// TestProxyConnClose: a command that ignores SIGTERM and stdin's end is
// killed after the grace; Close waits until it is reaped and is safe to
// call twice; reads after Close fail instead of hanging.
func TestProxyConnClose(t *testing.T) {
	p, err := startProxy(`sh -c "trap '' TERM; while :; do sleep 1; done"`, "h:22", nil)
	if err != nil {
		t.Fatal(err)
	}
	p.handshakeDone()
	pid := p.cmd.Process.Pid
	time.Sleep(100 * time.Millisecond) // let the trap be set
	start := time.Now()
	p.Close()
	p.Close()
	if d := time.Since(start); d < proxyGrace || d > proxyGrace+2*time.Second {
		t.Fatalf("close took %s, want the grace %s", d, proxyGrace)
	}
	if alive(pid) {
		t.Fatalf("process %d survived Close", pid)
	}
	for i := 0; groupLive(pid); i++ { // its children die with it
		if i > 50 {
			t.Fatalf("process group %d survived", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := p.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after close succeeded")
	}
	if p.RemoteAddr().String() != "h:22" {
		t.Fatalf("remote addr %q", p.RemoteAddr())
	}
	q, err := startProxy("cat", "h:22", nil)
	if err != nil {
		t.Fatal(err)
	}
	q.handshakeDone()
	defer q.Close()
	if err := q.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatalf("read deadline: %v", err)
	}
	if _, err := q.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past deadline: %v", err)
	}
	_ = q.SetReadDeadline(time.Time{})
	if _, err := q.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(q, b); err != nil || b[0] != 'x' {
		t.Fatalf("echo through cat: %q %v", b, err)
	}
}

// TestTailBuffer keeps only the end of a long stderr.
func TestTailBuffer(t *testing.T) {
	var tb tailBuffer
	for i := 0; i < 1000; i++ {
		tb.Write([]byte("line " + strconv.Itoa(i) + "\n"))
	}
	got := tb.lines()
	if len(got) > stderrKeep+1000 || !strings.HasSuffix(got, "line 999") || strings.Contains(got, "line 1 |") {
		t.Fatalf("tail: %q...", got[:80])
	}
}

func mustPort(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}
