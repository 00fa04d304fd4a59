package launcher

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// deadServer is an in-process SSH server that completes the handshake and
// then, like the far end of a silently dead link, never answers a channel
// open; it answers global requests (keepalives) only when answer is set.
// It returns the client; everything ends when the test does.
func deadServer(t *testing.T, answer bool) *ssh.Client {
	t.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cConn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sConn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, chans, reqs, err := ssh.NewServerConn(sConn, cfg)
		if err != nil {
			return
		}
		go func() {
			for range chans { // held, never accepted nor rejected
			}
		}()
		for req := range reqs {
			if answer && req.WantReply {
				_ = req.Reply(false, nil) // OpenSSH's answer to keepalive@openssh.com
			}
		}
	}()
	c, chans, reqs, err := ssh.NewClientConn(cConn, "dead-server", &ssh.ClientConfig{User: "u",
		HostKeyCallback: ssh.InsecureIgnoreHostKey()}) // test-only in-process server
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(c, chans, reqs)
	t.Cleanup(func() {
		client.Close()
		sConn.Close()
		wg.Wait()
	})
	return client
}

// TestOpenChannelBounded: a channel open the server never answers ends
// with the deadline, where x/crypto alone would wait for ever.
func TestOpenChannelBounded(t *testing.T) {
	c := deadServer(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		conn, err := sshDialer{c}.dial(ctx, "127.0.0.1:9")
		if conn != nil {
			conn.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("dial: %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("channel open not bounded by its context")
	}
}

// TestProbeForwardingBounded: a host that never answers the forwarding
// probe fails the probe instead of hanging kq.
func TestProbeForwardingBounded(t *testing.T) {
	c := deadServer(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- probeForwarding(ctx, c, "host h") }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a probe nobody answered passed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("probe not bounded by its context")
	}
}

// TestLinkWatch: on a link that stops answering, the watch finds it dead
// within interval × (count + 1) and closes the connection, and a question
// at the end is answered "dead" within interval × count; a live link
// answers.
func TestLinkWatch(t *testing.T) {
	const interval, count = 100 * time.Millisecond, 2
	const slack = 5 * time.Second
	t.Run("dead", func(t *testing.T) {
		c := deadServer(t, false)
		w := watchLink(&chain{clients: []*ssh.Client{c}}, interval, count)
		defer w.stop()
		select {
		case <-w.dead:
		case <-time.After(interval*(count+1) + slack):
			t.Fatal("dead link not found")
		}
		if !errors.Is(w.err, errLinkDead) {
			t.Fatalf("err = %v", w.err)
		}
		closed := make(chan error, 1)
		go func() { closed <- c.Wait() }()
		select {
		case <-closed:
		case <-time.After(slack):
			t.Fatal("the watch did not close the dead connection")
		}
	})
	t.Run("answers dead", func(t *testing.T) {
		c := deadServer(t, false)
		w := watchLink(&chain{clients: []*ssh.Client{c}}, time.Hour, count) // no keepalive of its own yet
		defer w.stop()
		w.interval = interval
		t0 := time.Now()
		if err := w.answers(); !errors.Is(err, errLinkDead) {
			t.Fatalf("answers() = %v on a dead link", err)
		}
		if d := time.Since(t0); d > interval*count+slack {
			t.Fatalf("answers() took %s", d)
		}
	})
	t.Run("answers alive", func(t *testing.T) {
		c := deadServer(t, true)
		w := watchLink(&chain{clients: []*ssh.Client{c}}, interval, count)
		defer w.stop()
		if err := w.answers(); err != nil {
			t.Fatalf("answers() = %v on a live link", err)
		}
	})
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
	fw := serveForwards(tcpDialer{}, []Target{{Name: "shell_port", Host: "127.0.0.1",
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
	if err := fw.dialError(); err != nil {
		t.Errorf("a temporary accept error was recorded as a failure: %v", err)
	}
	if err := fw.close(); err != nil {
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
	fw := serveForwards(tcpDialer{}, []Target{{Name: "hb_port", Host: "127.0.0.1", Port: 9}},
		[]net.Listener{&flakyListener{Listener: ln, n: 1 << 30}})
	time.Sleep(50 * time.Millisecond) // well into the backoff
	done := make(chan error, 1)
	go func() { done <- fw.close() }()
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

// TestForwardCloseBounded: close gives up waiting for a relay stuck in
// its dial after relayWait, instead of hanging the teardown.
func TestForwardCloseBounded(t *testing.T) {
	d := hangingDialer{release: make(chan struct{})}
	defer close(d.release)
	fw, err := listenForwards(d, []Target{{Name: "control_port", Host: "127.0.0.1", Port: 9}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", fw.forwards[0].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // the relay is in its dial
	done := make(chan error, 1)
	go func() { done <- fw.close() }()
	select {
	case err := <-done:
		if !errors.Is(err, errRelaysStuck) {
			t.Fatalf("close: %v, want errRelaysStuck", err)
		}
	case <-time.After(relayWait + 10*time.Second):
		t.Fatal("close not bounded")
	}
}
