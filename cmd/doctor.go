package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kq-dev/kq/config"
	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// DoctorOptions are what "kq doctor PROFILE" was asked to do.
type DoctorOptions struct {
	// Factory is what all commands share.
	Factory *Factory
	// Profile names the profile.
	Profile string
	// Flags are the command's flags (--frontend, --kernel, --jump, -F).
	Flags *pflag.FlagSet
}

// NewCmdDoctor builds "kq doctor". A non-nil runF gets the options
// instead of running them.
func NewCmdDoctor(f *Factory, runF func(*DoctorOptions) error) *cobra.Command {
	opts := &DoctorOptions{Factory: f}
	c := &cobra.Command{
		Use:               "doctor PROFILE",
		ValidArgsFunction: completeProfile(f),
		Short:             "Check everything a session of PROFILE needs, one line per check",
		Long: `kq doctor checks, in order and one line each (PASS, FAIL or SKIP, with the
time it took and on a failure a hint): the config parses and the profile
resolves; each hop (jump hosts, then the host) resolves, connects, has a host
key known_hosts knows, and authenticates; the remote Python and ipykernel
import (with versions); the remote runtime dir is usable; a kernel starts,
answers kernel_info_request through the tunnel and is stopped again; the local
frontend is installed; kq's kernelspecs run a kq that exists. A check whose
premise failed is skipped. kq doctor never prompts and never writes
known_hosts, and leaves nothing running or written on either machine.

Exit status: 0 when every check passed, 1 when one failed, 2 for a usage
error, 130 when interrupted.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError(c, "want exactly one PROFILE")
			}
			opts.Profile, opts.Flags = args[0], c.Flags()
			if runF != nil {
				return runF(opts)
			}
			return runDoctor(opts)
		},
	}
	addSettingFlags(c.Flags(), profiles.SettingFrontend, profiles.SettingKernel, profiles.SettingJump)
	return c
}

// runDoctor makes the config check, hands the rest to the launcher, and
// turns the outcome into the exit status: a failed check is 1, silently
// (the report said it all).
func runDoctor(o *DoctorOptions) error {
	f := o.Factory
	ctx, cancel := f.cancelOnSignal(context.WithCancel(f.Ctx))
	defer cancel()
	r := &launcher.DoctorReport{W: f.IO.Out, Verbose: f.Verbose}
	t0 := time.Now()
	lo, err := f.LauncherOptions(o.Profile, o.Flags)
	took := time.Since(t0).Round(100 * time.Microsecond)
	if err != nil {
		r.Add(launcher.Check{Name: "config", Status: launcher.CheckFail, Took: took, Text: err.Error(), Hint: configHint(err)})
		launcher.DoctorNoProfile(ctx, r)
	} else {
		r.Add(launcher.Check{Name: "config", Took: took, Text: configText(f, lo.Profile.Name)})
		launcher.Doctor(ctx, lo, r)
	}
	r.Summary()
	switch {
	case ctx.Err() != nil && f.Ctx.Err() == nil:
		return launcher.ErrInterrupted
	case r.Failed():
		return &exitError{code: ExitError}
	}
	return nil
}

// configText says where the profile came from.
func configText(f *Factory, name string) string {
	path, _ := config.Locate(f.ConfigFile)
	if _, err := os.Stat(path); err != nil {
		return fmt.Sprintf("profile %s resolves (no config file at %s)", name, path)
	}
	return fmt.Sprintf("profile %s resolves, from %s", name, path)
}

// configHint is the error's own hint, else where to look.
func configHint(err error) string {
	var h hinter
	if errors.As(err, &h) && h.Hint() != "" {
		return h.Hint()
	}
	return "fix the config file, or see 'kq --help' for where kq looks for it"
}
