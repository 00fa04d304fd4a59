package wire

import (
	"context"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher/connfile"
)

// TestShutdownReplyOnIOPub: a real ipykernel publishes its answer to a
// shutdown_request on IOPub, with the request's restart flag, and a
// subscriber reads it there.
func TestShutdownReplyOnIOPub(t *testing.T) {
	k := startKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := subscribe(ctx, k.endpoint(t, connfile.IOPub))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	// A subscription takes a moment to reach the kernel, and what the
	// kernel publishes before is not sent: wait until its status messages
	// (busy, idle around each request) arrive.
	for i := 0; ; i++ {
		if _, err := KernelInfo(ctx, k.endpoint(t, connfile.Shell), k.key()); err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := c.recv(rctx)
		rcancel()
		if err == nil {
			break
		}
		if i == 40 {
			t.Fatalf("nothing published on IOPub: %v", err)
		}
	}
	if err := Shutdown(ctx, k.endpoint(t, connfile.Control), k.key()); err != nil {
		t.Fatal(err)
	}
	restart, err := nextShutdownReply(ctx, c, k.key())
	if err != nil || restart {
		t.Fatalf("shutdown_reply on IOPub: restart %v, %v\n%s", restart, err, k.logText())
	}
}
