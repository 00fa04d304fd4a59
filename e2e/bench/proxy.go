package main

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// proxy is a TCP relay that delays every chunk by a fixed one-way time
// (so a round trip through it takes 2×delay more; this kernel has no
// netem) without limiting throughput, and counts round trips: each time
// bytes from the server follow bytes from the client on a connection.
type proxy struct {
	ln     net.Listener
	target string
	delay  time.Duration
	turns  atomic.Int64
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// chunk is one read, due for writing at due.
type chunk struct {
	data []byte
	due  time.Time
}

// Bounds of a relay direction: chunks queued at most (so at most
// queueLen×readSize bytes held), and the dial to the target.
const (
	queueLen     = 512
	readSize     = 64 << 10
	proxyDialMax = 5 * time.Second
)

// startProxy listens on 127.0.0.1 and relays to target with delay each
// way; close ends it.
func startProxy(t *runner, target string, delay time.Duration) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &proxy{ln: ln, target: target, delay: delay, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.relay(c)
	}
}

func (p *proxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
}

// relay joins one client connection to a new one to the target.
func (p *proxy) relay(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, proxyDialMax)
	if err != nil {
		client.Close()
		return
	}
	p.track(client, server)
	p.turns.Add(1)        // the TCP handshake
	var last atomic.Int32 // 1: client spoke last, 2: server did
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pump(client, server, 1, &last) }()
	go func() { defer wg.Done(); p.pump(server, client, 2, &last) }()
	wg.Wait()
	client.Close()
	server.Close()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// pump copies src to dst, each chunk delayed; dir 2 (server to client)
// after dir 1 counts a round trip.
func (p *proxy) pump(src, dst net.Conn, dir int32, last *atomic.Int32) {
	q := make(chan chunk, queueLen)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			time.Sleep(time.Until(c.due))
			if _, err := dst.Write(c.data); err != nil {
				src.Close()
				for range q {
				}
				return
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	for {
		buf := make([]byte, readSize)
		n, err := src.Read(buf)
		if n > 0 {
			if prev := last.Swap(dir); dir == 2 && prev == 1 {
				p.turns.Add(1)
			}
			q <- chunk{data: buf[:n], due: time.Now().Add(p.delay)}
		}
		if err != nil {
			break
		}
	}
	close(q)
	<-done
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
