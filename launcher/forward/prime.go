package forward

import (
	"net"
	"time"
)

// primeFresh is how long a primed connection may wait for its local
// client. A ZeroMQ peer drops a connection whose handshake has not come
// within its handshake interval (libzmq's ZMQ_HANDSHAKE_IVL, 30 s by
// default); older ones are closed and a new one is dialled instead.
var primeFresh = 20 * time.Second

// primed is one connection opened before a local client asked for it.
type primed struct {
	conn net.Conn // nil if the open failed
	at   time.Time
}

// Prime opens counts[name] connections to each named forward's target in
// the background, ahead of the local clients that will use them: the
// first clients' connections then cost no channel open, the round trip a
// client otherwise waits for before its first byte reaches the kernel
// (and the kernel's ZeroMQ greeting, sent as soon as it accepts, is
// already here). A client takes the oldest one of its forward, waiting
// for it if it is still opening; a failed, closed or stale one costs the
// usual dial. A reconnect (SetDialer) and Close drop the unused ones.
func (f *Forwarder) Prime(counts map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	if f.primed == nil {
		f.primed = map[string][]chan primed{}
	}
	d := f.dialer
	for _, fw := range f.forwards {
		for range counts[fw.Name] {
			ch := make(chan primed, 1)
			f.primed[fw.Remote] = append(f.primed[fw.Remote], ch)
			f.wg.Add(1)
			go f.prime(d, fw.Remote, ch)
		}
	}
}

// prime opens one connection to remote and hands it to ch; a connection
// that ends up unused is tracked, so Close and DropConnections close it.
func (f *Forwarder) prime(d Dialer, remote string, ch chan<- primed) {
	defer f.wg.Done()
	c, err := d.Dial("tcp", remote)
	if err != nil {
		ch <- primed{at: time.Now()}
		return
	}
	if !f.track(c) {
		c.Close()
		c = nil
	}
	ch <- primed{conn: c, at: time.Now()}
}

// takePrimed is the next primed connection to remote, nil if there is
// none that can be used.
func (f *Forwarder) takePrimed(remote string) net.Conn {
	f.mu.Lock()
	q := f.primed[remote]
	if len(q) == 0 {
		f.mu.Unlock()
		return nil
	}
	ch := q[0]
	f.primed[remote] = q[1:]
	f.mu.Unlock()
	p := <-ch // the open is bounded by the dialer (channelOpenTimeout)
	if p.conn == nil {
		return nil
	}
	if time.Since(p.at) > primeFresh || isClosed(p.conn) {
		f.untrack(p.conn)
		return nil
	}
	return p.conn
}

// closedOf is closed once the server closes c, for an SSH channel that
// knows it (SSH's connections); nil, never closed, for others.
func closedOf(c net.Conn) <-chan struct{} {
	if cc, ok := c.(interface{ Closed() <-chan struct{} }); ok {
		return cc.Closed()
	}
	return nil
}

// isClosed reports whether the server already closed c.
func isClosed(c net.Conn) bool {
	select {
	case <-closedOf(c):
		return true
	default:
		return false
	}
}

// dropPrimed forgets the unused primed connections and closes them,
// also those still opening once they are open. Called with f.mu held.
func (f *Forwarder) dropPrimed() {
	for _, q := range f.primed {
		for _, ch := range q {
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				if p := <-ch; p.conn != nil {
					f.untrack(p.conn)
				}
			}()
		}
	}
	f.primed = nil
}
