package launcher

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

// tcpDialer dials directly: the forwarder's logic without SSH.
type tcpDialer struct{}

func (tcpDialer) Dial(network, addr string) (net.Conn, error) {
	return net.DialTimeout(network, addr, 5*time.Second)
}

// TestForwardHalfClose: a client that half-closes still gets the server's
// answer, which the server only sends after seeing EOF; and the listener is
// on 127.0.0.1 at a port other than the target's.
func TestForwardHalfClose(t *testing.T) {
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		c, err := srv.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		data, _ := io.ReadAll(c) // until the client's half-close arrives
		_, _ = c.Write([]byte("got " + string(data)))
	}()
	port := srv.Addr().(*net.TCPAddr).Port
	fw, err := listenForwards(tcpDialer{}, []Target{{Name: "shell_port", Host: "127.0.0.1", Port: port}})
	if err != nil {
		t.Fatal(err)
	}
	local := fw.forwards[0].Local
	if !local.IP.Equal(net.IPv4(127, 0, 0, 1)) || local.Port == port {
		t.Fatalf("listener %s: want 127.0.0.1 and a port other than %d", local, port)
	}
	c, err := net.Dial("tcp", local.String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "got hello" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	c.Close()
	if err := fw.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", local.String(), time.Second); err == nil {
		t.Fatal("listener still accepts after close")
	}
}

// TestForwardDialError: a refused forward is remembered to explain a
// failed ready check.
func TestForwardDialError(t *testing.T) {
	// Nothing listens on 127.0.0.3; it must not be 127.0.0.1, where the
	// forwarder's own new listener could get the same port and dial itself.
	fw, err := listenForwards(tcpDialer{}, []Target{{Name: "hb_port", Host: "127.0.0.3", Port: 9}})
	if err != nil {
		t.Fatal(err)
	}
	defer fw.close()
	c, err := net.Dial("tcp", fw.forwards[0].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.ReadAll(c) // closed by the forwarder once the dial fails
	c.Close()
	if err := fw.dialError(); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dialError = %v", err)
	}
}

// TestDialHandshakeDeadline: a host that accepts TCP but never speaks SSH
// fails after ConnectTimeout instead of hanging kq.
func TestDialHandshakeDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			held <- c // accepted, never answered
		}
	}()
	defer func() {
		select {
		case c := <-held:
			c.Close()
		default:
		}
	}()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	s := profiles.SSHSettings{HostName: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, User: "u",
		IdentityFiles: []string{keyFile}, ConnectTimeout: 300 * time.Millisecond}
	done := make(chan error, 1)
	go func() {
		_, err := dialHop(context.Background(), newAuthenticator(noPrompter{}), nil, s, "host h")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errConnect) || !strings.Contains(err.Error(), "handshake timed out") {
			t.Fatalf("got %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dial did not honour ConnectTimeout")
	}
}

// TestWriteLocalFile: the file is created 0600 in a 0700 dir, never over an
// existing file (a second one gets a numbered name), and a dir others can
// enter is warned about.
func TestWriteLocalFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "runtime")
	path, warning, err := writeLocalFile(dir, "k.json", []byte("{}"))
	if err != nil || warning != "" {
		t.Fatal(err, warning)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %o (%v)", p, st.Mode().Perm(), want, err)
		}
	}
	second, _, err := writeLocalFile(dir, "k.json", []byte(`{"second":1}`))
	if err != nil || second != filepath.Join(dir, "k-2.json") {
		t.Errorf("second file: %q %v, want k-2.json", second, err)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != "{}" {
		t.Errorf("an existing file was overwritten: %q %v", data, err)
	}
	open := t.TempDir()
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, warning, err := writeLocalFile(open, "k.json", []byte("{}")); err != nil || !strings.Contains(warning, "0755") {
		t.Errorf("no warning for a 0755 runtime dir: %q %v", warning, err)
	}
}

// running is false for a process that is gone or a zombie (init may reap
// the orphaned kernel late).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	s := string(b)
	if i := strings.LastIndex(s, ") "); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func TestForwardHost(t *testing.T) {
	tests := []struct{ kernelIP, fileIP, want string }{
		{"", "", "127.0.0.1"},
		{"", "10.0.0.7", "127.0.0.1"}, // default: the kernel is on the host's loopback
		{"auto", "10.0.0.7", "10.0.0.7"},
		{"auto", "0.0.0.0", "127.0.0.1"},
		{"auto", "", "127.0.0.1"},
		{"10.2.0.7", "127.0.0.1", "10.2.0.7"},
	}
	for _, tt := range tests {
		if got := forwardHost(tt.kernelIP, tt.fileIP); got != tt.want {
			t.Errorf("forwardHost(%q, %q) = %q, want %q", tt.kernelIP, tt.fileIP, got, tt.want)
		}
	}
}
