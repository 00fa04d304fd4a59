// Package connfile reads, checks and rewrites Jupyter kernel connection files.
//
// kq brings the file a remote kernel wrote back to the client, refuses it early
// when it could not possibly work through the tunnel (wrong transport, missing
// ports, no key), and writes a local copy that points at the forwarded ports.
// The local copy must stay what Jupyter wrote in every other respect: frontends
// read fields kq knows nothing about (jupyter_session, kernel_name, future
// additions), so every field is kept as the raw JSON it arrived as and only the
// address and the ports are replaced.
//
// The HMAC key in a connection file is a secret: nothing in this package puts
// it in an error message, and Info redacts it when printed or logged.
package connfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
)

// Names of the five port fields, as they appear in a connection file. They are
// the keys Rewrite accepts and the names Ports reports, so callers never spell
// them by hand.
const (
	Shell   = "shell_port"
	IOPub   = "iopub_port"
	Stdin   = "stdin_port"
	Control = "control_port"
	HB      = "hb_port"
)

// portNames is the fixed order of Ports: the order Jupyter itself writes them.
var portNames = [...]string{Shell, IOPub, Stdin, Control, HB}

// Values Validate insists on; kq forwards TCP only and signs with HMAC-SHA256
// only, so anything else would fail later in a far more confusing way.
const (
	TransportTCP = "tcp"
	SchemeSHA256 = "hmac-sha256"
)

// ErrInvalid is wrapped by every error that says the file's content is wrong
// (as opposed to an I/O error elsewhere), so callers can map all of them to
// "the kernel failed to start" with one errors.Is.
var ErrInvalid = errors.New("invalid connection file")

// FieldError names the field that is wrong and why. It is a type so callers can
// point the user at the field; it never carries the field's value, because for
// "key" that value is the secret.
type FieldError struct {
	// Field is the JSON name of the offending field, e.g. "shell_port".
	Field string
	// Reason says what is wrong in words; it never quotes the key.
	Reason string
}

// Error reports the field and the reason in one line.
func (e *FieldError) Error() string {
	return fmt.Sprintf("connection file field %q: %s", e.Field, e.Reason)
}

// Unwrap makes every FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Port is one of the kernel's five ports, named by its connection-file field
// so forwarders and rewrites can refer back to it without a lookup table.
type Port struct {
	// Name is the field name, e.g. "shell_port".
	Name string
	// Number is the TCP port.
	Number int
}

// field is one top-level member of the original JSON object, kept verbatim so
// Rewrite can write back what it does not understand.
type field struct {
	name string
	raw  json.RawMessage
}

// Info is a parsed kernel connection file. The exported fields are the ones kq
// needs to act on; the original members, including unknown ones, are kept in
// their original order so Rewrite can carry them through unchanged.
type Info struct {
	// Transport is "tcp" for every kernel kq can forward.
	Transport string
	// IP is the address the kernel listens on, as seen from its own host.
	IP string
	// Key is the HMAC key that signs every message. It is a secret: never
	// log it, never put it in an error or on a command line.
	Key string
	// SignatureScheme names the HMAC; kq supports "hmac-sha256" only.
	SignatureScheme string
	// KernelName is the kernelspec name, often empty; informational only.
	KernelName string

	// The five ports the kernel bound, one per channel.
	ShellPort, IOPubPort, StdinPort, ControlPort, HBPort int

	// fields holds every member of the parsed object in file order; nil when
	// the Info was built by hand rather than by Parse.
	fields []field
	// parsed is true when Info came from Parse, so that Validate can tell a
	// port that was absent from one that was written as 0.
	parsed bool
	// present records which members the file had.
	present map[string]bool
}

