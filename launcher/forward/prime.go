package forward

import (
	"errors"
	"io"
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
	conn net.Conn  // nil if the open failed
	down io.Reader // on a greeted one: what the kernel sends after its READY
	at   time.Time
}

// primeSlot is a primed connection, still opening or open, in a
// forward's queue. A greeted one (on a forward that answers ZeroMQ
// handshakes) has had a ZMTP 3.1 NULL greeting sent and the kernel's
// greeting and READY checked and dropped, so only a client whose own
// handshake was answered here can take it, and its READY and messages go
// to the kernel at once.
type primeSlot struct {
	ch      chan primed
	greeted bool
}

// Prime opens counts[name] connections to each named forward's target in
// the background, ahead of the local clients that will use them: the
// first clients' connections then cost no channel open, the round trip a
// client otherwise waits for before its first byte reaches the kernel
// (and the kernel's ZeroMQ greeting, sent as soon as it accepts, is
// already here; on a forward that answers ZeroMQ handshakes, the
// kernel's whole greeting and READY are). A client takes the oldest one
// of its forward that suits it, waiting for it if it is still opening; a
// failed, closed or stale one costs the usual dial. A reconnect
// (SetDialer) and Close drop the unused ones.
func (f *Forwarder) Prime(counts map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	if f.primed == nil {
		f.primed = map[string][]primeSlot{}
	}
	d := f.dialer
	for i, fw := range f.forwards {
		for range counts[fw.Name] {
			slot := primeSlot{ch: make(chan primed, 1), greeted: fw.Socket != "" && !f.plain[i].Load()}
			f.primed[fw.Remote] = append(f.primed[fw.Remote], slot)
			f.wg.Add(1)
			go f.prime(d, i, slot)
		}
	}
}

// prime opens one connection to forward i's target (and greets the kernel
// on a greeted slot) and hands it to the slot; a connection that ends up
// unused is tracked, so Close and DropConnections close it.
func (f *Forwarder) prime(d Dialer, i int, slot primeSlot) {
	defer f.wg.Done()
	fw := &f.forwards[i]
	c, err := d.Dial("tcp", fw.Remote)
	if err != nil {
		slot.ch <- primed{at: time.Now()}
		return
	}
	if !f.track(c) {
		c.Close()
		slot.ch <- primed{at: time.Now()}
		return
	}
	p := primed{conn: c}
	if slot.greeted {
		h := handshake{fromClient: clientGreeting(), told: greetingLen, full: true, minor: 1, socket: fw.Socket}
		if p.down, err = h.meetKernel(c); err != nil {
			if errors.Is(err, errHandshake) {
				f.plain[i].Store(true)
			}
			f.untrack(c)
			p = primed{}
		}
	}
	p.at = time.Now()
	slot.ch <- p
}

// clientGreeting is the ZMTP 3.1 NULL greeting libzmq's clients send
// (pyzmq's, Jupyter's frontends'), which a greeted prime sends for them.
func clientGreeting() []byte { return append(append(signature(), 3), greetingRest(1)...) }

// takePrimed is the oldest primed connection to remote that suits a
// client whose handshake was answered here (answered) or not, nil if
// there is none that can be used. A greeted one also brings what the
// kernel sends after its handshake.
func (f *Forwarder) takePrimed(remote string, answered bool) (net.Conn, io.Reader) {
	f.mu.Lock()
	q := f.primed[remote]
	k := 0
	for k < len(q) && q[k].greeted && !answered {
		k++
	}
	if k == len(q) {
		f.mu.Unlock()
		return nil, nil
	}
	slot := q[k]
	f.primed[remote] = append(q[:k:k], q[k+1:]...)
	f.mu.Unlock()
	p := <-slot.ch // the open is bounded by the dialer (channelOpenTimeout)
	if p.conn == nil {
		return nil, nil
	}
	if time.Since(p.at) > primeFresh || isClosed(p.conn) {
		f.untrack(p.conn)
		return nil, nil
	}
	return p.conn, p.down
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
		for _, slot := range q {
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				if p := <-slot.ch; p.conn != nil {
					f.untrack(p.conn)
				}
			}()
		}
	}
	f.primed = nil
}
