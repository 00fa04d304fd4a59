// Package wire speaks just enough of the Jupyter messaging protocol (v5.x) to
// ask a kernel whether it is alive and to ask it to stop.
//
// kq needs two conversations with a kernel that it never hands to a frontend:
// a kernel_info_request through the freshly built tunnel (so "ready" means the
// kernel really answers, with the right key, end to end) and a
// shutdown_request on the control channel at teardown (so the kernel exits
// cleanly before any signal is sent). Both are one request and one reply on a
// DEALER socket, signed with the HMAC key from the connection file.
//
// The ZeroMQ transport is github.com/go-zeromq/zmq4 (pure Go, so kq builds
// with CGO_ENABLED=0). Every exchange opens its own socket and closes it before
// returning, so a dead tunnel or a hung kernel cannot leave anything behind.
//
// The key is a secret: it is used only to compute and check signatures and
// never appears in an error.
package wire

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Delimiter separates the routing identities from the signed part of every
// message on the wire; it is fixed by the protocol.
const Delimiter = "<IDS|MSG>"

// ProtocolVersion is the messaging protocol version kq puts in its headers;
// 5.3 is what ipykernel 6 speaks, and every 5.x kernel accepts it.
const ProtocolVersion = "5.3"

// Username is sent in every header kq writes. Kernels only echo it back, so a
// constant keeps the user's login name off the wire.
const Username = "kq"

// ErrBadSignature means a message's HMAC did not match the key: either the key
// is wrong or the message was tampered with. Such a message is never accepted.
var ErrBadSignature = errors.New("signature mismatch")

// ErrMalformed means frames that do not form a Jupyter message.
var ErrMalformed = errors.New("malformed jupyter message")

// Message is one Jupyter message, decoded. Parent header, metadata and content
// stay generic maps because kq inspects only a few of their members and must
// not reject kernels that send more.
type Message struct {
	// Identities are the routing frames before the delimiter (empty on a
	// DEALER socket, which is all kq uses).
	Identities [][]byte
	// Header describes this message.
	Header Header
	// ParentHeader is the header of the request this message answers
	// (empty in a request).
	ParentHeader map[string]any
	// Metadata is free-form and rarely used; sent as {} by kq.
	Metadata map[string]any
	// Content is the message body, shaped by Header.MsgType.
	Content map[string]any
	// Buffers are the raw extra frames after content (rare; kept, not signed).
	Buffers [][]byte
}

// Header is the message header; the fields are the ones protocol 5 requires,
// so a reply can be matched (MsgID, via the parent header) and identified
// (MsgType) without a map lookup.
type Header struct {
	// MsgID is unique per message; replies carry it in their parent header.
	MsgID string `json:"msg_id"`
	// Session identifies the client that sent the message.
	Session string `json:"session"`
	// Username is informational; kq always sends Username.
	Username string `json:"username"`
	// Date is the ISO 8601 creation time.
	Date string `json:"date"`
	// MsgType is e.g. "kernel_info_request" or "kernel_info_reply".
	MsgType string `json:"msg_type"`
	// Version is the messaging protocol version of the sender.
	Version string `json:"version"`
}

// Status returns content["status"] ("ok", "error", "aborted"), or "" when the
// reply has none, because every caller of a request wants to check it.
func (m *Message) Status() string {
	s, _ := m.Content["status"].(string)
	return s
}

// ParentID returns the msg_id of the request this message answers, which is
// how replies are matched to requests.
func (m *Message) ParentID() string {
	s, _ := m.ParentHeader["msg_id"].(string)
	return s
}

