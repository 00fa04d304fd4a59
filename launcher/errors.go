package launcher

import "errors"

// Kinds of failure the command layer maps to exit codes (see DESIGN.md).
// Test with errors.Is; the errors that carry them say what happened and
// where.
var (
	// ErrAuth: the server refused every credential offered.
	ErrAuth = errors.New("authentication failed")
	// ErrHostKey: the host key is unknown or does not match known_hosts.
	ErrHostKey = errors.New("host key refused")
	// ErrForward: a port forward could not be set up or was refused.
	ErrForward = errors.New("forwarding failed")
	// ErrKernel: the kernel failed to start, wrote a bad connection file,
	// or did not answer.
	ErrKernel = errors.New("kernel failed")
	// ErrInterrupted: a signal ended the session before the frontend ran.
	ErrInterrupted = errors.New("interrupted")
	// ErrUsage: the request cannot work as given (for example the frontend
	// program does not exist); nothing remote was started.
	ErrUsage = errors.New("usage")
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

func withKind(kind error, hint string, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: kind, err: err, hint: hint}
}
