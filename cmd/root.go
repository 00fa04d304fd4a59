// Package cmd is kq's command tree. It is thin on purpose: it parses flags
// into an options struct, asks config for the resolved profile, calls the
// launcher, and turns the outcome into messages, hints and an exit code.
// It is the only package that imports cobra.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kq-dev/kq/config"
	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Version is kq's version; release builds set it with -ldflags "-X".
var Version = "0.1.0-dev"

// Exit codes, as documented in DESIGN.md and the README.
const (
	ExitOK          = 0
	ExitError       = 1
	ExitUsage       = 2
	ExitAuth        = 4
	ExitHostKey     = 5
	ExitForward     = 6
	ExitKernel      = 7
	ExitInterrupted = 130
)

// globalOptions are the flags every command takes.
type globalOptions struct {
	configFile string
	sshConfig  string
	verbose    bool
	quiet      bool
}

// IO is where a command reads and writes; Main uses the process's own.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
	// InIsTerminal reports whether In is a terminal.
	InIsTerminal bool
}

// Main runs kq with args (without the program name) and returns the exit
// code. Only main calls os.Exit, so every deferred teardown here runs.
func Main(args []string) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	stdio := IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, InIsTerminal: term.IsTerminal(int(os.Stdin.Fd()))}
	return Execute(context.Background(), args, stdio, sigs)
}

// Execute is Main with its environment passed in, for tests.
func Execute(ctx context.Context, args []string, stdio IO, sigs <-chan os.Signal) int {
	g := &globalOptions{}
	code := ExitOK
	root := newRootCmd(ctx, g, stdio, sigs, &code)
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	if err := root.Execute(); err != nil {
		return report(stdio.Err, err)
	}
	return code
}

func newRootCmd(ctx context.Context, g *globalOptions, stdio IO, sigs <-chan os.Signal, code *int) *cobra.Command {
	root := &cobra.Command{
		Use:   "kq PROFILE [-- FRONTEND-ARGS]",
		Short: "A Jupyter kernel on a remote machine, in one command",
		Long: `kq starts a Jupyter kernel on the profile's host over SSH, forwards its five
ports over one SSH connection, runs the frontend on a local connection file,
and stops the kernel and removes every file it made when the frontend exits.

"kq PROFILE" is short for "kq run PROFILE".`,
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		RunE:          runE(ctx, g, stdio, sigs, code),
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError(c, err.Error()) })
	pf := root.PersistentFlags()
	pf.StringVar(&g.configFile, "config", "", "config file (default $XDG_CONFIG_HOME/kq/config.yaml; also KQ_CONFIG)")
	pf.StringVarP(&g.sshConfig, "ssh-config", "F", "", "ssh config file to use instead of ~/.ssh/config (like ssh -F)")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "print more detail about each step")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "print nothing but errors")
	addRunFlags(root)
	root.AddCommand(newRunCmd(ctx, g, stdio, sigs, code),
		newLsCmd(ctx, g, stdio, sigs),
		newAttachCmd(ctx, g, stdio, sigs, code),
		newStopCmd(ctx, g, stdio, sigs),
		newSignalCmd(ctx, g, stdio, sigs, "interrupt", "Send SIGINT to a kernel kq started (for frontends that cannot interrupt a remote kernel)", launcher.Interrupt),
		newSignalCmd(ctx, g, stdio, sigs, "restart", "Restart a kernel kq started, with the same key and ports", launcher.Restart))
	return root
}

// usageErr marks a usage error so report gives it exit code 2.
type usageErr struct{ msg, hint string }

func (e *usageErr) Error() string { return e.msg }
func (e *usageErr) Hint() string  { return e.hint }

func usageError(c *cobra.Command, msg string) error {
	return &usageErr{msg: msg, hint: fmt.Sprintf("see '%s --help'", c.CommandPath())}
}

// hinter is any error that knows how to help.
type hinter interface{ Hint() string }

// report prints the one error line and its hint, and returns the exit code
// for err. The error's text never contains the kernel's key: the launcher
// and connfile packages keep it out of every message.
func report(w io.Writer, err error) int {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "\n", "; ") // errors.Join's parts stay apart
	fmt.Fprintf(w, "kq: error: %s\n", msg)
	var h hinter
	if errors.As(err, &h) && h.Hint() != "" {
		fmt.Fprintf(w, "kq: hint: %s\n", h.Hint())
	}
	return exitCode(err)
}

func exitCode(err error) int {
	var ue *usageErr
	switch {
	case errors.As(err, &ue), errors.Is(err, config.ErrConfig), errors.Is(err, profiles.ErrInvalid),
		errors.Is(err, launcher.ErrUsage):
		return ExitUsage
	case errors.Is(err, launcher.ErrInterrupted):
		return ExitInterrupted
	case errors.Is(err, launcher.ErrAuth):
		return ExitAuth
	case errors.Is(err, launcher.ErrHostKey):
		return ExitHostKey
	case errors.Is(err, launcher.ErrForward):
		return ExitForward
	case errors.Is(err, launcher.ErrKernel):
		return ExitKernel
	}
	return ExitError
}
