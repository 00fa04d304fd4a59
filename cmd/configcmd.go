package cmd

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/kq-dev/kq/config"
	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/cobra"
)

// NewCmdConfig builds "kq config init" and "kq config path".
func NewCmdConfig(f *Factory) *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Write an example config file, or print where kq looks for it",
		Args:  cobra.NoArgs,
		RunE:  func(c *cobra.Command, args []string) error { return c.Help() },
	}
	c.AddCommand(&cobra.Command{
		Use:   "init",
		Short: "Write a commented example config (never overwrites one)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			path, _ := config.Locate(f.ConfigFile)
			if err := config.Init(path); err != nil {
				return err
			}
			f.Note("wrote %s: an example with two profiles; edit it, then: kq profiles", path)
			return nil
		},
	}, &cobra.Command{
		Use:   "path",
		Short: "Print the config file kq reads (--config, KQ_CONFIG, $XDG_CONFIG_HOME/kq/config.yaml, ~/.config/kq/config.yaml)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			path, _ := config.Locate(f.ConfigFile)
			fmt.Fprintln(f.IO.Out, path)
			if _, err := os.Stat(path); err != nil {
				f.Note("%s does not exist yet; kq config init writes an example there", path)
			}
			return nil
		},
	})
	return c
}

// NewCmdProfiles builds "kq profiles" and "kq profiles show NAME".
func NewCmdProfiles(f *Factory) *cobra.Command {
	c := &cobra.Command{
		Use:   "profiles",
		Short: "List the config's profiles; 'profiles show NAME' prints one resolved, with where each value came from",
		Args:  cobra.NoArgs,
		RunE:  func(c *cobra.Command, args []string) error { return listProfiles(f) },
	}
	show := &cobra.Command{
		Use:               "show PROFILE|HOST",
		Short:             "Print the resolved profile: every setting with its source (default, file:line, environment, flag), and the ssh settings of each hop",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeProfile(f),
	}
	addSettingFlags(show.Flags(), profiles.SettingFrontend, profiles.SettingKernel, profiles.SettingKeep, profiles.SettingJump)
	show.RunE = func(c *cobra.Command, args []string) error { return showProfile(f, c, args[0]) }
	c.AddCommand(show)
	return c
}

// listProfiles prints each profile's name and host.
func listProfiles(f *Factory) error {
	path, explicit := config.Locate(f.ConfigFile)
	file, err := config.Load(path, explicit)
	if err != nil {
		return err
	}
	for _, w := range file.Warnings {
		f.Warn("%s", w)
	}
	if file.Path == "" {
		f.Note("no config file (%s); kq config init writes an example, and kq HOST works without one", path)
		return nil
	}
	tw := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tHOST\tJUMP")
	for _, n := range file.Names() {
		l := file.Profiles[n]
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n, orDash(l.Host, file.Defaults.Host), orDash(l.Jump, file.Defaults.Jump))
	}
	return tw.Flush()
}

func orDash(v, fallback *string) string {
	switch {
	case v != nil:
		return *v
	case fallback != nil:
		return *fallback
	}
	return "-"
}

// showProfile prints the resolved target with its origins, then its hops
// as the ssh config resolves them (nothing is connected to).
func showProfile(f *Factory, c *cobra.Command, name string) error {
	t, err := f.loadTarget(name, c.Flags())
	if err != nil {
		return err
	}
	p, origins, err := t.explain(c.Flags())
	if err != nil {
		return err
	}
	what := "profile " + name + inFile(t.file.Path)
	if t.zeroConfig {
		what = "host " + name + " (not a profile" + inFile(t.file.Path) + ": the defaults)"
	}
	fmt.Fprintln(f.IO.Out, what)
	tw := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
	for _, o := range origins {
		fmt.Fprintf(tw, "  %s\t%s\t(%s)\n", o.Setting.Key, o.Value, o.From)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	hops, err := launcher.DescribeHops(f.Ctx, launcher.Options{Profile: p})
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(f.IO.Out, "ssh config, as ssh -G resolves it:\n"+hops)
	return err
}
