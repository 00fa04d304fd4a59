// Package kinds names the kinds of failure that kq's command layer maps to
// exit codes (DESIGN.md), and attaches a kind and a hint to an error
// without changing its message. It is a leaf: the transport, forwarding,
// remote and session packages all mark their errors with it, and the
// command layer tests them with errors.Is.
package kinds

import "errors"

// The kinds. Test with errors.Is; the errors that carry them say what
// happened and where.
var (
	// Auth: the server refused every credential offered.
	Auth = errors.New("authentication failed")
	// HostKey: the host key is unknown or does not match known_hosts.
	HostKey = errors.New("host key refused")
	// Forward: a port forward could not be set up or was refused.
	Forward = errors.New("forwarding failed")
	// Kernel: the kernel failed to start, wrote a bad connection file,
	// or did not answer.
	Kernel = errors.New("kernel failed")
	// Interrupted: a signal ended the session before the frontend ran.
	Interrupted = errors.New("interrupted")
	// Usage: the request cannot work as given (for example the frontend
	// program does not exist); nothing remote was started.
	Usage = errors.New("usage")
	// Connect: a network failure before SSH spoke, or a link that died;
	// the generic error exit code.
	Connect = errors.New("connect failed")
)

// kindError attaches a kind and an optional hint to an error without
// changing its message.
type kindError struct {
	kind error
	err  error
	hint string
}

func (e *kindError) Error() string { return e.err.Error() }

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// Hint is shown by the command layer as "kq: hint: ...".
func (e *kindError) Hint() string { return e.hint }

// With marks err with kind and hint; a nil err stays nil.
func With(kind error, hint string, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: kind, err: err, hint: hint}
}