// Parse decodes a connection file and validates it, because a file that
// decodes but cannot work (no key, port 0) is as useless to kq as one that
// does not decode, and failing here names the field instead of failing later
// at a tunnel or a signature.
func Parse(data []byte) (*Info, error) {
	fields, err := decodeObject(data)
	if err != nil {
		return nil, err
	}
	info := &Info{fields: fields, parsed: true, present: make(map[string]bool, len(fields))}
	var errs []error
	typeErr := make(map[string]bool)
	for _, f := range fields {
		info.present[f.name] = true
		if err := info.set(f); err != nil {
			errs = append(errs, err)
			typeErr[f.name] = true
		}
	}
	// A member of the wrong type was left at its zero value; reporting that
	// zero value as well ("port 0 is out of range") would only confuse.
	for _, err := range info.problems() {
		if !typeErr[err.Field] {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return info, nil
}

// set stores a known member's decoded value; unknown members are only kept raw.
func (i *Info) set(f field) error {
	var err error
	switch f.name {
	case "transport":
		i.Transport, err = decodeString(f)
	case "ip":
		i.IP, err = decodeString(f)
	case "key":
		i.Key, err = decodeString(f)
	case "signature_scheme":
		i.SignatureScheme, err = decodeString(f)
	case "kernel_name":
		i.KernelName, err = decodeString(f)
	case Shell:
		i.ShellPort, err = decodePort(f)
	case IOPub:
		i.IOPubPort, err = decodePort(f)
	case Stdin:
		i.StdinPort, err = decodePort(f)
	case Control:
		i.ControlPort, err = decodePort(f)
	case HB:
		i.HBPort, err = decodePort(f)
	}
	return err
}

// Validate checks what kq relies on: five usable, distinct TCP ports, the tcp
// transport, a key and the hmac-sha256 scheme. Every problem is reported (joined),
// each as a *FieldError, so one run tells the user everything that is wrong.
func (i *Info) Validate() error {
	var errs []error
	for _, e := range i.problems() {
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// problems is Validate's list of findings, one per field at most.
func (i *Info) problems() []*FieldError {
	var errs []*FieldError
	bad := func(name, format string, args ...any) {
		errs = append(errs, &FieldError{Field: name, Reason: fmt.Sprintf(format, args...)})
	}
	seen := make(map[int]string, len(portNames))
	for _, p := range i.Ports() {
		switch {
		case i.parsed && !i.present[p.Name]:
			bad(p.Name, "missing")
		case p.Number < 1 || p.Number > 65535:
			bad(p.Name, "port %d is out of range 1..65535", p.Number)
		case seen[p.Number] != "":
			bad(p.Name, "port %d is also %s; each channel needs its own port", p.Number, seen[p.Number])
		default:
			seen[p.Number] = p.Name
		}
	}
	switch {
	case i.parsed && !i.present["transport"]:
		bad("transport", "missing")
	case i.Transport != TransportTCP:
		bad("transport", "%q is not supported: kq forwards TCP ports only (want %q)", i.Transport, TransportTCP)
	}
	if i.Key == "" {
		if i.parsed && !i.present["key"] {
			bad("key", "missing")
		} else {
			bad("key", "empty: kq refuses kernels that accept unsigned messages")
		}
	}
	switch {
	case i.parsed && !i.present["signature_scheme"]:
		bad("signature_scheme", "missing")
	case i.SignatureScheme != SchemeSHA256:
		bad("signature_scheme", "%q is not supported (want %q)", i.SignatureScheme, SchemeSHA256)
	}
	return errs
}

// Ports lists the five ports in a fixed order (shell, iopub, stdin, control,
// hb) so forwards are set up, reported and torn down in the same order every time.
func (i *Info) Ports() []Port {
	return []Port{
		{Shell, i.ShellPort},
		{IOPub, i.IOPubPort},
		{Stdin, i.StdinPort},
		{Control, i.ControlPort},
		{HB, i.HBPort},
	}
}

// Endpoint returns the ZMQ endpoint ("tcp://IP:PORT") of the named port, which
// is what a Jupyter client dials; it exists so callers never assemble one with
// string concatenation and get IPv6 brackets wrong.
func (i *Info) Endpoint(name string) (string, error) {
	for _, p := range i.Ports() {
		if p.Name == name {
			return i.Transport + "://" + net.JoinHostPort(i.IP, strconv.Itoa(p.Number)), nil
		}
	}
	return "", fmt.Errorf("endpoint: unknown port field %q", name)
}

// Rewrite returns the connection file with "ip" set to ip and the port fields
// named in ports set to the given numbers, for the local copy that points at
// the forwarded ports. Every other member is carried through as it was parsed
// (including members kq does not know), in the original order; ip and ports
// missing from the original are appended. Changes to Info's exported fields
// after Parse are not written: the original bytes are the truth. The output is
// indented with two spaces like Jupyter's own files and ends in a newline.
func (i *Info) Rewrite(ip string, ports map[string]int) ([]byte, error) {
	if err := i.Validate(); err != nil {
		return nil, fmt.Errorf("rewrite: %w", err)
	}
	replace, err := replacements(ip, ports)
	if err != nil {
		return nil, fmt.Errorf("rewrite: %w", err)
	}
	fields := i.fields
	if fields == nil {
		if fields, err = i.synthesize(); err != nil {
			return nil, fmt.Errorf("rewrite: %w", err)
		}
	}
	compact, err := spliceObject(fields, replace)
	if err != nil {
		return nil, fmt.Errorf("rewrite: %w", err)
	}
	return indent(compact)
}

// replacements turns Rewrite's arguments into the raw JSON that replaces the
// members of those names, checking them first: a caller's typo in a port name
// or a port out of range must fail here rather than write a file a frontend
// would choke on.
func replacements(ip string, ports map[string]int) (map[string]json.RawMessage, error) {
	if ip == "" {
		return nil, errors.New("empty ip")
	}
	known := make(map[string]bool, len(portNames))
	for _, n := range portNames {
		known[n] = true
	}
	replace := make(map[string]json.RawMessage, len(ports)+1)
	for name, n := range ports {
		if !known[name] {
			return nil, fmt.Errorf("%q is not a port field", name)
		}
		if n < 1 || n > 65535 {
			return nil, fmt.Errorf("%s %d is out of range 1..65535", name, n)
		}
		replace[name] = json.RawMessage(strconv.Itoa(n))
	}
	ipJSON, err := marshalString(ip)
	if err != nil {
		return nil, fmt.Errorf("ip: %w", err)
	}
	replace["ip"] = ipJSON
	return replace, nil
}

// spliceObject writes fields as one compact JSON object, each member's value
// swapped for its replacement where there is one, then appends the
// replacements the original lacked — in a fixed order, so the output is
// deterministic even though replace is a map.
func spliceObject(fields []field, replace map[string]json.RawMessage) ([]byte, error) {
	w := objectWriter{written: make(map[string]bool, len(fields))}
	w.buf.WriteByte('{')
	for _, f := range fields {
		raw := f.raw
		if r, ok := replace[f.name]; ok {
			raw = r
		}
		if err := w.member(f.name, raw); err != nil {
			return nil, err
		}
	}
	for _, name := range append([]string{"ip"}, portNames[:]...) {
		if r, ok := replace[name]; ok && !w.written[name] {
			if err := w.member(name, r); err != nil {
				return nil, err
			}
		}
	}
	w.buf.WriteByte('}')
	return w.buf.Bytes(), nil
}

// objectWriter assembles a JSON object from raw members by hand, because
// encoding/json would reorder them (map) or re-encode them (struct), and the
// point of Rewrite is to keep what Jupyter wrote byte for byte. It remembers
// which names it wrote so spliceObject appends a missing one exactly once.
type objectWriter struct {
	buf     bytes.Buffer
	written map[string]bool
}

// member appends one name/value pair, with the comma JSON needs between them.
func (w *objectWriter) member(name string, raw json.RawMessage) error {
	nameJSON, err := marshalString(name)
	if err != nil {
		return fmt.Errorf("field %q: %w", name, err)
	}
	if w.buf.Len() > 1 {
		w.buf.WriteByte(',')
	}
	w.buf.Write(nameJSON)
	w.buf.WriteByte(':')
	w.buf.Write(raw)
	w.written[name] = true
	return nil
}

// indent lays the compact object out with two spaces and a final newline, the
// way Jupyter writes its own files, so the local copy diffs cleanly against
// the remote one.
func indent(compact []byte) ([]byte, error) {
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "  "); err != nil {
		// Only reachable if a kept member was not valid JSON, which decodeObject
		// rules out; the JSON error is dropped because it could quote the key.
		return nil, fmt.Errorf("rewrite: %w", invalidf("internal error: output is not valid JSON"))
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// synthesize builds the member list of an Info made by hand, in the order
// Jupyter writes its files.
func (i *Info) synthesize() ([]field, error) {
	var fields []field
	for _, p := range i.Ports() {
		fields = append(fields, field{p.Name, json.RawMessage(strconv.Itoa(p.Number))})
	}
	for _, kv := range [...]struct{ name, value string }{
		{"ip", i.IP},
		{"key", i.Key},
		{"transport", i.Transport},
		{"signature_scheme", i.SignatureScheme},
		{"kernel_name", i.KernelName},
	} {
		raw, err := marshalString(kv.value)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", kv.name, err)
		}
		fields = append(fields, field{kv.name, raw})
	}
	return fields, nil
}

// String describes the Info with the key redacted, so printing or logging an
// Info by accident (%v, %+v, %s) cannot leak the secret.
func (i Info) String() string {
	return fmt.Sprintf("connfile.Info{transport=%q ip=%q ports=%v scheme=%q kernel=%q key=%s}",
		i.Transport, i.IP, i.Ports(), i.SignatureScheme, i.KernelName, redacted(i.Key))
}

// GoString is String for %#v, which would otherwise print the key.
func (i Info) GoString() string { return i.String() }

// LogValue keeps the key out of structured logs (log/slog).
func (i Info) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("transport", i.Transport),
		slog.String("ip", i.IP),
		slog.Any("ports", i.Ports()),
		slog.String("signature_scheme", i.SignatureScheme),
		slog.String("kernel_name", i.KernelName),
		slog.String("key", redacted(i.Key)),
	)
}

func redacted(key string) string {
	if key == "" {
		return "(empty)"
	}
	return "(redacted)"
}

// decodeObject reads one JSON object and returns its members in order. It
// rejects anything but exactly one object, and duplicate members, whose
// meaning differs between JSON readers.
func decodeObject(data []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(dec, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, invalidf("not a JSON object (starts with %s)", kindOfToken(tok))
	}
	var fields []field
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(dec, err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, invalidf("member name is not a string (near byte %d)", dec.InputOffset())
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, syntaxError(dec, err)
		}
		if seen[name] {
			return nil, &FieldError{Field: name, Reason: "appears more than once"}
		}
		seen[name] = true
		fields = append(fields, field{name: name, raw: raw})
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, syntaxError(dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalidf("trailing data after the JSON object (near byte %d)", dec.InputOffset())
	}
	return fields, nil
}

// invalidError is a whole-file problem (not one field's) that still matches
// ErrInvalid without repeating its text.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return "connection file: " + e.msg }

// Unwrap makes the error match ErrInvalid.
func (e *invalidError) Unwrap() error { return ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// jsonError wraps a JSON decoding error without repeating its text, because
// encoding/json quotes characters of the input and the input holds the key.
type jsonError struct {
	offset int64
	err    error
}

func (e *jsonError) Error() string {
	if errors.Is(e.err, io.ErrUnexpectedEOF) || errors.Is(e.err, io.EOF) {
		return "connection file: not valid JSON: truncated"
	}
	return fmt.Sprintf("connection file: not valid JSON (near byte %d)", e.offset)
}

// Unwrap exposes the JSON error to errors.As callers and ErrInvalid to errors.Is.
func (e *jsonError) Unwrap() []error { return []error{e.err, ErrInvalid} }

func syntaxError(dec *json.Decoder, err error) error {
	off := dec.InputOffset()
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = se.Offset
	}
	return &jsonError{offset: off, err: err}
}

func kindOfToken(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return "a number"
	}
}

// kindOf names the JSON type of a raw value for error messages, so a wrong
// type is reported without quoting the value.
func kindOf(raw json.RawMessage) string {
	s := bytes.TrimSpace(raw)
	if len(s) == 0 {
		return "nothing"
	}
	switch s[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

func decodeString(f field) (string, error) {
	if kindOf(f.raw) != "a string" {
		return "", &FieldError{Field: f.name, Reason: "want a JSON string, got " + kindOf(f.raw)}
	}
	var s string
	if err := json.Unmarshal(f.raw, &s); err != nil {
		return "", &FieldError{Field: f.name, Reason: "not a valid JSON string"}
	}
	return s, nil
}

func decodePort(f field) (int, error) {
	if k := kindOf(f.raw); k != "a number" {
		return 0, &FieldError{Field: f.name, Reason: "want a JSON integer, got " + k}
	}
	lit := string(bytes.TrimSpace(f.raw))
	n, err := strconv.ParseInt(lit, 10, 32)
	if err != nil {
		if strings.ContainsAny(lit, ".eE") {
			return 0, &FieldError{Field: f.name, Reason: fmt.Sprintf("want an integer, got %s", lit)}
		}
		return 0, &FieldError{Field: f.name, Reason: fmt.Sprintf("port %s is out of range 1..65535", lit)}
	}
	// The range is Validate's to check, so a hand-built Info gets the same words.
	return int(n), nil
}

// marshalString encodes s as a JSON string without HTML escaping, so "<" and
// "&" in unknown members' names stay as Jupyter wrote them.
func marshalString(s string) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return json.RawMessage(bytes.TrimRight(b.Bytes(), "\n")), nil
}
