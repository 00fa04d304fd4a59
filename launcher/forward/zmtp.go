package forward

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// The ZeroMQ handshake answered here (ZMTP 3, https://rfc.zeromq.org/spec/23/
// and /37/). A ZeroMQ client that connects to a forward otherwise spends
// three round trips on its handshake with the kernel before its first
// message leaves: signatures, then the rest of the greetings, then the
// READY commands, each sent only once the other side's part has come. On
// a forward whose Target names the kernel socket's type, kq gives the
// local client the kernel's side of the greeting and a READY of that type
// at once, from here. The client's own greeting, its READY and its first
// messages are then ready to go: the client's greeting goes to the kernel
// as soon as the channel is open, and the kernel's greeting and READY,
// when they come, are checked against what the client was told and
// dropped; the client's READY and messages follow at once, and everything
// after them is relayed untouched. The kernel checks the client's READY
// itself.
//
// Only the NULL mechanism (the one Jupyter uses) of ZMTP 3.0 and 3.1 is
// answered. Any other client, or one that has sent nothing within
// answerWait, gets a plain relay; a kernel whose greeting or READY does
// not match what its client was told ends that connection (the client's
// ZeroMQ socket reconnects) and turns the early answer off for that
// forward, so the reconnection is relayed plainly. The client's READY and
// messages wait here for the kernel's READY (meetKernel), so the handshake
// costs one round trip through the tunnel where it cost three.
//
// A primed connection (prime.go) greets the kernel before any client
// comes, as libzmq's clients do (ZMTP 3.1 NULL), and reads the kernel's
// greeting and READY: a client that connects later (a frontend, seconds
// after the ports are forwarded) then costs no round trip before its first
// message. A ZMTP 3.0 client (zmq4, kq's own checks) that takes one meets
// a kernel that believes it speaks 3.1; that changes nothing a kernel
// sends it, as 3.1 adds only PING/PONG (sent only with ZMQ_HEARTBEAT_IVL
// set, which Jupyter's kernels do not) and SUBSCRIBE/CANCEL (sent by
// subscribers, not by a kernel).

// The socket types of a Jupyter kernel's ports, for Target.Socket.
const (
	// SocketRouter is the shell, control, stdin and (ipykernel's) heartbeat
	// socket; a heartbeat that is a REP is answered alike.
	SocketRouter = "ROUTER"
	// SocketPub is the iopub socket; an XPUB is answered alike.
	SocketPub = "PUB"
)

// KernelSocket is the ZeroMQ socket type behind a connection-file port
// field ("shell_port", ...), "" for a field that is not a kernel port.
func KernelSocket(field string) string {
	switch field {
	case "shell_port", "control_port", "stdin_port", "hb_port":
		return SocketRouter
	case "iopub_port":
		return SocketPub
	}
	return ""
}

// Greeting layout (ZMTP 3): signature (0xFF, 8 bytes of padding, 0x7F),
// major and minor version, mechanism (20 bytes), as-server, filler.
const (
	sigLen       = 10
	greetingLen  = 64
	mechanismAt  = 12
	mechanismEnd = 32
	// maxReady bounds the kernel's READY command that is read and dropped.
	maxReady = 64 << 10
	// commandFlag and longFlag are the frame flags of a command and of an
	// 8-byte size.
	commandFlag = 0x04
	longFlag    = 0x02
)

// answerWait bounds the wait for a local client's greeting; libzmq sends
// it the moment it connects.
var answerWait = 5 * time.Second

// errHandshake: the kernel's greeting or READY is not what the client
// was told.
var errHandshake = errors.New("the kernel's ZeroMQ handshake differs from the one answered early")

var nullMechanism = [mechanismEnd - mechanismAt]byte{'N', 'U', 'L', 'L'}

// handshake is what answerClient read from a local client and told it.
type handshake struct {
	fromClient []byte // the client's bytes read so far: the kernel gets them first
	told       int    // the kernel's first bytes the client has had from here already
	full       bool   // the client had a whole greeting and a READY from here
	minor      byte   // the minor version it was told
	socket     string // the socket type it was told
}

// answerClient answers c's ZeroMQ greeting as the kernel's socket of
// type socket would: the signature and major version once c's signature
// has come, then, for a ZMTP 3.0/3.1 NULL client, the rest and a READY.
// Anything else stops the answer where it is; the relay then passes the
// rest of the kernel's greeting on.
func answerClient(c net.Conn, socket string) handshake {
	h := handshake{socket: socket}
	_ = c.SetReadDeadline(time.Now().Add(answerWait))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, greetingLen)
	n, err := io.ReadFull(c, buf[:1])
	if err == nil && buf[0] == 0xff { // else not ZMTP 2 or 3: pass it on at once
		n, err = io.ReadFull(c, buf[1:sigLen])
		n++
	}
	h.fromClient = buf[:n]
	if err != nil || n < sigLen || buf[sigLen-1]&1 == 0 {
		return h
	}
	if _, err := c.Write(append(signature(), 3)); err != nil {
		return h
	}
	h.told = sigLen + 1
	n, err = io.ReadFull(c, buf[sigLen:])
	h.fromClient = buf[:sigLen+n]
	if err != nil || buf[sigLen] != 3 || buf[sigLen+1] > 1 ||
		!bytes.Equal(buf[mechanismAt:mechanismEnd], nullMechanism[:]) || buf[mechanismEnd] != 0 {
		return h
	}
	h.minor = buf[sigLen+1]
	if _, err := c.Write(append(greetingRest(h.minor), ready(socket)...)); err != nil {
		return h
	}
	h.full = true
	return h
}

