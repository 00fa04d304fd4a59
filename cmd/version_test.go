package cmd

import (
	"runtime/debug"
	"testing"
)

func TestBuildString(t *testing.T) {
	vcs := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/kq-dev/kq", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-11-30T22:15:00Z"},
		},
	}
	installed := &debug.BuildInfo{Main: debug.Module{Path: "github.com/kq-dev/kq", Version: "v0.3.1"}}
	pseudo := &debug.BuildInfo{
		Main:     debug.Module{Path: "github.com/kq-dev/kq", Version: "v0.0.0-20261201232333-7fe5dc35d4e3"},
		Settings: vcs.Settings,
	}
	dirty := &debug.BuildInfo{Main: debug.Module{Path: "github.com/kq-dev/kq", Version: "v0.3.1+dirty"}}
	for _, tc := range []struct {
		name                  string
		version, commit, date string
		info                  *debug.BuildInfo
		want                  string
	}{
		{"ldflags", "0.2.0", "abc1234def", "2026-12-01T10:00:00Z", vcs, "0.2.0 (commit abc1234, built 2026-12-01)"},
		{"ldflags, no build info", "0.2.0", "abc1234", "2026-12-01T10:00:00Z", nil, "0.2.0 (commit abc1234, built 2026-12-01)"},
		{"vcs stamp", devVersion, "", "", vcs, devVersion + " (commit 0123456, built 2026-11-30)"},
		{"go install @version", devVersion, "", "", installed, "0.3.1 (commit unknown, built unknown)"},
		{"ldflags beat the module version", "0.2.0", "", "", installed, "0.2.0 (commit unknown, built unknown)"},
		{"an untagged checkout's pseudo-version is not a version", devVersion, "", "", pseudo, devVersion + " (commit 0123456, built 2026-11-30)"},
		{"nor is a dirty one", devVersion, "", "", dirty, devVersion + " (commit unknown, built unknown)"},
		{"nothing known", devVersion, "", "", nil, devVersion + " (commit unknown, built unknown)"},
		{"a date that is not RFC 3339 is shown as set", "1.0.0", "", "yesterday", nil, "1.0.0 (commit unknown, built yesterday)"},
		{"time zones are UTC", "1.0.0", "c", "2026-12-01T23:30:00-05:00", nil, "1.0.0 (commit c, built 2026-12-02)"},
	} {
		if got := resolveBuild(tc.version, tc.commit, tc.date, tc.info).String(); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
