package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/kq-dev/kq/config"
	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/launcher/kernelspec"
	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// NewCmdKernelspec builds "kq kernelspec": install, list and remove the
// Jupyter kernelspecs that run "kq kernel PROFILE".
func NewCmdKernelspec(f *Factory) *cobra.Command {
	c := &cobra.Command{
		Use:   "kernelspec",
		Short: "Install, list and remove Jupyter kernelspecs that start a profile's remote kernel",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return usageError(c, "name a subcommand: install, list or remove")
		},
	}
	c.AddCommand(NewCmdKernelspecInstall(f, nil), NewCmdKernelspecList(f, nil), NewCmdKernelspecRemove(f, nil))
	return c
}

// KernelspecInstallOptions are what "kq kernelspec install PROFILE" was
// asked to do.
type KernelspecInstallOptions struct {
	// Factory is what all commands share.
	Factory *Factory
	// Profile names the profile.
	Profile string
	// Name is the spec's name; "" derives it from the profile.
	Name string
	// DisplayName is what kernel pickers show; "" is "PROFILE (remote)".
	DisplayName string
	// User, SysPrefix and Prefix choose where the spec goes: Jupyter's
	// user data dir (the default), sys.prefix of the local Python with
	// Jupyter, or PREFIX/share/jupyter.
	User, SysPrefix bool
	Prefix          string
	// NoCheck skips the test connection (and the server's kernelspec).
	NoCheck bool
	// Force replaces a spec of that name that kq did not write.
	Force bool
	// Flags are the command's flags (with the global ones): -F is read
	// from them.
	Flags *pflag.FlagSet
}

// NewCmdKernelspecInstall builds "kq kernelspec install". A non-nil runF
// gets the options instead of running them.
func NewCmdKernelspecInstall(f *Factory, runF func(*KernelspecInstallOptions) error) *cobra.Command {
	opts := &KernelspecInstallOptions{Factory: f}
	c := &cobra.Command{
		Use:   "install PROFILE [--name NAME] [--display-name TEXT] [--user | --sys-prefix | --prefix DIR]",
		Short: "Make PROFILE a kernel in Jupyter's kernel pickers (runs kq kernel PROFILE)",
		Args:  cobra.ExactArgs(1),
		// The spec's name is the profile's: the same names complete.
		ValidArgsFunction: completeProfile(f),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Profile, opts.Flags = args[0], c.Flags()
			if err := opts.validate(c); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runKernelspecInstall(opts)
		},
	}
	fs := c.Flags()
	fs.StringVar(&opts.Name, "name", "", "kernelspec name (default: the profile's name, lowercased, other characters as '-')")
	fs.StringVar(&opts.DisplayName, "display-name", "", `name shown in kernel pickers (default "PROFILE (remote)")`)
	fs.BoolVar(&opts.User, "user", false, "install in Jupyter's user data dir (the default)")
	fs.BoolVar(&opts.SysPrefix, "sys-prefix", false, "install in sys.prefix of the local Python that has Jupyter")
	fs.StringVar(&opts.Prefix, "prefix", "", "install in DIR/share/jupyter/kernels")
	fs.BoolVar(&opts.NoCheck, "no-check", false, "do not test-connect (nor read the server's kernelspec) first")
	fs.BoolVar(&opts.Force, "force", false, "replace a kernelspec of that name that kq did not write")
	return c
}

// validate refuses a bad name or more than one destination (exit 2).
func (o *KernelspecInstallOptions) validate(c *cobra.Command) error {
	if o.Name != "" {
		if err := kernelspec.CheckName(o.Name); err != nil {
			return usageError(c, err.Error())
		}
	}
	n := 0
	for _, set := range []bool{o.User, o.SysPrefix, o.Prefix != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return usageError(c, "choose one of --user, --sys-prefix and --prefix")
	}
	return nil
}

// runKernelspecInstall resolves the profile, test-connects, and writes
// the spec.
func runKernelspecInstall(o *KernelspecInstallOptions) error {
	f := o.Factory
	lo, err := f.LauncherOptions(o.Profile, o.Flags)
	if err != nil {
		return err
	}
	argv, err := o.kernelArgv(lo.Profile)
	if err != nil {
		return err
	}
	kernelsDir, err := o.kernelsDir()
	if err != nil {
		return err
	}
	rk, err := o.inspect(lo)
	if err != nil {
		return err
	}
	spec, logos := o.spec(argv, rk)
	name := o.Name
	if name == "" {
		name = kernelspec.DefaultName(o.Profile)
	}
	dir, err := kernelspec.Install(kernelsDir, name, spec, logos, o.Force)
	if err != nil {
		return err
	}
	fmt.Fprintf(f.IO.Err, "kq: installed kernelspec %s in %s\n", name, dir)
	if f.Verbose {
		fmt.Fprintf(f.IO.Err, "kq: its argv: %s\n", strings.Join(argv, " "))
	}
	o.warnIfHidden(name, dir)
	return nil
}

