package cmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/profiles"
	"github.com/kq-dev/kq/termui"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func testFactory() (*Factory, *bytes.Buffer) {
	var errBuf bytes.Buffer
	return &Factory{Ctx: context.Background(), IO: IO{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: &errBuf},
		UI: termui.New(&errBuf, termui.Options{})}, &errBuf
}

// runCmd executes c with args, as a standalone command.
func runCmd(t *testing.T, c *cobra.Command, args ...string) error {
	t.Helper()
	c.SetArgs(args)
	c.SetOut(&bytes.Buffer{})
	c.SetErr(&bytes.Buffer{})
	c.SilenceUsage, c.SilenceErrors = true, true
	return c.Execute()
}

// changed lists the flags of fs that were set, sorted.
func changed(fs *pflag.FlagSet) []string {
	var out []string
	fs.Visit(func(f *pflag.Flag) { out = append(out, f.Name) })
	sort.Strings(out)
	return out
}

func TestRunOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		profile string
		extra   []string
		dry     bool
		detach  bool
		set     []string
	}{
		{"profile only", []string{"gpu"}, "gpu", nil, false, false, nil},
		{"dotted name", []string{"gpu.example.org"}, "gpu.example.org", nil, false, false, nil},
		{"frontend args", []string{"gpu", "--", "--style", "x"}, "gpu", []string{"--style", "x"}, false, false, nil},
		{"setting flags", []string{"--kernel", "k", "--keep", "--jump=a,b", "gpu", "--frontend", "f"}, "gpu", nil, false, false,
			[]string{"frontend", "jump", "keep", "kernel"}},
		{"dry run and detach", []string{"--dry-run", "--detach", "gpu"}, "gpu", nil, true, true, []string{"detach", "dry-run"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := testFactory()
			var got *RunOptions
			c := NewCmdRun(f, func(o *RunOptions) error { got = o; return nil })
			if err := runCmd(t, c, tt.args...); err != nil {
				t.Fatal(err)
			}
			if got.Profile != tt.profile || !reflect.DeepEqual(got.FrontendArgs, tt.extra) || got.DryRun != tt.dry ||
				got.Detach != tt.detach || got.Factory != f {
				t.Fatalf("got %+v", got)
			}
			if set := changed(got.Flags); !reflect.DeepEqual(set, tt.set) {
				t.Fatalf("flags set %q, want %q", set, tt.set)
			}
		})
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"a", "b"}, {"--", "x"}} {
		f, _ := testFactory()
		err := runCmd(t, NewCmdRun(f, func(*RunOptions) error { t.Fatal("ran"); return nil }), args...)
		if exitCode(err) != ExitUsage {
			t.Errorf("%q: got %v", args, err)
		}
	}
}

func TestAttachOptions(t *testing.T) {
	f, _ := testFactory()
	var got *AttachOptions
	c := NewCmdAttach(f, func(o *AttachOptions) error { got = o; return nil })
	if err := runCmd(t, c, "p", "1a2b", "--ip", "10.0.0.2", "--stop-on-exit", "--jump", "j", "--", "x"); err != nil {
		t.Fatal(err)
	}
	want := AttachOptions{Factory: f, Profile: "p", Kernel: "1a2b", FrontendArgs: []string{"x"}, IP: "10.0.0.2",
		StopOnExit: true, Flags: got.Flags}
	if !reflect.DeepEqual(*got, want) || !reflect.DeepEqual(changed(got.Flags), []string{"ip", "jump", "stop-on-exit"}) {
		t.Fatalf("got %+v", got)
	}
	if err := runCmd(t, NewCmdAttach(f, nil), "p", "k", "extra"); exitCode(err) != ExitUsage {
		t.Fatalf("three words before --: %v", err)
	}
}

func TestShortCommandOptions(t *testing.T) {
	f, _ := testFactory()
	var ls *LsOptions
	if err := runCmd(t, NewCmdLs(f, func(o *LsOptions) error { ls = o; return nil }), "p", "--json"); err != nil ||
		ls.Profile != "p" || !ls.JSON {
		t.Fatalf("ls: %v %+v", err, ls)
	}
	var stop *StopOptions
	if err := runCmd(t, NewCmdStop(f, func(o *StopOptions) error { stop = o; return nil }), "p", "a", "b"); err != nil ||
		stop.Profile != "p" || !reflect.DeepEqual(stop.Kernels, []string{"a", "b"}) || stop.AllKQ {
		t.Fatalf("stop: %v %+v", err, stop)
	}
	if err := runCmd(t, NewCmdStop(f, func(o *StopOptions) error { stop = o; return nil }), "p", "--all-kq"); err != nil ||
		len(stop.Kernels) != 0 || !stop.AllKQ {
		t.Fatalf("stop --all-kq: %v %+v", err, stop)
	}
	if err := runCmd(t, NewCmdStop(f, nil), "p"); exitCode(err) != ExitUsage {
		t.Fatalf("stop without kernels: %v", err)
	}
	for _, newCmd := range []func(*Factory, func(*SignalOptions) error) *cobra.Command{NewCmdInterrupt, NewCmdRestart} {
		var sig *SignalOptions
		c := newCmd(f, func(o *SignalOptions) error { sig = o; return nil })
		if err := runCmd(t, c, "p", "k", "--jump", "none"); err != nil || sig.Profile != "p" || sig.Kernel != "k" ||
			sig.Op != c.Name() || !sig.Flags.Changed("jump") {
			t.Fatalf("%s: %v %+v", c.Name(), err, sig)
		}
	}
}

