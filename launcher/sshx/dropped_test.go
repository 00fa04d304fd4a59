package sshx

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kq-dev/kq/profiles"
)

// TestDroppedBeforeBannerRetried: a server that closes connections before
// it says anything (sshd past MaxStartups) is dialled again with backoff,
// each attempt said with -v; a failure of any other kind is not retried.
func TestDroppedBeforeBannerRetried(t *testing.T) {
	port, accepted := fakeServer(t, func(c net.Conn, n int32) {
		go func() { // sshd's drop: accepted, then closed unheard
			time.Sleep(20 * time.Millisecond)
			if n%2 == 0 {
				c.Write([]byte("Exceeded MaxStartups\r\n")) // what sshd >= 8.0 says
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}()
	})
	s := profiles.SSHSettings{Alias: "dropper", HostName: "127.0.0.1", Port: port, User: "u",
		StrictHostKeyChecking: "yes", ConnectTimeout: 5 * time.Second}
	a := NewAuthenticator(NoPrompts())
	var said []string
	a.Verbose = func(format string, args ...any) { said = append(said, format) }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, err := dialRetrying(ctx, a, nil, s, "host dropper")
	var de *droppedError
	if !errors.As(err, &de) {
		t.Fatalf("err %v: want a droppedError after the retries", err)
	}
	if n := accepted.Load(); n != droppedRetries+1 {
		t.Errorf("%d connections; want %d (one and %d retries)", n, droppedRetries+1, droppedRetries)
	}
	if !strings.Contains(err.Error(), "before its banner") {
		t.Errorf("the error does not say why: %v", err)
	}
	if len(said) != droppedRetries {
		t.Errorf("-v said %d retries, want %d", len(said), droppedRetries)
	}
}

// TestClosedAfterBannerNotRetried: a server that sent its banner and then
// closed failed for another reason; kq says so at once.
func TestClosedAfterBannerNotRetried(t *testing.T) {
	port, accepted := fakeServer(t, func(c net.Conn, _ int32) {
		c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
		c.Close()
	})
	s := profiles.SSHSettings{Alias: "closer", HostName: "127.0.0.1", Port: port, User: "u",
		StrictHostKeyChecking: "yes", ConnectTimeout: 5 * time.Second}
	_, _, err := dialRetrying(context.Background(), NewAuthenticator(NoPrompts()), nil, s, "host closer")
	var de *droppedError
	if err == nil || errors.As(err, &de) || accepted.Load() != 1 {
		t.Fatalf("err %v after %d connections: want one attempt, not a retried drop", err, accepted.Load())
	}
}

// fakeServer accepts TCP connections on 127.0.0.1 and hands each to
// serve; it returns the port and the number accepted so far.
func fakeServer(t *testing.T, serve func(c net.Conn, n int32)) (int, *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := &atomic.Int32{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			serve(c, accepted.Add(1))
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, accepted
}