// kernelArgv is what Jupyter runs: kq by absolute path (never a name
// Jupyter or VS Code would rewrite, as they do "python"), and the config
// and ssh config this install used, which a GUI's environment lacks.
func (o *KernelspecInstallOptions) kernelArgv(p profiles.Profile) ([]string, error) {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.Abs(exe)
	}
	if err != nil {
		return nil, fmt.Errorf("find kq's own path: %w", err)
	}
	if strings.HasPrefix(strings.ToLower(filepath.Base(exe)), "python") {
		return nil, fmt.Errorf("kq's own path %s is named like python, which Jupyter would replace with its own interpreter", exe)
	}
	argv := []string{exe}
	if path, explicit := config.Locate(o.Factory.ConfigFile); explicit {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("config path: %w", err)
		}
		argv = append(argv, "--config", abs)
	}
	if fl := o.Flags.Lookup(profiles.SettingSSHConfig.Flag); (fl != nil && fl.Changed) || os.Getenv(profiles.SettingSSHConfig.Env) != "" {
		sc := p.SSHConfig
		if !strings.HasPrefix(sc, "~") {
			if sc, err = filepath.Abs(sc); err != nil {
				return nil, fmt.Errorf("ssh config path: %w", err)
			}
		}
		argv = append(argv, "-F", sc)
	}
	o.warnUnrecorded()
	return append(argv, "kernel", o.Profile, "-f", "{connection_file}"), nil
}

// warnUnrecorded: KQ_* settings of this shell do not reach a kernel that
// Jupyter starts; only the config file and the ssh config are recorded.
func (o *KernelspecInstallOptions) warnUnrecorded() {
	for _, s := range profiles.Settings {
		if s.Env != "" && s != profiles.SettingSSHConfig && os.Getenv(s.Env) != "" {
			o.Factory.Warn("%s is set here, but the kernelspec does not record it; put it in the profile", s.Env)
		}
	}
}

// kernelsDir is where the spec goes, as --user, --sys-prefix or --prefix
// say.
func (o *KernelspecInstallOptions) kernelsDir() (string, error) {
	switch {
	case o.Prefix != "":
		abs, err := filepath.Abs(o.Prefix)
		if err != nil {
			return "", fmt.Errorf("prefix: %w", err)
		}
		return filepath.Join(abs, "share", "jupyter", "kernels"), nil
	case o.SysPrefix:
		py, err := kernelspec.FindPython(o.Factory.Ctx, kernelspec.PythonCandidates)
		if err != nil {
			return "", &hintError{err: err, hint: "install Jupyter, or name the prefix with --prefix DIR"}
		}
		if o.Factory.Verbose {
			fmt.Fprintf(o.Factory.IO.Err, "kq: sys.prefix %s, from %s\n", py.Prefix, py.Executable)
		}
		return filepath.Join(py.Prefix, "share", "jupyter", "kernels"), nil
	}
	data, err := kernelspec.DataDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(data, "kernels"), nil
}

// inspect test-connects and reads the server's kernelspec, unless
// --no-check; a signal cancels it.
func (o *KernelspecInstallOptions) inspect(lo launcher.Options) (launcher.RemoteKernel, error) {
	if o.NoCheck {
		return launcher.RemoteKernel{Note: "not connected (--no-check)"}, nil
	}
	ctx, cancel := context.WithCancel(o.Factory.Ctx)
	defer cancel()
	go func() {
		select {
		case <-o.Factory.Signals:
			cancel()
		case <-ctx.Done():
		}
	}()
	rk, err := launcher.InspectKernel(ctx, lo)
	if err != nil {
		return rk, withHint(fmt.Errorf("test connection: %w", err),
			"--no-check installs without connecting (a kernel that Jupyter starts can never prompt)")
	}
	return rk, nil
}

// spec is the kernel.json, with the language and logos of the server's
// own spec when it was read.
func (o *KernelspecInstallOptions) spec(argv []string, rk launcher.RemoteKernel) (*kernelspec.Spec, map[string][]byte) {
	display := o.DisplayName
	if display == "" {
		display = o.Profile + " (remote)"
	}
	meta, _ := json.Marshal(kernelspec.KQMeta{Profile: o.Profile, Version: Version})
	s := &kernelspec.Spec{Argv: argv, DisplayName: display, Language: "python", InterruptMode: "signal",
		Metadata: map[string]json.RawMessage{"kq": meta}}
	if rk.Found && rk.Spec.Language != "" {
		s.Language = rk.Spec.Language
	}
	switch {
	case !rk.Found:
		o.Factory.Warn("%s; language %q, no logo", rk.Note, s.Language)
	case rk.Note != "":
		o.Factory.Warn("%s; no logo", rk.Note)
	}
	return s, rk.Logos
}

