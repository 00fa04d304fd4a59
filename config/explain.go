package config

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/pflag"
)

// ResolveHost is Resolve for a target that is not a profile but a host
// ("kq HOST", zero config): f's defaults with host set, under the
// environment and flags. The profile is named after the host.
func ResolveHost(f *File, host string, flags *pflag.FlagSet) (profiles.Profile, error) {
	ov, err := OverrideLayer(flags)
	if err != nil {
		return profiles.Profile{}, err
	}
	h := host
	p, err := profiles.Resolve(host, f.Defaults, profiles.Layer{Host: &h}, ov)
	if err != nil {
		return p, &Error{File: f.Path, Err: err,
			HintText: "set it in the config's defaults:, with KQ_* or with a flag"}
	}
	return p, nil
}

// Origin is one resolved setting and where its value came from.
type Origin struct {
	// Setting is the table's row.
	Setting *profiles.Setting
	// Value is the value as shown to the user; env: values are never
	// shown, only their names.
	Value string
	// From is "default", "FILE:LINE", "FILE:LINE (defaults:)",
	// "environment KQ_X", "flag --x" or "command line" (a zero-config host).
	From string
}

// Explain resolves the target as Resolve (or, for a zero-config host,
// ResolveHost) does and says for every setting where its value came from,
// in the table's order. p is the resolved profile.
func Explain(f *File, name string, flags *pflag.FlagSet, zeroConfig bool) (p profiles.Profile, out []Origin, err error) {
	if zeroConfig {
		p, err = ResolveHost(f, name, flags)
	} else {
		p, err = Resolve(f, name, flags)
	}
	if err != nil {
		return p, nil, err
	}
	for _, s := range profiles.Settings {
		out = append(out, Origin{Setting: s, Value: showValue(s.Resolved(p)),
			From: f.origin(s, name, flags, zeroConfig)})
	}
	return p, out, nil
}

// origin finds the highest layer that sets s.
func (f *File) origin(s *profiles.Setting, name string, flags *pflag.FlagSet, zeroConfig bool) string {
	if fl := lookupFlag(flags, s); fl != nil && fl.Changed {
		return "flag --" + s.Flag
	}
	if s.Env != "" && os.Getenv(s.Env) != "" {
		return "environment " + s.Env
	}
	if zeroConfig && s == profiles.SettingHost {
		return "command line"
	}
	if l, ok := f.Profiles[name]; ok && !zeroConfig {
		if _, set := s.Get(l); set {
			return f.where(yamlPath(profileKey(name), s))
		}
	}
	if _, set := s.Get(f.Defaults); set {
		return f.where(yamlPath("defaults", s)) + " (defaults:)"
	}
	return "default"
}

// yamlPath is where s is written under base: base.key, or base.block.sub
// for a setting of a block such as slurm:.
func yamlPath(base string, s *profiles.Setting) string {
	if s.Block != "" {
		return base + "." + s.Block + "." + s.Sub
	}
	return base + "." + s.Key
}

// where is "FILE:LINE" of a decoded key.
func (f *File) where(key string) string {
	if n, ok := f.Lines[key]; ok {
		return fmt.Sprintf("%s:%d", f.Path, n)
	}
	return f.Path
}

// showValue renders a resolved value; env: shows names only, since its
// values may be secrets.
func showValue(v any) string {
	switch t := v.(type) {
	case string:
		if t == "" {
			return "(not set)"
		}
		return t
	case []string:
		return profiles.JoinCommand(t)
	case map[string]string:
		if len(t) == 0 {
			return "(none)"
		}
		names := make([]string, 0, len(t))
		for k := range t {
			names = append(names, k)
		}
		sort.Strings(names)
		return strings.Join(names, ", ") + " (values not shown)"
	case time.Duration:
		if t == 0 {
			return "0 (ssh config's ServerAliveInterval, else built in)"
		}
		return shortDuration(t)
	case int:
		if t == 0 {
			return "0 (ssh config's ServerAliveCountMax, else built in)"
		}
	}
	return fmt.Sprint(v)
}

// shortDuration is d as a user writes it: 5m, not 5m0s; 2h, not 2h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
