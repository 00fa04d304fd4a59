package forward

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// accept loops, the relays, the channel opens and the in-process SSH
// server must all clean up. zmq4's PUB (TestZMTPSubscriber's kernel)
// leaves its writer goroutine behind when closed; that one is zmq4's.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/go-zeromq/zmq4.(*pubMWriter).run"))
}
