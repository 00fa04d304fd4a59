package launcher

import (
	"context"
	"fmt"
	"time"

	"github.com/kq-dev/kq/launcher/wire"
)

// controlDialTimeout bounds opening the kept control connection.
const controlDialTimeout = 10 * time.Second

// keptControl is a connection to the kernel's control port, opened in the
// background once the kernel is ready, so that the teardown's
// shutdown_request costs one round trip instead of four (the tunnel's
// channel open and the ZMTP handshake): through a slow link, most of
// what kq adds to the kernel's own exit.
type keptControl struct {
	ready chan struct{} // closed once the dial has ended
	conn  *wire.Conn    // nil if it failed; read after ready
	link  *link         // the link it was opened on
}

// keepControl opens the kept control connection of a kernel this session
// stops at its end.
func (s *session) keepControl() {
	if !s.ownsKernel() {
		return
	}
	kc := &keptControl{ready: make(chan struct{}), link: s.now()}
	s.control = kc
	endpoint := fmt.Sprintf("tcp://127.0.0.1:%d", s.localPort("control_port"))
	go func() {
		defer close(kc.ready)
		ctx, cancel := context.WithTimeout(context.Background(), controlDialTimeout)
		defer cancel()
		if c, err := wire.Dial(ctx, endpoint); err == nil {
			kc.conn = c
		}
	}()
}

// keptControl returns the kept control connection if it can be trusted
// now: open, alive, and on the live link (a reconnect dropped it). The
// caller owns it from then on; any other is closed, now or once its dial
// ends.
func (s *session) keptControl() *wire.Conn {
	kc := s.control
	if kc == nil {
		return nil
	}
	s.control = nil
	select {
	case <-kc.ready:
	default:
		go func() {
			<-kc.ready
			if kc.conn != nil {
				kc.conn.Close()
			}
		}()
		return nil
	}
	switch {
	case kc.conn == nil:
		return nil
	case !kc.conn.Alive() || kc.link != s.now():
		kc.conn.Close()
		return nil
	}
	return kc.conn
}