// signature is a greeting's first ten bytes as libzmq sends them.
func signature() []byte { return []byte{0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f} }

// greetingRest is a NULL greeting after its major version.
func greetingRest(minor byte) []byte {
	b := make([]byte, greetingLen-sigLen-1)
	b[0] = minor
	copy(b[1:], nullMechanism[:])
	return b
}

// ready is the READY command a libzmq socket of type socket sends.
func ready(socket string) []byte {
	body := []byte{5}
	body = append(body, "READY"...)
	body = appendProperty(body, "Socket-Type", socket)
	if socket == SocketRouter {
		body = appendProperty(body, "Identity", "")
	}
	return append([]byte{commandFlag, byte(len(body))}, body...)
}

func appendProperty(b []byte, name, value string) []byte {
	b = append(b, byte(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(value)))
	return append(b, value...)
}

// meetKernel passes the client's greeting on to the kernel, reads the
// kernel's greeting (and READY) as far as the client was told them,
// checks that they say the same and drops them. It returns what the
// kernel sends next. The rest of the client's bytes, its READY and first
// messages, are held back until then: libzmq (4.3) fails a handshake in
// which a message arrives before its own READY has gone out.
func (h handshake) meetKernel(rc net.Conn) (io.Reader, error) {
	if len(h.fromClient) > 0 {
		if _, err := rc.Write(h.fromClient); err != nil {
			return nil, err
		}
	}
	if h.told == 0 {
		return rc, nil
	}
	r := bufio.NewReaderSize(rc, 4096)
	return r, h.dropKernel(r)
}

// dropKernel reads the kernel's greeting (and READY) as far as the client
// was told it, and checks that they say the same.
func (h handshake) dropKernel(r *bufio.Reader) error {
	n := h.told
	if h.full {
		n = greetingLen
	}
	g := make([]byte, n)
	if _, err := io.ReadFull(r, g); err != nil {
		return err
	}
	if g[0] != 0xff || g[sigLen-1]&1 == 0 || g[sigLen] != 3 {
		return fmt.Errorf("%w: its greeting starts %x", errHandshake, g[:sigLen+1])
	}
	if !h.full {
		return nil
	}
	if g[sigLen+1] < h.minor || !bytes.Equal(g[mechanismAt:mechanismEnd], nullMechanism[:]) {
		return fmt.Errorf("%w: its greeting is %x", errHandshake, g)
	}
	typ, err := readReady(r)
	if err != nil {
		return err
	}
	if !sameForClients(typ, h.socket) {
		return fmt.Errorf("%w: its socket is a %s, not a %s", errHandshake, typ, h.socket)
	}
	return nil
}

// readReady reads a READY command and returns its Socket-Type.
func readReady(r *bufio.Reader) (string, error) {
	flags, err := r.ReadByte()
	if err != nil {
		return "", err
	}
	if flags&commandFlag == 0 {
		return "", fmt.Errorf("%w: a message came before its READY", errHandshake)
	}
	size := make([]byte, 1, 8)
	if flags&longFlag != 0 {
		size = size[:8]
	}
	if _, err := io.ReadFull(r, size); err != nil {
		return "", err
	}
	n := uint64(size[0])
	if len(size) == 8 {
		n = binary.BigEndian.Uint64(size)
	}
	if n > maxReady {
		return "", fmt.Errorf("%w: a command of %d bytes", errHandshake, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", err
	}
	return readyType(body)
}

// readyType parses a READY command's body for its Socket-Type.
func readyType(body []byte) (string, error) {
	if len(body) < 6 || body[0] != 5 || string(body[1:6]) != "READY" {
		return "", fmt.Errorf("%w: its first command is not READY", errHandshake)
	}
	for p := body[6:]; len(p) > 0; {
		nl := int(p[0])
		if len(p) < 1+nl+4 {
			break
		}
		name := string(p[1 : 1+nl])
		vl := int(binary.BigEndian.Uint32(p[1+nl:]))
		p = p[1+nl+4:]
		if vl > len(p) {
			break
		}
		if strings.EqualFold(name, "Socket-Type") {
			return string(p[:vl]), nil
		}
		p = p[vl:]
	}
	return "", fmt.Errorf("%w: its READY has no valid Socket-Type", errHandshake)
}

// sameForClients reports whether a client's ZeroMQ socket takes a peer of
// type got exactly as one of type told: DEALER, REQ and SUB (the sockets
// of Jupyter's clients) accept ROUTER and REP alike, and PUB and XPUB.
func sameForClients(got, told string) bool {
	class := func(t string) string {
		switch t {
		case "REP":
			return SocketRouter
		case "XPUB":
			return SocketPub
		}
		return t
	}
	return class(got) == class(told)
}
