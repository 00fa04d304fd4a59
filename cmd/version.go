package cmd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/kq-dev/kq/config"
	"github.com/spf13/cobra"
)

// Commit and Date describe the build; release builds set them (and
// Version) with -ldflags "-X github.com/kq-dev/kq/cmd.Commit=...", Date as
// RFC 3339. Left empty, kq falls back to what the Go toolchain stamped
// into the binary (vcs.revision and vcs.time), else "unknown".
var (
	Commit = ""
	Date   = ""
)

// devVersion is Version's value in a build that did not set it.
const devVersion = "0.1.0-dev"

// releaseVersion is a module version "go install ...@v1.2.3" stamps;
// pseudoVersion is the one a build from an untagged checkout gets
// (v0.0.0-20261201232333-7fe5dc35d4e3), which says less than the commit.
var (
	releaseVersion = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)
	pseudoVersion  = regexp.MustCompile(`\d{14}-[0-9a-f]{12}$`)
)

// buildInfo is runtime/debug.ReadBuildInfo, swapped in tests.
var buildInfo = debug.ReadBuildInfo

// build is what kq knows of its own build.
type build struct {
	version, commit string
	// date is as set (RFC 3339 from a release), or "".
	date string
}

// thisBuild is the running binary's build.
func thisBuild() build {
	info, _ := buildInfo()
	return resolveBuild(Version, Commit, Date, info)
}

// resolveBuild fills what the linker did not set from info (which may be
// nil): the module's version for "go install ...@vX", the VCS revision
// and time for a build from a checkout.
func resolveBuild(version, commit, date string, info *debug.BuildInfo) build {
	b := build{version: version, commit: commit, date: date}
	if info == nil {
		return b
	}
	if v := info.Main.Version; b.version == devVersion && releaseVersion.MatchString(v) && !pseudoVersion.MatchString(v) {
		b.version = strings.TrimPrefix(v, "v")
	}
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision" && b.commit == "":
			b.commit = s.Value
		case s.Key == "vcs.time" && b.date == "":
			b.date = s.Value
		}
	}
	return b
}

// time is the build's date, if it is known and RFC 3339.
func (b build) time() (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, b.date)
	return t.UTC(), err == nil
}

// String is what "kq --version" prints after "kq version ":
// "0.2.0 (commit abc1234, built 2026-12-01)".
func (b build) String() string {
	commit, date := b.commit, b.date
	if len(commit) > 7 {
		commit = commit[:7]
	}
	if t, ok := b.time(); ok {
		date = t.Format(time.DateOnly)
	}
	return fmt.Sprintf("%s (commit %s, built %s)", b.version, orUnknown(commit), orUnknown(date))
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// helpFooter is what "kq --help" ends with: the version and the config
// file kq reads, where that choice came from, and whether it is there.
func helpFooter(configFlag string) string {
	path, explicit := config.Locate(configFlag)
	how := "default"
	switch {
	case configFlag != "":
		how = "from --config"
	case explicit:
		how = "from KQ_CONFIG"
	}
	state := "not found"
	if path == "" {
		path = "none (no home directory)"
	} else if _, err := os.Stat(path); err == nil {
		state = "exists"
	} else if !errors.Is(err, fs.ErrNotExist) {
		state = "cannot be read"
	}
	return fmt.Sprintf("\nkq version %s\nConfig file: %s (%s; %s)\n", thisBuild(), path, how, state)
}

// addHelpFooter makes root's help (kq --help, kq help) end with
// helpFooter; every other command's help is cobra's own.
func addHelpFooter(root *cobra.Command, f *Factory) {
	help := root.HelpFunc()
	root.SetHelpFunc(func(c *cobra.Command, args []string) {
		help(c, args)
		if c == root {
			fmt.Fprint(c.OutOrStdout(), helpFooter(f.ConfigFile))
		}
	})
}
