package forward

import (
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher/internal/sshtest"
	"golang.org/x/crypto/ssh"
)

// The forwarding path's benchmarks: bytes from a "kernel" on the server
// side through an in-process SSH connection and the Forwarder to a local
// reader, as iopub output travels, and small round trips, as execute
// requests do. b.SetBytes gives bytes/s; allocations are per message
// (both SSH ends run in this process, so theirs count too). Run with
//
//	go test ./launcher/forward -run '^$' -bench Forward -benchmem

// benchSizes are the message sizes: ZeroMQ's 64 KiB and one large one.
var benchSizes = []int{64 << 10, 4 << 20}

// forwardTo is a Forwarder, through an in-process SSH connection using
// ciphers (nil: x/crypto's defaults), to one target at addr; it returns
// the local address to dial.
func forwardTo(b *testing.B, addr string, ciphers []string) string {
	b.Helper()
	c := sshtest.Connect(b, sshtest.Server{AnswerRequests: true, Ciphers: ciphers,
		Channel: func(nc ssh.NewChannel) { go sshtest.DirectTCPIP(nc) }})
	tcp := addrOf(b, addr)
	f, err := Listen(SSH{Client: c}, []Target{{Name: "iopub_port", Host: "127.0.0.1", Port: tcp.Port}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f.Forwards()[0].Local.String()
}

func addrOf(b *testing.B, addr string) *net.TCPAddr {
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// source is a "kernel" that writes messages of size bytes to each
// connection until it is closed.
func source(b *testing.B, size int) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		msg := make([]byte, size)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					if _, err := c.Write(msg); err != nil {
						return
					}
				}
			}()
		}
	}()
	b.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// echo is a "kernel" that answers every byte it gets.
func echo(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	b.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// readMessages reads b.N messages of size bytes from local.
func readMessages(b *testing.B, local string, size int) {
	conn, err := net.Dial("tcp", local)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, size)
	if _, err := io.ReadFull(conn, buf); err != nil { // the channel is open
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for range b.N {
		if _, err := io.ReadFull(conn, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCPU(b, cpu, size)
}

// cpuTime is the CPU time this process has used (user and system): on a
// shared machine it varies less than the wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds the CPU time per byte since start, both SSH ends and the
// forwarder together, as cpu-ns/B.
func reportCPU(b *testing.B, start time.Duration, size int) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/float64(size), "cpu-ns/B")
}

// BenchmarkForwardDownstream: kernel-to-frontend bytes (iopub output)
// through the forward, per message size.
func BenchmarkForwardDownstream(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			readMessages(b, forwardTo(b, source(b, size), nil), size)
		})
	}
}

// BenchmarkForwardCipher: the downstream path with each cipher x/crypto
// offers, at 64 KiB, so the default order can be checked on a machine.
func BenchmarkForwardCipher(b *testing.B) {
	for _, c := range []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305, ssh.CipherAES128CTR} {
		b.Run(c, func(b *testing.B) {
			readMessages(b, forwardTo(b, source(b, 64<<10), []string{c}), 64<<10)
		})
	}
}

// BenchmarkForwardUpstream: frontend-to-kernel bytes through the
// forward: each message is written and then echoed back whole.
func BenchmarkForwardUpstream(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			conn, err := net.Dial("tcp", forwardTo(b, echo(b), nil))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			msg, back := make([]byte, size), make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for range b.N {
				go func() { _, _ = conn.Write(msg) }()
				if _, err := io.ReadFull(conn, back); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportCPU(b, cpu, size)
		})
	}
}

// BenchmarkForwardRoundTrip: one small request and its answer, as an
// execute_request and its reply travel.
func BenchmarkForwardRoundTrip(b *testing.B) {
	conn, err := net.Dial("tcp", forwardTo(b, echo(b), nil))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	msg := make([]byte, 512)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := conn.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}
