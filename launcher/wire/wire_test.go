package wire

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// checkLeaks verifies, after every other cleanup of t has run (cleanups run
// last-registered first), that no goroutine started since the call outlives
// the test. Goroutines that already existed (a kernel's cmd.Wait) are ignored.
func checkLeaks(t *testing.T) {
	t.Helper()
	existing := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, existing) })
}

func TestSign(t *testing.T) {
	tests := []struct {
		name  string
		key   string
		parts []string
		want  string
	}{
		// RFC 4231 test case 2, split across parts: the signature is over
		// the concatenation, exactly as Jupyter feeds the four frames in.
		{"rfc4231 case 2", "Jefe", []string{"what do ya want ", "for nothing?"},
			"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{"rfc4231 case 2 one part", "Jefe", []string{"what do ya want for nothing?"},
			"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		// jupyter_client.session.Session(key=...).sign(parts), computed with
		// /usr/bin/python3 (jupyter_client 7.4): the four frames of a request.
		{"jupyter_client Session.sign", "ea463f19-f7fe740ef85acc37401ffdfc",
			[]string{`{"msg_id":"a","msg_type":"kernel_info_request"}`, "{}", "{}", "{}"},
			"a4d7e76c58a91420477645a015687ba2c3fa1c7d2c4f9aaa7402296bbb3cfe11"},
		{"empty key means unsigned", "", []string{"anything"}, ""},
		{"nil parts", "key", nil, "5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts := make([][]byte, len(tt.parts))
			for i, p := range tt.parts {
				parts[i] = []byte(p)
			}
			if got := Sign([]byte(tt.key), parts...); got != tt.want {
				t.Errorf("Sign = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestEncodeDecode(t *testing.T) {
	key := []byte("encode-decode-key-5f1c")
	m := NewMessage("session-1", "execute_request", map[string]any{"code": "1+1"})
	frames, err := Encode(key, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 6 || string(frames[0]) != Delimiter {
		t.Fatalf("frames: %q", frames)
	}
	if string(frames[1]) != Sign(key, frames[2:6]...) {
		t.Fatalf("signature frame %q is not Sign of the four parts", frames[1])
	}
	var h map[string]any
	if err := json.Unmarshal(frames[2], &h); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"msg_id", "session", "username", "date", "msg_type", "version"} {
		if s, _ := h[k].(string); s == "" {
			t.Errorf("header %q missing: %s", k, frames[2])
		}
	}
	got, err := Decode(key, frames)
	if err != nil {
		t.Fatal(err)
	}
	if got.Header != m.Header || got.Content["code"] != "1+1" {
		t.Errorf("round trip: %+v", got)
	}

	// Identities before the delimiter (what a ROUTER sees) are kept apart.
	routed := append([][]byte{[]byte("peer-id")}, frames...)
	got, err = Decode(key, routed)
	if err != nil || len(got.Identities) != 1 || string(got.Identities[0]) != "peer-id" {
		t.Errorf("Decode with identity: %v, %+v", err, got)
	}
}

// decodeRejectsKey signs the good message every decodeRejectCases entry
// starts from.
var decodeRejectsKey = []byte("decode-rejects-key-88aa")

// decodeRejectCases each spoil a correctly signed message one way; Decode
// must refuse every one with the error named, since a message that is
// accepted in any of these shapes could be forged or misread.
var decodeRejectCases = []struct {
	name string
	key  []byte                    // the key Decode is given
	edit func(f [][]byte) [][]byte // spoils a private copy of the good frames
	want error
}{
	{"tampered content", decodeRejectsKey, func(f [][]byte) [][]byte {
		f[5] = []byte(`{"status":"error"}`)
		return f
	}, ErrBadSignature},
	{"tampered header", decodeRejectsKey, func(f [][]byte) [][]byte {
		f[2] = []byte(strings.Replace(string(f[2]), "kernel_info_reply", "shutdown_reply", 1))
		return f
	}, ErrBadSignature},
	{"tampered parent", decodeRejectsKey, func(f [][]byte) [][]byte {
		f[3] = []byte(`{"msg_id":"forged"}`)
		return f
	}, ErrBadSignature},
	{"flipped signature digit", decodeRejectsKey, func(f [][]byte) [][]byte {
		if f[1][0] == '0' {
			f[1][0] = '1'
		} else {
			f[1][0] = '0'
		}
		return f
	}, ErrBadSignature},
	{"uppercase signature", decodeRejectsKey, func(f [][]byte) [][]byte {
		f[1] = []byte(strings.ToUpper(string(f[1])))
		return f
	}, ErrBadSignature},
	{"empty signature", decodeRejectsKey, func(f [][]byte) [][]byte {
		f[1] = nil
		return f
	}, ErrBadSignature},
	{"other key", []byte("some-other-key"), func(f [][]byte) [][]byte { return f }, ErrBadSignature},
	{"no delimiter", decodeRejectsKey, func(f [][]byte) [][]byte { return f[1:] }, ErrMalformed},
	{"too few frames", decodeRejectsKey, func(f [][]byte) [][]byte { return f[:5] }, ErrMalformed},
}

func TestDecodeRejects(t *testing.T) {
	key := decodeRejectsKey
	m := NewMessage("s", "kernel_info_reply", map[string]any{"status": "ok"})
	good, err := Encode(key, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range decodeRejectCases {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode(tt.key, tt.edit(cloneFrames(good)))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %+v, %v; want %v", m, err, tt.want)
			}
			if m != nil {
				t.Fatalf("Decode returned a message with an error")
			}
			if strings.Contains(err.Error(), string(tt.key)) || strings.Contains(err.Error(), string(key)) {
				t.Fatalf("error contains the key: %v", err)
			}
		})
	}

	t.Run("empty key accepts unsigned", func(t *testing.T) {
		frames, err := Encode(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		if len(frames[1]) != 0 {
			t.Fatalf("unsigned message has signature %q", frames[1])
		}
		if _, err := Decode(nil, frames); err != nil {
			t.Fatal(err)
		}
	})
}

// cloneFrames deep-copies frames, so a case that spoils a frame in place
// cannot spoil the good message for the cases after it.
func cloneFrames(good [][]byte) [][]byte {
	c := make([][]byte, len(good))
	for i := range good {
		c[i] = append([]byte(nil), good[i]...)
	}
	return c
}

// fakeKernel is a ROUTER on 127.0.0.1 that answers each request with
// whatever reply builds, so Request can be tested against replies no real
// kernel sends.
type fakeKernel struct {
	endpoint string
	sock     zmq4.Socket
	wg       sync.WaitGroup
}

func startFake(t *testing.T, key []byte, reply func(req *Message) [][][]byte) *fakeKernel {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sock := zmq4.NewRouter(ctx, zmq4.WithLogger(discard))
	if err := sock.Listen("tcp://127.0.0.1:0"); err != nil {
		cancel()
		t.Fatal(err)
	}
	f := &fakeKernel{endpoint: "tcp://" + sock.Addr().String(), sock: sock}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			msg, err := sock.Recv()
			if err != nil {
				return
			}
			req, err := Decode(key, msg.Frames)
			if err != nil {
				continue // a real kernel drops what it cannot verify
			}
			for _, frames := range reply(req) {
				if err := sock.Send(zmq4.NewMsgFrom(append(req.Identities, frames...)...)); err != nil {
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = sock.Close()
		f.wg.Wait()
	})
	return f
}

// replyTo builds a reply to req signed with key, without identities.
func replyTo(t *testing.T, key []byte, req *Message, msgType string, content map[string]any) [][]byte {
	t.Helper()
	m := NewMessage(req.Header.Session, msgType, content)
	parent, err := json.Marshal(req.Header)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(parent, &m.ParentHeader); err != nil {
		t.Fatal(err)
	}
	frames, err := Encode(key, m)
	if err != nil {
		t.Fatal(err)
	}
	return frames
}

// requestFakeKey signs the requests of TestRequestFake and, unless a case
// says otherwise, the fake kernel's replies.
var requestFakeKey = []byte("fake-kernel-key-1234abcd")

// requestCase is one way a kernel answers kernel_info_request, and what
// KernelInfo must make of it.
type requestCase struct {
	name    string
	reply   func(t *testing.T, req *Message) [][][]byte
	wantErr error  // nil: success
	errText string // substring of the error
}

// requestFakeCases cover the replies a real kernel sends and those an
// attacker or a confused peer could send instead.
var requestFakeCases = []requestCase{
	{"good reply", func(t *testing.T, req *Message) [][][]byte {
		return [][][]byte{replyTo(t, requestFakeKey, req, "kernel_info_reply", map[string]any{"status": "ok", "protocol_version": "5.3"})}
	}, nil, ""},
	{"unrelated message first is skipped", func(t *testing.T, req *Message) [][][]byte {
		other := *req
		other.Header.MsgID = "someone-else"
		return [][][]byte{
			replyTo(t, requestFakeKey, &other, "kernel_info_reply", map[string]any{"status": "ok", "protocol_version": "0"}),
			replyTo(t, requestFakeKey, req, "kernel_info_reply", map[string]any{"status": "ok", "protocol_version": "5.3"}),
		}
	}, nil, ""},
	{"tampered reply is rejected", func(t *testing.T, req *Message) [][][]byte {
		f := replyTo(t, requestFakeKey, req, "kernel_info_reply", map[string]any{"status": "ok", "protocol_version": "5.3"})
		f[5] = []byte(`{"status":"ok","protocol_version":"9.9"}`)
		return [][][]byte{f}
	}, ErrBadSignature, "reply rejected: signature mismatch"},
	{"reply signed with another key is rejected", func(t *testing.T, req *Message) [][][]byte {
		return [][][]byte{replyTo(t, []byte("not-the-key"), req, "kernel_info_reply", map[string]any{"status": "ok", "protocol_version": "5.3"})}
	}, ErrBadSignature, "signature mismatch"},
	{"unsigned reply is rejected", func(t *testing.T, req *Message) [][][]byte {
		return [][][]byte{replyTo(t, nil, req, "kernel_info_reply", map[string]any{"status": "ok", "protocol_version": "5.3"})}
	}, ErrBadSignature, "signature mismatch"},
	{"wrong reply type", func(t *testing.T, req *Message) [][][]byte {
		return [][][]byte{replyTo(t, requestFakeKey, req, "execute_reply", map[string]any{"status": "ok"})}
	}, ErrMalformed, `got "execute_reply", want "kernel_info_reply"`},
	{"no protocol_version", func(t *testing.T, req *Message) [][][]byte {
		return [][][]byte{replyTo(t, requestFakeKey, req, "kernel_info_reply", map[string]any{"status": "ok"})}
	}, ErrMalformed, "no protocol_version"},
	{"status error", func(t *testing.T, req *Message) [][][]byte {
		return [][][]byte{replyTo(t, requestFakeKey, req, "kernel_info_reply", map[string]any{
			"status": "error", "ename": "RuntimeError", "evalue": "boom", "protocol_version": "5.3"})}
	}, nil, `status "error": RuntimeError: boom`},
}

func TestRequestFake(t *testing.T) {
	for _, tt := range requestFakeCases {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			f := startFake(t, requestFakeKey, func(req *Message) [][][]byte { return tt.reply(t, req) })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			reply, err := KernelInfo(ctx, f.endpoint, requestFakeKey)
			tt.check(t, reply, err)
		})
	}
}

// check holds KernelInfo's result to the case. A rejection must be the
// reply's fault, not a timeout that happens to match, and must never quote
// the key.
func (tt requestCase) check(t *testing.T, reply *Message, err error) {
	t.Helper()
	if tt.errText == "" {
		if err != nil {
			t.Fatalf("KernelInfo: %v", err)
		}
		if reply.Content["protocol_version"] != "5.3" {
			t.Fatalf("reply: %+v", reply)
		}
		return
	}
	if err == nil {
		t.Fatalf("KernelInfo accepted %+v", reply)
	}
	if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
		t.Errorf("error %v does not wrap %v", err, tt.wantErr)
	}
	if !strings.Contains(err.Error(), tt.errText) {
		t.Errorf("error %q does not contain %q", err, tt.errText)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error came from the deadline, not the reply: %v", err)
	}
	if strings.Contains(err.Error(), string(requestFakeKey)) {
		t.Errorf("error contains the key: %v", err)
	}
}

func TestShutdownFake(t *testing.T) {
	checkLeaks(t)
	key := []byte("fake-shutdown-key-77")
	var got map[string]any
	var mu sync.Mutex
	f := startFake(t, key, func(req *Message) [][][]byte {
		mu.Lock()
		got = req.Content
		mu.Unlock()
		return [][][]byte{replyTo(t, key, req, "shutdown_reply", map[string]any{"status": "ok", "restart": false})}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Shutdown(ctx, f.endpoint, key); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if r, ok := got["restart"].(bool); !ok || r {
		t.Errorf("shutdown_request content = %v, want restart false", got)
	}
}

// TestRequestSilentPeer: a peer that accepts TCP and never speaks ZMTP (a
// tunnel whose far end is gone) must not hang Request past ctx, nor leak.
func TestRequestSilentPeer(t *testing.T) {
	checkLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	}()

	key := []byte("silent-peer-key-abc")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = Request(ctx, "tcp://"+ln.Addr().String(), key, "kernel_info_request", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Request = %v, want deadline exceeded", err)
	}
	t.Logf("error: %v", err)
}

func TestRequestRefused(t *testing.T) {
	checkLeaks(t)
	// Not a port just closed on 127.0.0.1: tests running in parallel may
	// take it over. Nothing listens on 127.0.0.3.
	addr := "127.0.0.3:1"
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := Request(ctx, "tcp://"+addr, []byte("refused-key-0001"), "kernel_info_request", nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Request = %v, want deadline exceeded naming the refused connection", err)
	}
	if strings.Contains(err.Error(), tcpScheme) || !strings.Contains(err.Error(), "tcp://"+addr) {
		t.Errorf("error should name the caller's endpoint: %v", err)
	}
}

func TestRequestBadEndpoint(t *testing.T) {
	checkLeaks(t)
	for _, ep := range []string{"127.0.0.1:5555", "tcp://127.0.0.1", "tcp://127.0.0.1:0", "tcp://127.0.0.1:99999", "tcp://*:5555", "udp://127.0.0.1:5555", "ipc://"} {
		t.Run(ep, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			_, err := Request(ctx, ep, []byte("k"), "kernel_info_request", nil)
			if err == nil {
				t.Fatal("Request succeeded")
			}
			if errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
				t.Fatalf("bad endpoint was retried: %v", err)
			}
		})
	}
}