// warnIfHidden says when Jupyter will not show the spec just written: its
// dir is not searched, or an earlier spec of the same name wins.
func (o *KernelspecInstallOptions) warnIfHidden(name, dir string) {
	dirs, _ := searchDirs(o.Factory.Ctx)
	if !slices.Contains(dirs, filepath.Dir(dir)) {
		o.Factory.Warn("Jupyter does not search %s; add %s to JUPYTER_PATH", filepath.Dir(dir), filepath.Dir(filepath.Dir(dir)))
		return
	}
	for _, e := range kernelspec.List(dirs) {
		if e.Name == name {
			if e.Dir != dir {
				o.Factory.Warn("Jupyter uses the kernelspec %s in %s, which comes first in its search path", name, e.Dir)
			}
			return
		}
	}
}

// searchDirs is Jupyter's kernelspec search path here.
func searchDirs(ctx context.Context) ([]string, error) { return kernelspec.SearchPath(ctx) }

// hintError adds a hint to an error that has none; kinds stay visible to
// errors.Is.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }
func (e *hintError) Hint() string  { return e.hint }

// withHint adds hint to err's own hint, if it has one.
func withHint(err error, hint string) error {
	var h hinter
	if errors.As(err, &h) && h.Hint() != "" {
		hint = h.Hint() + "; " + hint
	}
	return &hintError{err: err, hint: hint}
}

// KernelspecListOptions are what "kq kernelspec list" was asked to do.
type KernelspecListOptions struct {
	// Factory is what all commands share.
	Factory *Factory
	// JSON prints JSON instead of a table.
	JSON bool
}

// NewCmdKernelspecList builds "kq kernelspec list". A non-nil runF gets
// the options instead of running them.
func NewCmdKernelspecList(f *Factory, runF func(*KernelspecListOptions) error) *cobra.Command {
	opts := &KernelspecListOptions{Factory: f}
	c := &cobra.Command{
		Use:   "list [--json]",
		Short: "List Jupyter's kernelspecs in its search order, marking kq's, shadowed ones and missing programs",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runKernelspecList(opts)
		},
	}
	c.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return c
}

// kernelspecListing is list --json's output.
type kernelspecListing struct {
	SearchPath  []string           `json:"search_path"`
	Kernelspecs []kernelspec.Entry `json:"kernelspecs"`
}

func runKernelspecList(o *KernelspecListOptions) error {
	dirs, err := searchDirs(o.Factory.Ctx)
	if err != nil {
		return err
	}
	entries := kernelspec.List(dirs)
	if !o.JSON {
		return printKernelspecs(o.Factory.IO.Out, entries)
	}
	if entries == nil {
		entries = []kernelspec.Entry{}
	}
	enc := json.NewEncoder(o.Factory.IO.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(kernelspecListing{SearchPath: dirs, Kernelspecs: entries})
}

func printKernelspecs(w io.Writer, entries []kernelspec.Entry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKQ PROFILE\tSTATUS\tDIR")
	for _, e := range entries {
		profile := "-"
		if e.KQ {
			profile = e.Profile
		}
		var status []string
		if e.Shadowed {
			status = append(status, "shadowed")
		}
		if e.MissingProgram {
			status = append(status, "program missing")
		}
		if e.Err != "" {
			status = append(status, "unreadable")
		}
		if len(status) == 0 {
			status = []string{"ok"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Name, profile, strings.Join(status, ","), e.Dir)
	}
	return tw.Flush()
}

// KernelspecRemoveOptions are what "kq kernelspec remove NAME" was asked
// to do.
type KernelspecRemoveOptions struct {
	// Factory is what all commands share.
	Factory *Factory
	// Name names the spec.
	Name string
	// Force removes a spec kq did not write.
	Force bool
}

// NewCmdKernelspecRemove builds "kq kernelspec remove". A non-nil runF
// gets the options instead of running them.
func NewCmdKernelspecRemove(f *Factory, runF func(*KernelspecRemoveOptions) error) *cobra.Command {
	opts := &KernelspecRemoveOptions{Factory: f}
	c := &cobra.Command{
		Use:   "remove NAME [--force]",
		Short: "Remove the kernelspec Jupyter uses under NAME (only kq's, unless --force)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Name = strings.ToLower(args[0])
			if err := kernelspec.CheckName(opts.Name); err != nil {
				return usageError(c, err.Error())
			}
			if runF != nil {
				return runF(opts)
			}
			return runKernelspecRemove(opts)
		},
	}
	c.Flags().BoolVar(&opts.Force, "force", false, "remove it even if kq did not write it")
	return c
}

func runKernelspecRemove(o *KernelspecRemoveOptions) error {
	dirs, err := searchDirs(o.Factory.Ctx)
	if err != nil {
		return err
	}
	removed, next, err := kernelspec.Remove(dirs, o.Name, o.Force)
	if errors.Is(err, kernelspec.ErrNotFound) {
		return &hintError{err: err, hint: "kq kernelspec list shows the kernelspecs Jupyter sees"}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Factory.IO.Err, "kq: removed kernelspec %s (%s)\n", removed.Name, removed.Dir)
	if next != nil {
		fmt.Fprintf(o.Factory.IO.Err, "kq: Jupyter now uses the kernelspec %s in %s\n", next.Name, next.Dir)
	}
	return nil
}
