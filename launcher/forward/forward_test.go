package forward

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
	fw, err := Listen(tcpDialer{}, []Target{{Name: "shell_port", Host: "127.0.0.1", Port: port}})
	if err != nil {
		t.Fatal(err)
	}
	local := fw.Forwards()[0].Local
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
	if err := fw.Close(); err != nil {
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
	fw, err := Listen(tcpDialer{}, []Target{{Name: "hb_port", Host: "127.0.0.3", Port: 9}})
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	c, err := net.Dial("tcp", fw.Forwards()[0].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.ReadAll(c) // closed by the forwarder once the dial fails
	c.Close()
	if err := fw.DialError(); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dialError = %v", err)
	}
}

// flakyListener fails its first n Accepts with EMFILE, as a process out of
// file descriptors does.
type flakyListener struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	fail := l.n > 0
	l.n--
	l.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestForwardAcceptTemporary: a listener whose Accept fails with EMFILE a
// few times keeps serving, and closing it still ends the forward cleanly.
func TestForwardAcceptTemporary(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		c, err := echo.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln, n: 5}
	fw := serve(tcpDialer{}, []Target{{Name: "shell_port", Host: "127.0.0.1",
		Port: echo.Addr().(*net.TCPAddr).Port}}, []net.Listener{fl})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("through the forward after EMFILE: %q %v", buf, err)
	}
	c.Close()
	if err := fw.DialError(); err != nil {
		t.Errorf("a temporary accept error was recorded as a failure: %v", err)
	}
	if err := fw.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// TestForwardCloseDuringBackoff: a forward pausing after Accept errors
// ends at once when closed.
func TestForwardCloseDuringBackoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fw := serve(tcpDialer{}, []Target{{Name: "hb_port", Host: "127.0.0.1", Port: 9}},
		[]net.Listener{&flakyListener{Listener: ln, n: 1 << 30}})
	time.Sleep(50 * time.Millisecond) // well into the backoff
	done := make(chan error, 1)
	go func() { done <- fw.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("close waited on the accept backoff")
	}
}

// hangingDialer never answers until released, like a channel open on a
// dead link.
type hangingDialer struct{ release chan struct{} }

func (d hangingDialer) Dial(string, string) (net.Conn, error) {
	<-d.release
	return nil, errors.New("released")
}

// TestForwardCloseBounded: Close gives up waiting for a relay stuck in
// its dial after relayWait, instead of hanging the teardown.
func TestForwardCloseBounded(t *testing.T) {
	d := hangingDialer{release: make(chan struct{})}
	defer close(d.release)
	fw, err := Listen(d, []Target{{Name: "control_port", Host: "127.0.0.1", Port: 9}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", fw.Forwards()[0].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // the relay is in its dial
	done := make(chan error, 1)
	go func() { done <- fw.Close() }()
	select {
	case err := <-done:
		if !errors.Is(err, errRelaysStuck) {
			t.Fatalf("close: %v, want errRelaysStuck", err)
		}
	case <-time.After(relayWait + 10*time.Second):
		t.Fatal("close not bounded")
	}
}