// Sign returns the hex HMAC-SHA256 of the concatenated parts, which is the
// signature frame of a Jupyter message when the parts are header, parent
// header, metadata and content. An empty key means authentication is off, and
// the protocol then wants an empty signature.
func Sign(key []byte, parts ...[]byte) string {
	if len(key) == 0 {
		return ""
	}
	mac := hmac.New(sha256.New, key)
	for _, p := range parts {
		mac.Write(p)
	}
	return hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether sig is the signature of parts under key, comparing in
// constant time so a forger learns nothing from timing. With an empty key
// every signature is accepted, as Jupyter itself does.
func Verify(key, sig []byte, parts ...[]byte) bool {
	if len(key) == 0 {
		return true
	}
	return hmac.Equal([]byte(Sign(key, parts...)), sig)
}

// NewMessage builds a request with a fresh msg_id, the given session and the
// current time, so every caller fills the header the same way.
func NewMessage(session, msgType string, content map[string]any) *Message {
	if content == nil {
		content = map[string]any{}
	}
	return &Message{
		Header: Header{
			MsgID:    uuid.NewString(),
			Session:  session,
			Username: Username,
			Date:     time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"),
			MsgType:  msgType,
			Version:  ProtocolVersion,
		},
		ParentHeader: map[string]any{},
		Metadata:     map[string]any{},
		Content:      content,
	}
}

// Encode returns the frames of m, signed with key, ready for a DEALER socket:
// identities, delimiter, signature, header, parent header, metadata, content,
// buffers.
func Encode(key []byte, m *Message) ([][]byte, error) {
	parts := make([][]byte, 4)
	for i, v := range []any{m.Header, orEmpty(m.ParentHeader), orEmpty(m.Metadata), orEmpty(m.Content)} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", m.Header.MsgType, err)
		}
		parts[i] = b
	}
	frames := make([][]byte, 0, len(m.Identities)+6+len(m.Buffers))
	frames = append(frames, m.Identities...)
	frames = append(frames, []byte(Delimiter), []byte(Sign(key, parts...)))
	frames = append(frames, parts...)
	frames = append(frames, m.Buffers...)
	return frames, nil
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// Decode checks the signature of frames under key and decodes them. The
// signature is checked on the raw bytes before anything is parsed, so nothing
// from an unauthenticated message is ever trusted. A mismatch returns an error
// wrapping ErrBadSignature.
func Decode(key []byte, frames [][]byte) (*Message, error) {
	delim := -1
	for i, f := range frames {
		if string(f) == Delimiter {
			delim = i
			break
		}
	}
	if delim < 0 {
		return nil, fmt.Errorf("no %s delimiter in %d frames: %w", Delimiter, len(frames), ErrMalformed)
	}
	rest := frames[delim+1:]
	if len(rest) < 5 {
		return nil, fmt.Errorf("%d frames after the delimiter, want at least 5: %w", len(rest), ErrMalformed)
	}
	sig, parts := rest[0], rest[1:5]
	if !Verify(key, sig, parts...) {
		return nil, ErrBadSignature
	}
	m := &Message{Identities: frames[:delim], Buffers: rest[5:]}
	if err := json.Unmarshal(parts[0], &m.Header); err != nil {
		return nil, fmt.Errorf("header: %w: %w", ErrMalformed, err)
	}
	for i, dst := range []*map[string]any{&m.ParentHeader, &m.Metadata, &m.Content} {
		if err := json.Unmarshal(parts[i+1], dst); err != nil {
			name := [...]string{"parent header", "metadata", "content"}[i]
			return nil, fmt.Errorf("%s: %w: %w", name, ErrMalformed, err)
		}
	}
	return m, nil
}

// maxUnrelated bounds how many messages that answer someone else Request
// skips before giving up; a shell socket of our own should see none at all.
const maxUnrelated = 100

// Request sends one signed request of type msgType to endpoint (e.g.
// "tcp://127.0.0.1:PORT", a kernel's shell or control socket) and returns the
// reply whose parent msg_id matches, after verifying its signature. ctx bounds
// the whole exchange, including connecting (which is retried until ctx ends,
// as ZeroMQ clients do, because a kernel or tunnel may still be coming up);
// the socket is closed before Request returns, whatever happens.
//
// A reply with a bad signature is an error wrapping ErrBadSignature; it is
// never returned as a Message. A request the kernel rejects (typically: wrong
// key) gets no reply at all, so it ends when ctx does.
func Request(ctx context.Context, endpoint string, key []byte, msgType string, content map[string]any) (*Message, error) {
	c, err := dial(ctx, endpoint)
	if err != nil {
		return nil, fmt.Errorf("%s to %s: %w", msgType, endpoint, err)
	}
	defer c.close()
	return c.request(ctx, key, msgType, content)
}

