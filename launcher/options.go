package launcher

import (
	"io"
	"os"

	"github.com/kq-dev/kq/profiles"
	"github.com/kq-dev/kq/termui"
)

// Options configures one session.
type Options struct {
	// Profile is the resolved profile.
	Profile profiles.Profile
	// Resolver turns the profile's host into SSH settings.
	Resolver profiles.SSHResolver
	// Stdin, Stdout and Stderr are handed to the frontend; progress lines
	// go to Stderr.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// StdinIsTerminal says a terminal's Ctrl-C reaches the frontend itself.
	StdinIsTerminal bool
	// Quiet silences progress lines; Verbose adds detail to them.
	Quiet, Verbose bool
	// Signals delivers SIGINT, SIGTERM and SIGHUP; nil means none.
	Signals <-chan os.Signal
	// Attach opens the session on an existing kernel instead of starting
	// one; nil starts a new kernel.
	Attach *AttachTarget
	// Detach starts the kernel, says where it is, and returns without a
	// frontend; the kernel stays until kq stop.
	Detach bool
	// SelfArgv runs kq kernel for this profile with the settings it was
	// given ([kq, --config, FILE, kernel, PROFILE, ...]; "-f FILE" is
	// appended): the transient kernelspec of a frontend that owns its
	// kernel.
	SelfArgv []string
	// NoPrompt: never ask anything (no terminal, no askpass); what needs
	// an answer fails at once.
	NoPrompt bool
	// Warn prints a warning, so the caller's one printer says it; nil
	// prints "kq: warning: ..." on Stderr.
	Warn func(format string, args ...any)
	// Log is where kq's own lines and the live status line go (the same
	// stderr); nil means plain lines on Stderr and no status line.
	Log *termui.Writer
}

// AttachTarget names an existing kernel for kq attach.
type AttachTarget struct {
	// Ref is a kq kernel id (or a unique prefix of it), a connection file
	// name in the remote runtime dir, or a remote path.
	Ref string
	// JSON is a connection file given directly (as %connect_info prints
	// it); it wins over Ref.
	JSON []byte
	// IP is where the kernel listens as seen from the host, when that is
	// not what its connection file says.
	IP string
	// StopOnExit stops the kernel when the session ends; by default a
	// session never stops a kernel it did not start.
	StopOnExit bool
}

// Result is how a session ended when it got as far as the frontend.
type Result struct {
	// FrontendRan is true once the frontend process started.
	FrontendRan bool
	// ExitCode is the frontend's exit code (128+N when killed by signal N).
	ExitCode int
}
