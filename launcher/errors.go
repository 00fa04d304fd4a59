package launcher

import "github.com/kq-dev/kq/launcher/kinds"

// Kinds of failure the command layer maps to exit codes (see DESIGN.md),
// the same values as in package kinds, where the packages below launcher
// mark their errors. Test with errors.Is.
var (
	// ErrAuth: the server refused every credential offered.
	ErrAuth = kinds.Auth
	// ErrHostKey: the host key is unknown or does not match known_hosts.
	ErrHostKey = kinds.HostKey
	// ErrForward: a port forward could not be set up or was refused.
	ErrForward = kinds.Forward
	// ErrKernel: the kernel failed to start, wrote a bad connection file,
	// or did not answer.
	ErrKernel = kinds.Kernel
	// ErrInterrupted: a signal ended the session before the frontend ran.
	ErrInterrupted = kinds.Interrupted
	// ErrUsage: the request cannot work as given; nothing remote started.
	ErrUsage = kinds.Usage
)

// errConnect marks a network failure before SSH spoke; it maps to the
// generic error exit code.
var errConnect = kinds.Connect

func withKind(kind error, hint string, err error) error { return kinds.With(kind, hint, err) }
