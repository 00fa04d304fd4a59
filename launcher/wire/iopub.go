package wire

import (
	"context"
	"fmt"

	"github.com/go-zeromq/zmq4"
)

// WaitShutdownReply subscribes to the kernel's IOPub socket at endpoint
// and returns the restart flag of the first validly signed shutdown_reply
// published there: ipykernel broadcasts its answer to every
// shutdown_request on IOPub, so a watcher learns whether whoever asked
// (a kernel manager) means to start the kernel again. Other messages, and
// messages with a bad signature, are skipped. It returns ctx's error once
// ctx ends, and an error when the connection closes first.
func WaitShutdownReply(ctx context.Context, endpoint string, key []byte) (restart bool, err error) {
	c, err := subscribe(ctx, endpoint)
	if err != nil {
		return false, err
	}
	defer c.close()
	return nextShutdownReply(ctx, c, key)
}

// subscribe connects a SUB socket to endpoint, subscribed to everything.
func subscribe(ctx context.Context, endpoint string) (*conn, error) {
	c, err := dialSocket(ctx, endpoint, zmq4.NewSub)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", endpoint, err)
	}
	if err := c.sock.SetOption(zmq4.OptionSubscribe, ""); err != nil {
		c.close()
		return nil, fmt.Errorf("subscribe to %s: %w", endpoint, err)
	}
	return c, nil
}

// nextShutdownReply reads c until a validly signed shutdown_reply, and
// returns its restart flag.
func nextShutdownReply(ctx context.Context, c *conn, key []byte) (bool, error) {
	for ctx.Err() == nil {
		frames, err := c.recv(ctx)
		if err != nil {
			return false, fmt.Errorf("watch %s: %w", c.endpoint, err)
		}
		m, err := Decode(key, frames)
		if err != nil || m.Header.MsgType != "shutdown_reply" {
			continue
		}
		restart, _ := m.Content["restart"].(bool)
		return restart, nil
	}
	return false, ctx.Err()
}
