package cmd

import (
	"os"
	"strconv"
	"strings"

	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// KernelOptions are what "kq kernel PROFILE -f FILE" was asked to do.
type KernelOptions struct {
	// Factory is what all commands share.
	Factory *Factory
	// Profile names the profile.
	Profile string
	// ConnectionFile is the kernel manager's connection file.
	ConnectionFile string
	// Flags are the command's flags; config takes --kernel, --jump and -F
	// from them (a session's transient kernelspec passes them on).
	Flags *pflag.FlagSet
}

// NewCmdKernel builds "kq kernel", what a kernelspec runs. A non-nil runF
// gets the options instead of running them.
func NewCmdKernel(f *Factory, runF func(*KernelOptions) error) *cobra.Command {
	opts := &KernelOptions{Factory: f}
	var long string
	c := &cobra.Command{
		Use:   "kernel PROFILE -f CONNECTION_FILE",
		Short: "Be the kernel a Jupyter kernel manager launches (JupyterLab, Notebook, VS Code, nbconvert): run the remote kernel on the manager's ports and key",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Profile, opts.Flags = args[0], c.Flags()
			if opts.ConnectionFile == "" {
				opts.ConnectionFile = long
			}
			opts.ConnectionFile = unquote(opts.ConnectionFile)
			if opts.ConnectionFile == "" {
				return usageError(c, "missing -f CONNECTION_FILE")
			}
			if runF != nil {
				return runF(opts)
			}
			return runKernel(opts)
		},
	}
	c.Flags().StringVarP(&opts.ConnectionFile, "connection-file", "f", "", "the connection file the kernel manager wrote")
	// VS Code passes --f=FILE, with quotes when the path has spaces.
	c.Flags().StringVar(&long, "f", "", "same as -f")
	_ = c.Flags().MarkHidden("f")
	addSettingFlags(c.Flags(), profiles.SettingKernel, profiles.SettingJump)
	c.ValidArgsFunction = completeProfile(f)
	addSettingFlags(c.Flags(), schedulerFlags...)
	return c
}

// unquote drops the quotes VS Code puts around a path with spaces in the
// "=" forms of -f.
func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// runKernel runs the kernel until the manager stops it or it dies. The
// manager's pid is JPY_PARENT_PID when jupyter_client set it, else kq's
// parent at start.
func runKernel(o *KernelOptions) error {
	lo, err := o.Factory.LauncherOptions(o.Profile, o.Flags)
	if err != nil {
		return err
	}
	parent := os.Getppid()
	if p, err := strconv.Atoi(strings.TrimSpace(os.Getenv("JPY_PARENT_PID"))); err == nil && p > 0 {
		parent = p
	}
	return launcher.RunKernel(o.Factory.Ctx, launcher.KernelOptions{Options: lo, ConnectionFile: o.ConnectionFile,
		ParentPID: parent, ManagedDir: os.Getenv(launcher.ManagedDirEnv)})
}
