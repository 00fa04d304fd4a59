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
	"github.com/kq-dev/kq/termui"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Version is kq's version; release builds set it with -ldflags "-X" (see
// Commit and Date in version.go).
var Version = devVersion

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
	// ErrIsTerminal reports whether Err is a terminal: colour and a live
	// status line (unless NO_COLOR / TERM=dumb).
	ErrIsTerminal bool
	// ErrWidth is Err's terminal width, when it is one.
	ErrWidth func() int
}

// Main runs kq with args (without the program name) and returns the exit
// code. Only main calls os.Exit, so every deferred teardown here runs.
func Main(args []string) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	errFd := int(os.Stderr.Fd())
	stdio := IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, InIsTerminal: term.IsTerminal(int(os.Stdin.Fd())),
		ErrIsTerminal: term.IsTerminal(errFd), ErrWidth: func() int {
			w, _, err := term.GetSize(errFd)
			if err != nil {
				return 80
			}
			return w
		}}
	return Execute(context.Background(), args, stdio, sigs)
}

// Execute is Main with its environment passed in, for tests.
func Execute(ctx context.Context, args []string, stdio IO, sigs <-chan os.Signal) int {
	ui := termui.New(stdio.Err, termui.Options{Terminal: termui.IsTerminal(stdio.ErrIsTerminal, os.Getenv), NoColor: termui.NoColor(os.Getenv),
		Width: stdio.ErrWidth})
	f := &Factory{Ctx: ctx, IO: stdio, Signals: sigs, UI: ui}
	return execute(NewCmdRoot(f), args, stdio, ui)
}

// execute runs root and maps its outcome to an exit code: a frontend's own
// code passes through silently, any other error is reported.
func execute(root *cobra.Command, args []string, stdio IO, ui *termui.Writer) int {
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
	ui.Freeze()
	return report(ui, err)
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
		Version:       thisBuild().String(),
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
	root.AddCommand(NewCmdConfig(f), NewCmdProfiles(f), NewCmdMan(f), NewCmdDoctor(f, nil))
	initCompletion(root)
	addHelpFooter(root, f)
	addHelpTopics(root) // last: a topic joins a command of its name
	usageArgs(root)
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
func report(ui *termui.Writer, err error) int {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "\n", "; ") // errors.Join's parts stay apart
	fmt.Fprintln(ui, ui.Prefix("kq: error: "+msg))
	var h hinter
	if errors.As(err, &h) && h.Hint() != "" {
		fmt.Fprintln(ui, ui.Prefix("kq: hint: "+h.Hint()))
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

// usageArgs makes every argument-count error in the tree a usage error
// (exit 2, with a hint), as flag errors are: cobra's own validators return
// plain errors. A runnable command with subcommands refuses an unknown one
// the same way.
func usageArgs(c *cobra.Command) {
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
	check := c.Args
	if check == nil && c.HasSubCommands() && c.Runnable() {
		check = cobra.NoArgs
	}
	if check == nil {
		return
	}
	c.Args = func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			if cmd.HasSubCommands() && len(args) > 0 {
				return usageError(cmd, fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath()))
			}
			return usageError(cmd, err.Error())
		}
		return nil
	}
}
