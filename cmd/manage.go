package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// LsOptions are what "kq ls PROFILE" was asked to do.
type LsOptions struct {
	// Factory is what all commands share.
	Factory *Factory
	// Profile names the profile.
	Profile string
	// JSON prints JSON instead of a table.
	JSON bool
	// Flags are the command's flags; config takes --jump and -F from them.
	Flags *pflag.FlagSet
}

// NewCmdLs builds "kq ls". A non-nil runF gets the options instead of
// running them.
func NewCmdLs(f *Factory, runF func(*LsOptions) error) *cobra.Command {
	opts := &LsOptions{Factory: f}
	c := &cobra.Command{
		Use:   "ls PROFILE",
		Short: "List the kernels in the remote runtime dir (started by kq or not)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Profile, opts.Flags = args[0], c.Flags()
			if runF != nil {
				return runF(opts)
			}
			return runLs(opts)
		},
	}
	c.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	addSettingFlags(c.Flags(), profiles.SettingJump)
	c.ValidArgsFunction = completeProfile(f)
	return c
}

// runLs lists the remote kernels, as a table or as JSON.
func runLs(o *LsOptions) error {
	var entries []launcher.KernelEntry
	err := o.Factory.shortOp(o.Profile, o.Flags, func(ctx context.Context, lo launcher.Options) (err error) {
		entries, err = launcher.List(ctx, lo)
		return err
	})
	if err != nil {
		return err
	}
	if !o.JSON {
		return printEntries(o.Factory.IO.Out, entries)
	}
	if entries == nil {
		entries = []launcher.KernelEntry{} // [] rather than null, for jq and friends
	}
	enc := json.NewEncoder(o.Factory.IO.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(entries)
}

func printEntries(w io.Writer, entries []launcher.KernelEntry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	jobs := slices.ContainsFunc(entries, func(e launcher.KernelEntry) bool { return e.Job != nil })
	if jobs {
		return printJobs(tw, entries)
	}
	fmt.Fprintln(tw, "ID\tAGE\tSTATE\tBY KQ\tHELD\tFILE")
	for _, e := range entries {
		state := "dead"
		if e.Alive {
			state = "alive"
		}
		if e.Spare {
			state += " (spare)"
		}
		held := "no"
		switch {
		case e.Held:
			held = "yes"
		case e.Kept:
			held = "kept"
		}
		by := "no"
		if e.KQ {
			by = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, (time.Duration(e.AgeSeconds) * time.Second).String(), state, by, held, e.File)
	}
	return tw.Flush()
}

// printJobs is kq ls for a scheduler profile: each kernel with its job.
func printJobs(tw *tabwriter.Writer, entries []launcher.KernelEntry) error {
	fmt.Fprintln(tw, "ID\tJOB\tJOB STATE\tNODE\tTIME LEFT\tHELD\tFILE")
	for _, e := range entries {
		job, state, node, left := "-", "-", "-", "-"
		if j := e.Job; j != nil {
			job, state = j.ID, j.State
			if j.Reason != "" && j.Reason != "None" {
				state += " (" + j.Reason + ")"
			}
			if j.Node != "" {
				node = j.Node
			}
			if j.TimeLeftSeconds >= 0 {
				left = (time.Duration(j.TimeLeftSeconds) * time.Second).String()
			}
		}
		held := map[bool]string{true: "yes", false: "no"}[e.Held]
		file := e.File
		if file == "" {
			file = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, job, state, node, left, held, file)
	}
	return tw.Flush()
}

// StopOptions are what "kq stop PROFILE" was asked to do.
type StopOptions struct {
	// Factory is what all commands share.
	Factory *Factory
	// Profile names the profile.
	Profile string
	// Kernels name the kernels to stop.
	Kernels []string
	// AllKQ stops every kernel kq started in the remote runtime dir.
	AllKQ bool
	// Flags are the command's flags; config takes --jump and -F from them.
	Flags *pflag.FlagSet
}

// NewCmdStop builds "kq stop". A non-nil runF gets the options instead of
// running them.
func NewCmdStop(f *Factory, runF func(*StopOptions) error) *cobra.Command {
	opts := &StopOptions{Factory: f}
	c := &cobra.Command{
		Use:   "stop PROFILE [KERNEL...] [--all-kq]",
		Short: "Shut kernels down gracefully (shutdown_request, then signals) and remove their files",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) < 2 && !opts.AllKQ {
				return usageError(c, "name the kernels to stop, or pass --all-kq")
			}
			opts.Profile, opts.Kernels, opts.Flags = args[0], args[1:], c.Flags()
			if runF != nil {
				return runF(opts)
			}
			return opts.Factory.shortOp(opts.Profile, opts.Flags, func(ctx context.Context, lo launcher.Options) error {
				return launcher.Stop(ctx, lo, opts.Kernels, opts.AllKQ)
			})
		},
	}
	c.Flags().BoolVar(&opts.AllKQ, "all-kq", false, "stop every kernel kq started in the remote runtime dir")
	addSettingFlags(c.Flags(), profiles.SettingJump)
	c.ValidArgsFunction = completeProfileKernels(f, kernelArgs{})
	return c
}

// signalOp is one of the commands that act on one kernel kq started.
type signalOp struct {
	use, short string
	send       func(context.Context, launcher.Options, string) error
}

var (
	interruptOp = signalOp{"interrupt", "Send SIGINT to a kernel kq started (for frontends that cannot interrupt a remote kernel)", launcher.Interrupt}
	restartOp   = signalOp{"restart", "Restart a kernel kq started, with the same key and ports", launcher.Restart}
)

// SignalOptions are what "kq interrupt" or "kq restart" was asked to do.
type SignalOptions struct {
	// Factory is what all commands share.
	Factory *Factory
	// Op is the command's name: "interrupt" or "restart".
	Op string
	// Profile names the profile.
	Profile string
	// Kernel names the kernel.
	Kernel string
	// Flags are the command's flags; config takes --jump and -F from them.
	Flags *pflag.FlagSet
}

// NewCmdInterrupt builds "kq interrupt". A non-nil runF gets the options
// instead of running them.
func NewCmdInterrupt(f *Factory, runF func(*SignalOptions) error) *cobra.Command {
	return newCmdSignal(f, interruptOp, runF)
}

// NewCmdRestart builds "kq restart". A non-nil runF gets the options
// instead of running them.
func NewCmdRestart(f *Factory, runF func(*SignalOptions) error) *cobra.Command {
	return newCmdSignal(f, restartOp, runF)
}

func newCmdSignal(f *Factory, op signalOp, runF func(*SignalOptions) error) *cobra.Command {
	opts := &SignalOptions{Factory: f, Op: op.use}
	c := &cobra.Command{
		Use:   op.use + " PROFILE KERNEL",
		Short: op.short,
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Profile, opts.Kernel, opts.Flags = args[0], args[1], c.Flags()
			if runF != nil {
				return runF(opts)
			}
			return opts.Factory.shortOp(opts.Profile, opts.Flags, func(ctx context.Context, lo launcher.Options) error {
				return op.send(ctx, lo, opts.Kernel)
			})
		},
	}
	addSettingFlags(c.Flags(), profiles.SettingJump)
	c.ValidArgsFunction = completeProfileKernels(f, kernelArgs{max: 1, kqOnly: true}) // kq's kernels only
	return c
}
