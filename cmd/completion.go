package cmd

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/kq-dev/kq/config"
	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Shell completion (issue 12 point 5). The scripts are cobra's own
// ("kq completion bash|zsh|fish|powershell"); they run "kq __complete ARGS"
// at each Tab, and the functions here answer it. They never print and
// never prompt: whatever fails (a broken config, an unreachable host)
// only leaves candidates out.

// kernelCompletionWithin bounds the SSH round trip that lists a host's
// kernels for completion: a Tab that hangs is worse than none.
const kernelCompletionWithin = 3 * time.Second

// completeProfile is the completion of a command whose first argument is a
// PROFILE (attach it as ValidArgsFunction): profile names from the config
// and Host aliases from the ssh config. Later arguments get nothing.
func completeProfile(f *Factory) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return profileCandidates(f, c.Flags(), toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// kernelArgs says which kernel ids a command's arguments after PROFILE
// take: how many (0 is any number) and whether only kq's kernels count.
type kernelArgs struct {
	max    int
	kqOnly bool
}

// completeProfileKernels is completeProfile, then kernel ids of the
// profile's host for up to k.max arguments, listed over SSH without a
// prompt and within kernelCompletionWithin; ids already on the line are
// not offered again.
func completeProfileKernels(f *Factory, k kernelArgs) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return profileCandidates(f, c.Flags(), toComplete), cobra.ShellCompDirectiveNoFileComp
		}
		// (ArgsLenAtDash is no help here: cobra parses the line once with
		// a "--" added, and pflag keeps that count.)
		if k.max > 0 && len(args) > k.max {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return kernelCandidates(f, c.Flags(), args[0], args[1:], k.kqOnly, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// profileCandidates are the config's profile names (described by their
// host), then the ssh config's Host aliases that are not profiles, all
// starting with prefix.
func profileCandidates(f *Factory, flags *pflag.FlagSet, prefix string) []cobra.Completion {
	var out []cobra.Completion
	seen := map[string]bool{}
	add := func(name, desc string) {
		if !seen[name] && strings.HasPrefix(name, prefix) {
			seen[name] = true
			out = append(out, cobra.CompletionWithDesc(name, desc))
		}
	}
	file := quietConfig(f)
	for _, name := range file.Names() {
		desc := "profile"
		if l, err := file.Profile(name); err == nil {
			if p, err := profiles.Resolve(name, file.Defaults, l); err == nil && p.Host != "" {
				desc = "profile: " + p.Host
			}
		}
		add(name, desc)
	}
	for _, alias := range (profiles.SSHResolver{}).HostAliases(targetSSHConfig(file, flags)) {
		add(alias, "ssh config host")
	}
	return out
}

// quietConfig loads the config kq would read on this command line
// (--config, KQ_CONFIG, the default file), without its warnings; a config
// that does not load is an empty one.
func quietConfig(f *Factory) *config.File {
	path, explicit := config.Locate(f.ConfigFile)
	file, err := config.Load(path, explicit)
	if err != nil {
		return &config.File{Profiles: map[string]profiles.Layer{}}
	}
	return file
}

// targetSSHConfig is the ssh config a session (and zero config's
// alias check) would read for a host that is not a profile: -F/--ssh-config, else KQ_SSH_CONFIG, else the
// config's defaults:, else "" (the user's and the system's).
func targetSSHConfig(file *config.File, flags *pflag.FlagSet) string {
	ov, err := config.OverrideLayer(flags)
	if err == nil && ov.SSHConfig != nil {
		return *ov.SSHConfig
	}
	if file.Defaults.SSHConfig != nil {
		return *file.Defaults.SSHConfig
	}
	return ""
}

// kernelCandidates lists the kernels on profile's host whose ids start
// with prefix and are not in given, each described for the shell.
func kernelCandidates(f *Factory, flags *pflag.FlagSet, profile string, given []string, kqOnly bool, prefix string) []cobra.Completion {
	quiet := *f // the same resolution as the command's, without its warnings
	quiet.IO.Err, quiet.Quiet = io.Discard, true
	p, err := quiet.Profile(profile, flags)
	if err != nil {
		return nil
	}
	ctx, cancel := f.cancelOnSignal(context.WithTimeout(f.Ctx, kernelCompletionWithin))
	defer cancel()
	entries, err := launcher.List(ctx, launcher.Options{Profile: p, Stdin: strings.NewReader(""),
		Stdout: io.Discard, Stderr: io.Discard, Quiet: true, NoPrompt: true, Warn: func(string, ...any) {}})
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, e := range entries {
		if (kqOnly && !e.KQ) || slices.Contains(given, e.ID) || !strings.HasPrefix(e.ID, prefix) {
			continue
		}
		out = append(out, cobra.CompletionWithDesc(e.ID, describeKernel(e)))
	}
	return out
}

// describeKernel is a kernel's line in the shell's list: whose it is,
// whether a session holds it, and its age.
func describeKernel(e launcher.KernelEntry) string {
	var parts []string
	switch {
	case !e.KQ:
		parts = append(parts, "started outside kq")
	case e.Held:
		parts = append(parts, "kq's, held by a session")
	case e.Kept:
		parts = append(parts, "kq's, kept")
	default:
		parts = append(parts, "kq's")
	}
	if !e.Alive {
		parts = append(parts, "dead")
	}
	parts = append(parts, fmt.Sprintf("%s old", time.Duration(e.AgeSeconds)*time.Second))
	return strings.Join(parts, ", ")
}

// initCompletion adds cobra's "completion" command now (cobra would add it
// only at Execute, too late for the generated docs) and makes a shell it
// has no script for a usage error rather than a silent help page.
func initCompletion(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		c.Long += `
Profile names from the config and Host aliases from the ssh config (with its
Includes) complete wherever a PROFILE goes; kernel ids complete for attach,
stop, interrupt and restart when the host answers without a prompt within a
few seconds. --config, -F and exported KQ_CONFIG and KQ_SSH_CONFIG apply.
`
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError(c, "name a shell: bash, zsh, fish or powershell")
			}
			return &usageErr{msg: fmt.Sprintf("no completion script for shell %q", args[0]),
				hint: "kq completion bash|zsh|fish|powershell"}
		}
	}
}