// TestSettingFlags: each command declares the setting flags it should, as
// the table spells them, and run takes every setting flag there is.
func TestSettingFlags(t *testing.T) {
	f, _ := testFactory()
	root := NewCmdRoot(f)
	want := map[string][]*profiles.Setting{
		"kq":        append([]*profiles.Setting{profiles.SettingFrontend, profiles.SettingKernel, profiles.SettingKeep, profiles.SettingJump}, schedulerFlags...),
		"run":       append([]*profiles.Setting{profiles.SettingFrontend, profiles.SettingKernel, profiles.SettingKeep, profiles.SettingJump}, schedulerFlags...),
		"kernel":    append([]*profiles.Setting{profiles.SettingKernel, profiles.SettingJump}, schedulerFlags...),
		"attach":    {profiles.SettingFrontend, profiles.SettingJump},
		"ls":        {profiles.SettingJump},
		"stop":      {profiles.SettingJump},
		"interrupt": {profiles.SettingJump},
		"restart":   {profiles.SettingJump},
	}
	cmds := append([]*cobra.Command{root}, root.Commands()...)
	for _, c := range cmds {
		settings, ok := want[c.Name()]
		if !ok {
			continue // cobra's own help and completion
		}
		delete(want, c.Name())
		settings = append(settings, profiles.SettingSSHConfig) // a global flag
		for _, s := range settings {
			fl := c.Flags().Lookup(s.Flag)
			if fl == nil {
				fl = c.PersistentFlags().Lookup(s.Flag)
			}
			if fl == nil {
				fl = c.InheritedFlags().Lookup(s.Flag)
			}
			wantType := "string"
			if s.Kind == profiles.KindBool {
				wantType = "bool"
			}
			if fl == nil || fl.Value.Type() != wantType || fl.Usage != s.Usage || fl.Shorthand != s.Shorthand {
				t.Errorf("%s: flag --%s: %+v", c.Name(), s.Flag, fl)
			}
		}
	}
	if len(want) != 0 {
		t.Errorf("commands missing: %v", want)
	}
	for _, s := range profiles.Settings {
		if s.Flag != "" && NewCmdRun(f, nil).Flags().Lookup(s.Flag) == nil && s != profiles.SettingSSHConfig {
			t.Errorf("run does not take --%s", s.Flag)
		}
	}
}

// TestExitCodePassesThrough: the frontend's code is kq's, and nothing is
// printed for it.
func TestExitCodePassesThrough(t *testing.T) {
	for _, code := range []int{0, 3, 130} {
		var errBuf bytes.Buffer
		root := &cobra.Command{Use: "kq", SilenceErrors: true, SilenceUsage: true,
			RunE: func(*cobra.Command, []string) error {
				return frontendExit(launcher.Result{FrontendRan: true, ExitCode: code}, nil)
			}}
		if got := execute(root, nil, IO{Out: &bytes.Buffer{}, Err: &errBuf}, termui.New(&errBuf, termui.Options{})); got != code || errBuf.Len() != 0 {
			t.Errorf("code %d: got %d, stderr %q", code, got, errBuf.String())
		}
	}
	err := frontendExit(launcher.Result{ExitCode: 3}, launcher.ErrKernel)
	var ee *exitError
	if errors.As(err, &ee) || exitCode(err) != ExitKernel {
		t.Fatalf("a launcher error wins over the code: %v", err)
	}
}

// TestWarn: the factory's one printer writes warnings, and the launcher is
// handed the same printer.
func TestWarn(t *testing.T) {
	f, errBuf := testFactory()
	f.Warn("runtime dir %s is open", "/x")
	if got := errBuf.String(); got != "kq: warning: runtime dir /x is open\n" {
		t.Fatalf("got %q", got)
	}
	errBuf.Reset()
	for _, s := range profiles.Settings {
		if s.Env != "" {
			t.Setenv(s.Env, "") // the developer's KQ_* stay out
		}
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("profiles:\n  p: {host: h}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	f.ConfigFile = cfg
	lo, err := f.LauncherOptions("p", nil)
	if err != nil || lo.Warn == nil {
		t.Fatalf("got %v, Warn %v", err, lo.Warn != nil)
	}
	lo.Warn("from %s", "the launcher")
	if got := errBuf.String(); !strings.HasPrefix(got, "kq: warning: config "+cfg+" is accessible by others") ||
		!strings.HasSuffix(got, "\nkq: warning: from the launcher\n") {
		t.Fatalf("got %q", got)
	}
}
