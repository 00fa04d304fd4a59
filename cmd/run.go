package cmd

import (
	"context"
	"fmt"
	"os"

	"github.com/kq-dev/kq/config"
	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/cobra"
)

// addRunFlags declares the flags of "kq run". They are read through
// config.OverrideLayer (their names match config.Overrides), which is what
// lets a flag that was set beat KQ_* and the file, and one that was not
// leave them alone.
func addRunFlags(c *cobra.Command) {
	f := c.Flags()
	f.String("frontend", "", `frontend command for this run, split like a shell would ("{connection_file}" is replaced)`)
	f.String("kernel", "", "remote kernel command for this run (kq appends -f FILE)")
	f.Bool("keep", false, "leave the kernel running when the session ends and print its connection file")
	f.String("jump", "", `jump hosts "HOST[,HOST]" like ssh -J ("none": ignore ssh config's ProxyJump)`)
	f.Bool("dry-run", false, "print the resolved plan (hops, remote command, forwards) without connecting")
	f.Bool("detach", false, "start the kernel and leave it running without a frontend, until kq stop")
}

func newRunCmd(ctx context.Context, g *globalOptions, stdio IO, sigs <-chan os.Signal, code *int) *cobra.Command {
	c := &cobra.Command{
		Use:   "run PROFILE [-- FRONTEND-ARGS]",
		Short: "Start a remote kernel and a local frontend for PROFILE",
		Args:  cobra.ArbitraryArgs,
		RunE:  runE(ctx, g, stdio, sigs, code),
	}
	addRunFlags(c)
	return c
}

// runE is what "kq PROFILE" and "kq run PROFILE" do.
func runE(ctx context.Context, g *globalOptions, stdio IO, sigs <-chan os.Signal, code *int) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usageError(c, "missing PROFILE")
		}
		var err error
		*code, err = runSession(ctx, c, g, args, stdio, sigs)
		return err
	}
}

// runSession resolves the profile named by args[0] and runs it. Words after
// "--" are appended to the frontend's argv.
func runSession(ctx context.Context, c *cobra.Command, g *globalOptions, args []string, stdio IO, sigs <-chan os.Signal) (int, error) {
	var extra []string
	if dash := c.ArgsLenAtDash(); dash >= 0 {
		args, extra = args[:dash], args[dash:]
	}
	if len(args) != 1 {
		return ExitUsage, usageError(c, "want exactly one PROFILE before '--'")
	}
	opts, err := launcherOptions(c, g, args[0], stdio, sigs)
	if err != nil {
		return ExitUsage, err
	}
	opts.Profile.Frontend = append(opts.Profile.Frontend, extra...)
	opts.Detach, _ = c.Flags().GetBool("detach")
	if dry, _ := c.Flags().GetBool("dry-run"); dry {
		plan, err := launcher.Plan(ctx, opts)
		if err != nil {
			return exitCode(err), err
		}
		fmt.Fprint(stdio.Out, plan)
		return ExitOK, nil
	}
	res, err := launcher.Run(ctx, opts)
	if err != nil {
		return exitCode(err), err
	}
	return res.ExitCode, nil
}

// resolveProfile loads the config and resolves name under the environment
// and the flags that were set.
func resolveProfile(c *cobra.Command, g *globalOptions, name string) (profiles.Profile, error) {
	path, explicit := config.Locate(g.configFile)
	f, err := config.Load(path, explicit)
	if err != nil {
		return profiles.Profile{}, err
	}
	for _, w := range f.Warnings {
		fmt.Fprintf(c.ErrOrStderr(), "kq: warning: %s\n", w)
	}
	return config.Resolve(f, name, c.Flags())
}
