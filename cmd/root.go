// Package cmd is kq's command tree. It is thin on purpose: each command
// parses its flags into an options struct and makes one call into the
// launcher, and this file turns the outcome into messages, hints and an
// exit code. It is the only package that imports cobra.
//
// Commands follow cli/cli's pkg/cmd layout: NewCmdX(f, runF) builds the
// command, and a non-nil runF receives the parsed options instead of
// running them, so tests can check parsing without a session.
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

// IO is where a command reads and writes; Main uses the process's own.
type IO struct {
	// In is the frontend's stdin, and where "kq attach P -" reads JSON.
	In io.Reader
	// Out and Err are the frontend's stdout and stderr; kq's own lines go
	// to Err.
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
	f := &Factory{Ctx: ctx, IO: stdio, Signals: sigs}
	return execute(NewCmdRoot(f), args, stdio)
}

// execute runs root and maps its outcome to an exit code: a frontend's own
// code passes through silently, any other error is reported.
func execute(root *cobra.Command, args []string, stdio IO) int {
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	err := root.Execute()
	var ee *exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	}
	return report(stdio.Err, err)
}

// NewCmdRoot builds the whole command tree. The root itself runs a session:
// "kq PROFILE" is short for "kq run PROFILE".
func NewCmdRoot(f *Factory) *cobra.Command {
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
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError(c, err.Error()) })
	pf := root.PersistentFlags()
	pf.StringVar(&f.ConfigFile, "config", "", "config file (default $XDG_CONFIG_HOME/kq/config.yaml; also KQ_CONFIG)")
	addSettingFlags(pf, profiles.SettingSSHConfig)
	pf.BoolVarP(&f.Verbose, "verbose", "v", false, "print more detail about each step")
	pf.BoolVarP(&f.Quiet, "quiet", "q", false, "print nothing but errors")
	bindRun(root, f, nil)
	root.AddCommand(NewCmdRun(f, nil), NewCmdLs(f, nil), NewCmdAttach(f, nil), NewCmdStop(f, nil),
		NewCmdInterrupt(f, nil), NewCmdRestart(f, nil), NewCmdKernel(f, nil), NewCmdKernelspec(f))
	root.AddCommand(NewCmdDoctor(f, nil))
	return root
}

// exitError carries the frontend's exit code out of a command as an
// ordinary error, so commands return one error instead of a code beside it
// (cli/cli's cmdutil.ExitError does the same). It is never printed.
type exitError struct{ code int }

// Error is for logs and tests; execute never prints it.
func (e *exitError) Error() string { return fmt.Sprintf("frontend exited with code %d", e.code) }

// frontendExit is a session's outcome as one error: the launcher's, or the
// frontend's non-zero exit code.
func frontendExit(res launcher.Result, err error) error {
	if err != nil {
		return err
	}
	if res.ExitCode != ExitOK {
		return &exitError{code: res.ExitCode}
	}
	return nil
}

// usageErr marks a usage error so report gives it exit code 2.
type usageErr struct{ msg, hint string }

// Error is the usage problem.
func (e *usageErr) Error() string { return e.msg }

// Hint points at the command's --help.
func (e *usageErr) Hint() string { return e.hint }

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
