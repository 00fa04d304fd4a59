package cmd

import (
	"net"
	"slices"
	"strings"

	"github.com/kq-dev/kq/config"
	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/pflag"
)

// target is what a command's PROFILE argument names: a profile of the
// config file, or (zero config) a host kq reaches with the defaults.
type target struct {
	file       *config.File
	name       string
	zeroConfig bool
}

// loadTarget reads the config and decides what name is. A name that is
// not a profile is a host when it looks like one: [user@]host[:port] with
// a "." or "@" or ":" in it, localhost, an IP address, or a Host alias of
// the ssh config. Anything else stays an unknown profile, so a typo is
// not sent to DNS.
func (f *Factory) loadTarget(name string, flags *pflag.FlagSet) (target, error) {
	path, explicit := config.Locate(f.ConfigFile)
	file, err := config.Load(path, explicit)
	if err != nil {
		return target{}, err
	}
	for _, w := range file.Warnings {
		f.Warn("%s", w)
	}
	t := target{file: file, name: name}
	if _, ok := file.Profiles[name]; ok {
		return t, nil
	}
	if looksLikeHost(name) || isSSHAlias(name, file, flags) {
		t.zeroConfig = true
	}
	return t, nil
}

// resolve resolves the target under the environment and flags.
func (t target) resolve(flags *pflag.FlagSet) (profiles.Profile, error) {
	if t.zeroConfig {
		return config.ResolveHost(t.file, t.name, flags)
	}
	return config.Resolve(t.file, t.name, flags)
}

// explain is resolve with the origin of every value.
func (t target) explain(flags *pflag.FlagSet) (profiles.Profile, []config.Origin, error) {
	return config.Explain(t.file, t.name, flags, t.zeroConfig)
}

// looksLikeHost reports whether name can only be meant as a host.
func looksLikeHost(name string) bool {
	if name == "" || strings.ContainsAny(name, " \t/") || strings.HasPrefix(name, "-") {
		return false
	}
	if name == "localhost" || net.ParseIP(strings.Trim(name, "[]")) != nil {
		return true
	}
	return strings.ContainsAny(name, ".@:")
}

// isSSHAlias reports whether name is a literal Host alias of the ssh
// config the target would be resolved with (patterns with wildcards or
// negations are not aliases).
func isSSHAlias(name string, file *config.File, flags *pflag.FlagSet) bool {
	return slices.Contains((profiles.SSHResolver{}).HostAliases(targetSSHConfig(file, flags)), name)
}
