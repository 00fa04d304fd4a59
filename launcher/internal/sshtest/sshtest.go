// Package sshtest is an in-process x/crypto/ssh server for the unit tests
// of the packages under launcher that need an SSH connection whose far end
// misbehaves on purpose (a silently dead link, a refused forward). It
// never stands in for the real sshd of the end-to-end tests.
package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Server says how the server behaves once the handshake is done.
type Server struct {
	// AnswerRequests makes it answer global requests that want a reply,
	// with a failure, as OpenSSH answers keepalive@openssh.com; without
	// it no request is ever answered, like the far end of a dead link.
	AnswerRequests bool
	// Channel decides each channel open; nil holds every one, never
	// accepted nor rejected, like the far end of a dead link.
	Channel func(ssh.NewChannel)
	// Ciphers, when set, is the only cipher list of both sides.
	Ciphers []string
}

// Dead is a connection to a server that completes the handshake and then
// never answers a channel open; it answers keepalives only when answer is
// set.
func Dead(t testing.TB, answer bool) *ssh.Client {
	return Connect(t, Server{AnswerRequests: answer})
}

// Reject is a connection to a server that answers keepalives and rejects
// every channel open with reason, as an sshd with AllowTcpForwarding no
// rejects direct-tcpip with ssh.Prohibited.
func Reject(t testing.TB, reason ssh.RejectionReason) *ssh.Client {
	return Connect(t, Server{AnswerRequests: true, Channel: func(nc ssh.NewChannel) {
		_ = nc.Reject(reason, "sshtest")
	}})
}

// Connect starts a server behaving as s, with no client authentication,
// and returns the client of its one connection. Everything ends when the
// test does.
func Connect(t testing.TB, s Server) *ssh.Client {
	t.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.Ciphers = s.Ciphers
	cfg.AddHostKey(hostSigner)
	cConn, sConn := pipe(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		serve(sConn, cfg, s)
	}()
	ccfg := &ssh.ClientConfig{User: "u", HostKeyCallback: ssh.FixedHostKey(hostSigner.PublicKey())}
	ccfg.Ciphers = s.Ciphers
	c, chans, reqs, err := ssh.NewClientConn(cConn, "sshtest", ccfg)
	if err != nil {
		sConn.Close()
		wg.Wait()
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

// pipe is a connected pair of TCP connections on 127.0.0.1.
func pipe(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	return client, server
}

// serve runs the server side of one connection until it ends.
func serve(conn net.Conn, cfg *ssh.ServerConfig, s Server) {
	_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for nc := range chans {
			if s.Channel != nil {
				s.Channel(nc)
			}
		}
	}()
	for req := range reqs {
		if s.AnswerRequests && req.WantReply {
			_ = req.Reply(false, nil)
		}
	}
	wg.Wait()
}

// DirectTCPIP serves a direct-tcpip channel open as sshd does (run it in
// a goroutine of its own from Server.Channel): it dials
// the address asked for and relays both ways, passing EOF on, until both
// ends are done; an open it cannot dial is rejected as ssh.ConnectionFailed.
// Other channel types are rejected as ssh.UnknownChannelType.
func DirectTCPIP(nc ssh.NewChannel) {
	if nc.ChannelType() != "direct-tcpip" {
		_ = nc.Reject(ssh.UnknownChannelType, nc.ChannelType())
		return
	}
	var p struct {
		Addr     string
		Port     uint32
		OrigAddr string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	conn, err := net.Dial("tcp", net.JoinHostPort(p.Addr, strconv.Itoa(int(p.Port))))
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		conn.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(ch, conn)
		_ = ch.CloseWrite()
	}()
	_, _ = io.Copy(conn, ch)
	_ = conn.(*net.TCPConn).CloseWrite()
	<-done
	ch.Close()
	conn.Close()
}
