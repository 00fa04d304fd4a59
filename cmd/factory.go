package cmd

import (
	"context"
	"fmt"
	"os"

	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/profiles"
	"github.com/kq-dev/kq/termui"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Factory is what every command shares (cli/cli's cmdutil.Factory): the
// process's context, streams and signals, and the global flags.
type Factory struct {
	// Ctx is the context every launcher call runs under.
	Ctx context.Context
	// IO is the process's streams.
	IO IO
	// Signals delivers SIGINT, SIGTERM and SIGHUP.
	Signals <-chan os.Signal
	// ConfigFile is --config, or "".
	ConfigFile string
	// Verbose and Quiet are -v and -q.
	Verbose, Quiet bool
	// UI is stderr for kq's own lines: colour and the live status line on
	// a terminal, plain lines elsewhere.
	UI *termui.Writer
}

// Warn is kq's one warning printer; the launcher's warnings come here too,
// through launcher.Options.Warn.
func (f *Factory) Warn(format string, args ...any) {
	if f.Quiet {
		return
	}
	fmt.Fprintln(f.UI, f.UI.Prefix(fmt.Sprintf("kq: warning: "+format, args...)))
}

// Profile loads the config and resolves the name under the environment
// and those of flags that were set. A name that is not a profile but a
// host runs with the defaults, and kq says so in one line.
func (f *Factory) Profile(name string, flags *pflag.FlagSet) (profiles.Profile, error) {
	t, err := f.loadTarget(name, flags)
	if err != nil {
		return profiles.Profile{}, err
	}
	p, err := t.resolve(flags)
	switch {
	case err != nil || !t.zeroConfig:
	case t.file.Path == "":
		f.Note("no config file: %s is a host, reached with the defaults", name)
	default:
		f.Note("%s is not a profile in %s: a host, reached with the defaults", name, t.file.Path)
	}
	return p, err
}

// Note is one informational line on stderr, left out by -q.
func (f *Factory) Note(format string, args ...any) {
	if !f.Quiet {
		fmt.Fprintf(f.UI, "kq: "+format+"\n", args...)
	}
}

// inFile is " in PATH", or "" when there is no config file.
func inFile(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

// LauncherOptions resolves the profile name and builds the launcher's
// options around it.
func (f *Factory) LauncherOptions(name string, flags *pflag.FlagSet) (launcher.Options, error) {
	p, err := f.Profile(name, flags)
	if err != nil {
		return launcher.Options{}, err
	}
	return launcher.Options{
		Profile:         p,
		Stdin:           f.IO.In,
		Stdout:          f.IO.Out,
		Stderr:          f.IO.Err,
		StdinIsTerminal: f.IO.InIsTerminal,
		Quiet:           f.Quiet,
		Verbose:         f.Verbose,
		Signals:         f.Signals,
		Warn:            f.Warn,
		Log:             f.UI,
	}, nil
}

// shortOp resolves the profile name and runs fn with a context that the
// first signal cancels: the short commands (ls, stop, interrupt, restart)
// have no frontend to hand Ctrl-C to.
func (f *Factory) shortOp(name string, flags *pflag.FlagSet, fn func(context.Context, launcher.Options) error) error {
	o, err := f.LauncherOptions(name, flags)
	if err != nil {
		return err
	}
	ctx, cancel := f.cancelOnSignal(context.WithCancel(f.Ctx))
	defer cancel()
	return fn(ctx, o)
}

// cancelOnSignal makes the first signal cancel ctx (a command with no
// frontend to hand Ctrl-C to); it takes context.WithCancel's results.
func (f *Factory) cancelOnSignal(ctx context.Context, cancel context.CancelFunc) (context.Context, context.CancelFunc) {
	go func() {
		select {
		case <-f.Signals:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// addSettingFlags declares the flags of settings, named, typed and
// explained as the settings table says. Their values are read only by
// config.OverrideLayer, from the flag set: that is what lets a flag that
// was set beat KQ_* and the file, and one that was not leave them alone.
func addSettingFlags(fs *pflag.FlagSet, settings ...*profiles.Setting) {
	for _, s := range settings {
		switch {
		case s.Flag == "": // a setting without a flag; the tests name each command's flags
		case s.Kind == profiles.KindBool:
			fs.BoolP(s.Flag, s.Shorthand, false, s.Usage)
		default:
			fs.StringP(s.Flag, s.Shorthand, "", s.Usage)
		}
	}
}

// splitAtDash splits args at "--": the words after it go to the frontend.
func splitAtDash(c *cobra.Command, args []string) (before, after []string) {
	if dash := c.ArgsLenAtDash(); dash >= 0 {
		return args[:dash], args[dash:]
	}
	return args, nil
}
