package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/kq-dev/kq/launcher"
	"github.com/spf13/cobra"
)

// launcherOptions resolves profile name and builds the launcher's options.
func launcherOptions(c *cobra.Command, g *globalOptions, name string, stdio IO, sigs <-chan os.Signal) (launcher.Options, error) {
	p, err := resolveProfile(c, g, name)
	if err != nil {
		return launcher.Options{}, err
	}
	return launcher.Options{
		Profile:         p,
		Stdin:           stdio.In,
		Stdout:          stdio.Out,
		Stderr:          stdio.Err,
		StdinIsTerminal: stdio.InIsTerminal,
		Quiet:           g.quiet,
		Verbose:         g.verbose,
		Signals:         sigs,
	}, nil
}

// shortOp resolves profile name and runs fn with a context that the first
// signal cancels: the short commands (ls, stop, interrupt, restart) have no
// frontend to hand Ctrl-C to.
func shortOp(ctx context.Context, c *cobra.Command, g *globalOptions, name string, stdio IO, sigs <-chan os.Signal,
	fn func(context.Context, launcher.Options) error) error {
	o, err := launcherOptions(c, g, name, stdio, sigs)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	return fn(ctx, o)
}

func newLsCmd(ctx context.Context, g *globalOptions, stdio IO, sigs <-chan os.Signal) *cobra.Command {
	c := &cobra.Command{
		Use:   "ls PROFILE",
		Short: "List the kernels in the remote runtime dir (started by kq or not)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var entries []launcher.KernelEntry
			err := shortOp(ctx, c, g, args[0], stdio, sigs, func(ctx context.Context, o launcher.Options) (err error) {
				entries, err = launcher.List(ctx, o)
				return err
			})
			if err != nil {
				return err
			}
			if asJSON, _ := c.Flags().GetBool("json"); asJSON {
				if entries == nil {
					entries = []launcher.KernelEntry{}
				}
				enc := json.NewEncoder(stdio.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(entries)
			}
			return printEntries(stdio.Out, entries)
		},
	}
	c.Flags().Bool("json", false, "print JSON")
	c.Flags().String("jump", "", `jump hosts "HOST[,HOST]" like ssh -J`)
	return c
}

func printEntries(w io.Writer, entries []launcher.KernelEntry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tSTATE\tBY KQ\tHELD\tFILE")
	for _, e := range entries {
		state := "dead"
		if e.Alive {
			state = "alive"
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

func newAttachCmd(ctx context.Context, g *globalOptions, stdio IO, sigs <-chan os.Signal, code *int) *cobra.Command {
	c := &cobra.Command{
		Use:   "attach PROFILE KERNEL|- [-- FRONTEND-ARGS]",
		Short: "Open a session on an existing kernel (by id, file name or path; - reads %connect_info JSON from stdin)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			var extra []string
			if dash := c.ArgsLenAtDash(); dash >= 0 {
				args, extra = args[:dash], args[dash:]
			}
			if len(args) != 2 {
				return usageError(c, "want PROFILE and KERNEL before '--'")
			}
			o, err := launcherOptions(c, g, args[0], stdio, sigs)
			if err != nil {
				return err
			}
			o.Profile.Frontend = append(o.Profile.Frontend, extra...)
			a := &launcher.AttachTarget{Ref: args[1]}
			a.IP, _ = c.Flags().GetString("ip")
			a.StopOnExit, _ = c.Flags().GetBool("stop-on-exit")
			if args[1] == "-" {
				data, err := io.ReadAll(io.LimitReader(stdio.In, 1<<20))
				if err != nil {
					return fmt.Errorf("read connection JSON from stdin: %w", err)
				}
				a.JSON = data
			}
			o.Attach = a
			res, err := launcher.Run(ctx, o)
			if err != nil {
				return err
			}
			*code = res.ExitCode
			return nil
		},
	}
	f := c.Flags()
	f.String("ip", "", "address the kernel listens on, as seen from the host (default: its connection file's)")
	f.Bool("stop-on-exit", false, "stop the kernel when the session ends (by default an attached kernel is left running)")
	f.String("frontend", "", `frontend command for this run, split like a shell would ("{connection_file}" is replaced)`)
	f.String("jump", "", `jump hosts "HOST[,HOST]" like ssh -J`)
	return c
}

func newStopCmd(ctx context.Context, g *globalOptions, stdio IO, sigs <-chan os.Signal) *cobra.Command {
	c := &cobra.Command{
		Use:   "stop PROFILE [KERNEL...] [--all-kq]",
		Short: "Shut kernels down gracefully (shutdown_request, then signals) and remove their files",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			all, _ := c.Flags().GetBool("all-kq")
			if len(args) < 2 && !all {
				return usageError(c, "name the kernels to stop, or pass --all-kq")
			}
			return shortOp(ctx, c, g, args[0], stdio, sigs, func(ctx context.Context, o launcher.Options) error {
				return launcher.Stop(ctx, o, args[1:], all)
			})
		},
	}
	c.Flags().Bool("all-kq", false, "stop every kernel kq started in the remote runtime dir")
	c.Flags().String("jump", "", `jump hosts "HOST[,HOST]" like ssh -J`)
	return c
}

func newSignalCmd(ctx context.Context, g *globalOptions, stdio IO, sigs <-chan os.Signal, use, short string,
	do func(context.Context, launcher.Options, string) error) *cobra.Command {
	c := &cobra.Command{
		Use:   use + " PROFILE KERNEL",
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return shortOp(ctx, c, g, args[0], stdio, sigs, func(ctx context.Context, o launcher.Options) error {
				return do(ctx, o, args[1])
			})
		},
	}
	c.Flags().String("jump", "", `jump hosts "HOST[,HOST]" like ssh -J`)
	return c
}
