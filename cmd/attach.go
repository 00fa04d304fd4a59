package cmd

import (
	"fmt"
	"io"

	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// AttachOptions are what "kq attach PROFILE KERNEL" was asked to do.
type AttachOptions struct {
	// Factory is what all commands share.
	Factory *Factory
	// Profile names the profile.
	Profile string
	// Kernel is a kernel id, file name or path; "-" reads %connect_info
	// JSON from stdin.
	Kernel string
	// FrontendArgs are the words after "--", appended to the frontend's argv.
	FrontendArgs []string
	// IP is where the kernel listens as seen from the host, or "".
	IP string
	// StopOnExit stops the kernel when the session ends.
	StopOnExit bool
	// Flags are the command's flags; config takes --frontend, --jump and
	// -F from them when they were set.
	Flags *pflag.FlagSet
}

// NewCmdAttach builds "kq attach". A non-nil runF gets the options instead
// of running them.
func NewCmdAttach(f *Factory, runF func(*AttachOptions) error) *cobra.Command {
	opts := &AttachOptions{Factory: f}
	c := &cobra.Command{
		Use:   "attach PROFILE KERNEL|- [-- FRONTEND-ARGS]",
		Short: "Open a session on an existing kernel (by id, file name or path; - reads %connect_info JSON from stdin)",
		Args:  cobra.MinimumNArgs(2),
		// The kernel may also be a file name or "-"; ids are what ls shows.
		ValidArgsFunction: completeProfileKernels(f, kernelArgs{max: 1}),
		RunE: func(c *cobra.Command, args []string) error {
			args, opts.FrontendArgs = splitAtDash(c, args)
			if len(args) != 2 {
				return usageError(c, "want PROFILE and KERNEL before '--'")
			}
			opts.Profile, opts.Kernel, opts.Flags = args[0], args[1], c.Flags()
			if runF != nil {
				return runF(opts)
			}
			return runAttach(opts)
		},
	}
	fs := c.Flags()
	fs.StringVar(&opts.IP, "ip", "", "address the kernel listens on, as seen from the host (default: its connection file's)")
	fs.BoolVar(&opts.StopOnExit, "stop-on-exit", false, "stop the kernel when the session ends (by default an attached kernel is left running)")
	addSettingFlags(fs, profiles.SettingFrontend, profiles.SettingJump)
	return c
}

// runAttach opens a session on the named kernel.
func runAttach(o *AttachOptions) error {
	lo, err := o.Factory.LauncherOptions(o.Profile, o.Flags)
	if err != nil {
		return err
	}
	lo.Profile.Frontend = append(lo.Profile.Frontend, o.FrontendArgs...)
	a := &launcher.AttachTarget{Ref: o.Kernel, IP: o.IP, StopOnExit: o.StopOnExit}
	if o.Kernel == "-" {
		data, err := io.ReadAll(io.LimitReader(o.Factory.IO.In, 1<<20))
		if err != nil {
			return fmt.Errorf("read connection JSON from stdin: %w", err)
		}
		a.JSON = data
	}
	lo.Attach = a
	return frontendExit(launcher.Run(o.Factory.Ctx, lo))
}
