package cmd

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// RunOptions are what "kq run PROFILE" (and "kq PROFILE") was asked to do.
type RunOptions struct {
	// Factory is what all commands share.
	Factory *Factory
	// Profile names the profile.
	Profile string
	// FrontendArgs are the words after "--", appended to the frontend's argv.
	FrontendArgs []string
	// DryRun prints the plan instead of connecting.
	DryRun bool
	// Connect, with DryRun, asks the profile's scheduler for the job's
	// estimated start (nothing is submitted).
	Connect bool
	// Detach leaves the kernel running without a frontend.
	Detach bool
	// Flags are the command's flags; config takes the setting flags that
	// were set (--frontend, --kernel, --keep, --jump, -F) from them.
	Flags *pflag.FlagSet
}

// NewCmdRun builds "kq run". A non-nil runF gets the options instead of
// running them.
func NewCmdRun(f *Factory, runF func(*RunOptions) error) *cobra.Command {
	c := &cobra.Command{
		Use:   "run PROFILE [-- FRONTEND-ARGS]",
		Short: "Start a remote kernel and a local frontend for PROFILE",
		Args:  cobra.ArbitraryArgs,
	}
	bindRun(c, f, runF)
	return c
}

// bindRun gives c the flags and the action of "kq run"; the root command
// gets them too, which is what makes "kq PROFILE" mean "kq run PROFILE".
func bindRun(c *cobra.Command, f *Factory, runF func(*RunOptions) error) {
	opts := &RunOptions{Factory: f}
	c.ValidArgsFunction = completeProfile(f)
	fs := c.Flags()
	addSettingFlags(fs, profiles.SettingFrontend, profiles.SettingKernel, profiles.SettingKeep, profiles.SettingJump)
	addSettingFlags(fs, schedulerFlags...)
	fs.BoolVar(&opts.DryRun, "dry-run", false, "print the resolved plan (hops, remote command, forwards) without connecting")
	fs.BoolVar(&opts.Connect, "connect", false, "with --dry-run on a scheduler profile: ask the login node's scheduler when the job would start (sbatch --test-only)")
	fs.BoolVar(&opts.Detach, "detach", false, "start the kernel and leave it running without a frontend, until kq stop")
	c.RunE = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usageError(c, "missing PROFILE")
		}
		args, opts.FrontendArgs = splitAtDash(c, args)
		if len(args) != 1 {
			return usageError(c, "want exactly one PROFILE before '--'")
		}
		opts.Profile, opts.Flags = args[0], c.Flags()
		if opts.Connect && !opts.DryRun {
			return usageError(c, "--connect goes with --dry-run")
		}
		if runF != nil {
			return runF(opts)
		}
		return runRun(opts)
	}
}

// runRun resolves the profile and runs the session, or prints its plan.
func runRun(o *RunOptions) error {
	lo, err := o.Factory.LauncherOptions(o.Profile, o.Flags)
	if err != nil {
		return err
	}
	lo.Profile.Frontend = append(lo.Profile.Frontend, o.FrontendArgs...)
	lo.Detach = o.Detach
	if lo.SelfArgv, err = selfArgv(o.Factory, o.Profile, o.Flags); err != nil {
		return err
	}
	if o.DryRun {
		plan, err := launcher.Plan(o.Factory.Ctx, lo)
		if err != nil {
			return err
		}
		if _, err = fmt.Fprint(o.Factory.IO.Out, plan); err != nil || !o.Connect {
			return err
		}
		est, err := launcher.PlanStart(o.Factory.Ctx, lo)
		if err != nil {
			return err
		}
		_, err = fmt.Fprint(o.Factory.IO.Out, est)
		return err
	}
	return frontendExit(launcher.Run(o.Factory.Ctx, lo))
}

// schedulerFlags are the batch job settings run and kernel take for one
// run (a session's transient kernelspec passes them on).
var schedulerFlags = []*profiles.Setting{profiles.SettingSlurmTime, profiles.SettingSlurmGres,
	profiles.SettingSlurmPartition, profiles.SettingQueueTimeout}

// selfArgv runs "kq kernel PROFILE" with the settings this command was
// given (config file, ssh config, kernel command, jump hosts), for the
// transient kernelspec of a frontend that owns its kernel.
func selfArgv(f *Factory, profile string, flags *pflag.FlagSet) ([]string, error) {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.Abs(exe)
	}
	if err != nil {
		return nil, fmt.Errorf("find kq's own path: %w", err)
	}
	argv := []string{exe}
	if f.ConfigFile != "" {
		cfg, err := filepath.Abs(f.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("config path: %w", err)
		}
		argv = append(argv, "--config", cfg)
	}
	if f.Verbose {
		argv = append(argv, "-v")
	}
	argv = append(argv, "kernel", profile)
	for _, st := range append([]*profiles.Setting{profiles.SettingSSHConfig, profiles.SettingKernel, profiles.SettingJump}, schedulerFlags...) {
		if fl := flags.Lookup(st.Flag); fl != nil && fl.Changed {
			argv = append(argv, "--"+st.Flag, fl.Value.String())
		}
	}
	return argv, nil
}