// request sends one request on c and waits for its reply.
func (c *conn) request(ctx context.Context, key []byte, msgType string, content map[string]any) (*Message, error) {
	req := NewMessage(uuid.NewString(), msgType, content)
	frames, err := Encode(key, req)
	if err != nil {
		return nil, err
	}
	if err := c.send(ctx, frames); err != nil {
		return nil, fmt.Errorf("%s to %s: send: %w", msgType, c.endpoint, err)
	}
	for range maxUnrelated {
		frames, err := c.recv(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s to %s: no reply: %w", msgType, c.endpoint, err)
		}
		reply, err := Decode(key, frames)
		if err != nil {
			return nil, fmt.Errorf("%s to %s: reply rejected: %w", msgType, c.endpoint, err)
		}
		if reply.ParentID() == req.Header.MsgID {
			return reply, nil
		}
	}
	return nil, fmt.Errorf("%s to %s: %d messages arrived, none a reply to ours", msgType, c.endpoint, maxUnrelated)
}

// KernelInfo asks the kernel on shellEndpoint for kernel_info, which is the
// cheapest request every kernel must answer: a valid reply proves the address,
// the tunnel and the key are all right. It returns the reply after checking it
// is a kernel_info_reply with status ok (older kernels omit status; that is
// accepted) and a protocol_version.
func KernelInfo(ctx context.Context, shellEndpoint string, key []byte) (*Message, error) {
	reply, err := Request(ctx, shellEndpoint, key, "kernel_info_request", nil)
	if err != nil {
		return nil, fmt.Errorf("kernel info: %w", err)
	}
	if err := checkReply(reply, "kernel_info_reply"); err != nil {
		return nil, fmt.Errorf("kernel info from %s: %w", shellEndpoint, err)
	}
	if v, _ := reply.Content["protocol_version"].(string); v == "" {
		return nil, fmt.Errorf("kernel info from %s: reply has no protocol_version: %w", shellEndpoint, ErrMalformed)
	}
	return reply, nil
}

// Execute runs code on shellEndpoint silently (no history, nothing
// broadcast, no stdin) with userExpressions, and returns the execute_reply
// once its status is ok.
func Execute(ctx context.Context, shellEndpoint string, key []byte, code string, userExpressions map[string]any) (*Message, error) {
	reply, err := Request(ctx, shellEndpoint, key, "execute_request", map[string]any{
		"code": code, "silent": true, "store_history": false, "user_expressions": userExpressions,
		"allow_stdin": false, "stop_on_error": false})
	if err != nil {
		return nil, fmt.Errorf("execute: %w", err)
	}
	if err := checkReply(reply, "execute_reply"); err != nil {
		return nil, fmt.Errorf("execute on %s: %w", shellEndpoint, err)
	}
	return reply, nil
}

// Shutdown asks the kernel on controlEndpoint to exit (restart false) and
// waits for its shutdown_reply. The control channel is used because it is
// served even while the shell channel is busy running code. A nil error means
// the kernel acknowledged; it may take a moment longer to actually exit.
func Shutdown(ctx context.Context, controlEndpoint string, key []byte) error {
	c, err := dial(ctx, controlEndpoint)
	if err != nil {
		return fmt.Errorf("shutdown: shutdown_request to %s: %w", controlEndpoint, err)
	}
	defer c.close()
	return c.shutdown(ctx, key)
}

// shutdown sends shutdown_request on c and checks the reply.
func (c *conn) shutdown(ctx context.Context, key []byte) error {
	reply, err := c.request(ctx, key, "shutdown_request", map[string]any{"restart": false})
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := checkReply(reply, "shutdown_reply"); err != nil {
		return fmt.Errorf("shutdown of %s: %w", c.endpoint, err)
	}
	return nil
}

// checkReply insists on the expected reply type and on a status that is ok
// when present.
func checkReply(m *Message, wantType string) error {
	if m.Header.MsgType != wantType {
		return fmt.Errorf("got %q, want %q: %w", m.Header.MsgType, wantType, ErrMalformed)
	}
	switch s := m.Status(); s {
	case "", "ok":
		return nil
	default:
		ename, _ := m.Content["ename"].(string)
		evalue, _ := m.Content["evalue"].(string)
		if ename != "" {
			return fmt.Errorf("%s status %q: %s: %s", wantType, s, ename, evalue)
		}
		return fmt.Errorf("%s status %q", wantType, s)
	}
}
