package launcher

import (
	"bufio"
	"context"
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
	"runtime"
	"strconv"
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

// TestSupervisorScript runs the remote program with the local sh: quoting
// of workdir and env survives hostile values, the protocol reports the
// file, and "kill" stops the kernel and removes its files.
func TestSupervisorScript(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs a POSIX sh")
	}
	dir := t.TempDir()
	rt := filepath.Join(dir, "run time")
	work := filepath.Join(dir, "it's a $(dir)")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(dir, "fake.sh")
	if err := os.WriteFile(fake, []byte(`printf '{"pwd": "%s", "v": "%s"}\n' "$(pwd)" "$KQ_V" > "$2"
exec sleep 60
`), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := KernelSpec{Command: "/bin/sh " + shQuote(fake), RuntimeDir: rt, Workdir: work,
		Env: map[string]string{"KQ_V": `a'b"c $(x) \n`}, ID: "test-id", Linger: time.Minute}
	cmd := exec.Command("/bin/sh", "-c", remoteProgram(remoteVars{rt: rt, id: spec.ID,
		linger: spec.Linger, start: spec.startScript()}, "op_start"))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("supervisor ended early")
			}
			return l
		case <-time.After(20 * time.Second):
			t.Fatal("supervisor silent")
		}
		return ""
	}
	var got []string
	for l := next(); l != tagEnd; l = next() {
		got = append(got, l)
	}
	all := strings.Join(got, "\n")
	wantFile := filepath.Join(rt, "kernel-kq-test-id.json")
	if !strings.Contains(all, tagFile+wantFile) || !strings.Contains(all, tagPID) {
		t.Fatalf("protocol:\n%s", all)
	}
	if !strings.Contains(all, `"pwd": "`+work+`"`) || !strings.Contains(all, `"v": "a'b"c $(x) \n"`) {
		t.Fatalf("workdir or env mangled:\n%s", all)
	}
	if st, err := os.Stat(rt); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("runtime dir: %v %v", st, err)
	}
	if _, err := io.WriteString(stdin, "kill\n"); err != nil {
		t.Fatal(err)
	}
	for l := next(); l != tagStopped; l = next() {
	}
	if _, err := os.Stat(wantFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("connection file not removed: %v", err)
	}
	_ = cmd.Wait()
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

// TestWatchdogLinger runs remote.sh's op_start with the local sh and no kq
// attached (stdin closed at once): the watchdog stops the kernel once
// linger passes, even when someone has removed the runtime dir meanwhile.
func TestWatchdogLinger(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs a POSIX sh")
	}
	rt := filepath.Join(t.TempDir(), "rt")
	spec := KernelSpec{Command: "sleep 300 #", ID: "wd", Linger: 4 * time.Second}
	cmd := exec.Command("/bin/sh", "-c", remoteProgram(remoteVars{rt: rt, id: spec.ID, linger: spec.Linger,
		start: spec.startScript()}, "op_start"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	pid := 0
	for pid == 0 && sc.Scan() {
		if strings.HasPrefix(sc.Text(), tagPID) {
			pid, _ = strconv.Atoi(strings.TrimPrefix(sc.Text(), tagPID))
		}
	}
	go func() { // the hold loop ends at once: its stdin is empty
		for sc.Scan() {
		}
	}()
	defer cmd.Wait()
	if pid == 0 {
		t.Fatal("no kernel pid")
	}
	proc, _ := os.FindProcess(pid)
	defer proc.Kill()
	// The remote side may still be writing files there: retry, bounded.
	for i := 0; i < 50; i++ {
		if err = os.RemoveAll(rt); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(spec.Linger + 10*time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("kernel %d still running %s after linger", pid, spec.Linger)
		}
		time.Sleep(200 * time.Millisecond)
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
