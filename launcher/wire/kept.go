package wire

import (
	"context"
	"errors"
	"net"
	"sync"
)

// Conn is a DEALER connection kept open to one kernel socket, so that a
// later request costs one round trip instead of a connection's: through
// a tunnel, a channel open and the ZMTP handshake are three more. The
// teardown's shutdown_request uses one on the control socket.
type Conn struct {
	c        *conn
	cancel   context.CancelFunc
	gone     chan struct{} // closed when the connection has failed
	goneOnce sync.Once
}

// Dial connects to endpoint, trying as long as ctx lasts; the connection
// then lives until Close, whatever becomes of ctx.
func Dial(ctx context.Context, endpoint string) (*Conn, error) {
	k := &Conn{gone: make(chan struct{})}
	life, cancel := context.WithCancel(context.WithValue(context.Background(), watchKey{}, k.watch))
	stop := context.AfterFunc(ctx, cancel) // the attempts end with ctx
	c, err := dial(life, endpoint)
	if !stop() || err != nil {
		cancel()
		if err == nil {
			c.close()
			err = ctx.Err()
		}
		return nil, err
	}
	k.c, k.cancel = c, cancel
	return k, nil
}

// Alive says whether the connection still stands: it has not failed (the
// kernel went, or its tunnel) and has not been closed.
func (k *Conn) Alive() bool {
	select {
	case <-k.gone:
		return false
	default:
		return true
	}
}

// watch wraps the socket's connection so that its failure is noted: zmq4
// drops a failed connection without a word and would queue a request
// for no one.
func (k *Conn) watch(c net.Conn) net.Conn {
	return watched{Conn: c, fail: func() { k.goneOnce.Do(func() { close(k.gone) }) }}
}

// watched is a connection whose failed reads and writes call fail.
type watched struct {
	net.Conn
	fail func()
}

func (w watched) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if err != nil {
		w.fail()
	}
	return n, err
}

func (w watched) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	if err != nil {
		w.fail()
	}
	return n, err
}

func (w watched) Close() error {
	w.fail()
	return w.Conn.Close()
}

// Close closes the connection.
func (k *Conn) Close() {
	k.c.close()
	k.cancel()
}

// Shutdown is Shutdown on the kept connection. It is the connection's
// last use: when ctx ends first, the connection is closed to end the wait.
func (k *Conn) Shutdown(ctx context.Context, key []byte) error {
	stop := context.AfterFunc(ctx, k.Close)
	defer stop()
	err := k.c.shutdown(ctx, key)
	if err != nil && ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return err
}
