// Package config finds kq's configuration file, decodes it into profile
// layers and adds the environment (KQ_*) and command-line flags on top, so
// that the command layer gets one resolved profiles.Profile.
//
// It is the only package that imports viper. Viper carries the override
// layer (KQ_* variables and flags that were set, flags winning), which is
// exactly its precedence model. The YAML file itself is decoded from YAML
// nodes rather than through viper, because viper lower-cases every key: that
// would merge profiles whose names differ in case and, worse, turn
// `env: {CUDA_VISIBLE_DEVICES: "0"}` into a variable named
// cuda_visible_devices. Decoding nodes also gives each error a line number.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	yaml "go.yaml.in/yaml/v3"
)

// ErrConfig marks every configuration problem; the command layer maps it to
// the usage/config exit code.
var ErrConfig = errors.New("config")

// Error is one configuration problem, located as precisely as known.
type Error struct {
	// File is the config file, or "" for the environment and flags.
	File string
	// Line is 1-based; 0 when unknown.
	Line int
	// Key is the dotted path of the offending key, e.g. profiles."gpu".linger.
	Key string
	// Msg says what is wrong.
	Msg string
	// HintText suggests a fix, when there is an obvious one.
	HintText string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config")
	if e.File != "" {
		b.WriteString(" " + e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
	}
	if e.Key != "" {
		b.WriteString(": " + e.Key)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// Unwrap lets callers test errors.Is(err, ErrConfig).
func (e *Error) Unwrap() error { return ErrConfig }

// Hint returns a suggested fix, or "".
func (e *Error) Hint() string { return e.HintText }

// File is a decoded configuration file.
type File struct {
	// Path is where it was read from; "" when there is no file.
	Path string
	// Defaults applies to every profile.
	Defaults profiles.Layer
	// Profiles by name, case preserved.
	Profiles map[string]profiles.Layer
	// Warnings are problems that do not stop kq, such as a config file
	// that others may read.
	Warnings []string
}

// Names lists the profile names, sorted.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.Profiles))
	for n := range f.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Locate returns the config file to read and whether the user named it
// (an explicitly named file must exist; the default one may be absent).
// Order: flag, KQ_CONFIG, $XDG_CONFIG_HOME/kq/config.yaml,
// ~/.config/kq/config.yaml.
func Locate(flagValue string) (path string, explicit bool) {
	if flagValue != "" {
		return flagValue, true
	}
	if v := os.Getenv("KQ_CONFIG"); v != "" {
		return v, true
	}
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "kq", "config.yaml"), false
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", false
	}
	return filepath.Join(home, ".config", "kq", "config.yaml"), false
}

// Load reads and decodes the file at path. A missing file is an error only
// when explicit is true; otherwise it yields an empty configuration.
func Load(path string, explicit bool) (*File, error) {
	f := &File{Path: path, Profiles: map[string]profiles.Layer{}}
	if path == "" {
		return f, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !explicit {
			f.Path = ""
			return f, nil
		}
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read: %v", unwrapPathError(err)),
			HintText: "pass an existing file with --config or KQ_CONFIG"}
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 && runtime.GOOS != "windows" {
		f.Warnings = append(f.Warnings, fmt.Sprintf("config %s is accessible by others (mode %04o); run chmod 600 %s",
			path, st.Mode().Perm(), path))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{File: path, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if len(doc.Content) == 0 {
		return f, nil // empty file
	}
	d := decoder{file: path}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, d.errf(root, "", "the top level must be a mapping with defaults: and profiles:")
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "defaults":
			l, err := d.layer(v, "defaults")
			if err != nil {
				return nil, err
			}
			f.Defaults = l
		case "profiles":
			if v.Kind != yaml.MappingNode {
				if v.Tag == "!!null" {
					continue
				}
				return nil, d.errf(v, "profiles", "want a mapping of profile names to profiles")
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				name := v.Content[j].Value
				if strings.TrimSpace(name) == "" {
					return nil, d.errf(v.Content[j], "profiles", "empty profile name")
				}
				if _, dup := f.Profiles[name]; dup {
					return nil, d.errf(v.Content[j], profileKey(name), "profile defined twice")
				}
				l, err := d.layer(v.Content[j+1], profileKey(name))
				if err != nil {
					return nil, err
				}
				f.Profiles[name] = l
			}
		default:
			return nil, d.errf(k, k.Value, "unknown key (known: defaults, profiles)")
		}
	}
	return f, nil
}

func profileKey(name string) string { return fmt.Sprintf("profiles.%q", name) }

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Profile returns the named profile's layer, or an error that lists the
// known names.
func (f *File) Profile(name string) (profiles.Layer, error) {
	if l, ok := f.Profiles[name]; ok {
		return l, nil
	}
	names := f.Names()
	e := &Error{File: f.Path, Msg: fmt.Sprintf("unknown profile %q", name)}
	if f.Path == "" {
		loc, _ := Locate("")
		e.Msg += " (no config file)"
		e.HintText = "create " + loc + " with a profiles: section, or pass --config FILE"
		return profiles.Layer{}, e
	}
	for _, n := range names {
		if strings.EqualFold(n, name) {
			e.HintText = fmt.Sprintf("profile names are case-sensitive: did you mean %q?", n)
			return profiles.Layer{}, e
		}
	}
	if len(names) == 0 {
		e.HintText = "the file defines no profiles"
	} else {
		e.HintText = "known profiles: " + strings.Join(names, ", ")
	}
	return profiles.Layer{}, e
}

// Override names one setting that the environment or a flag may override.
type Override struct {
	// Key is the config key, also the suffix of its KQ_ variable.
	Key string
	// Flag is the kq run flag that sets it, or "".
	Flag string
}

// Overrides are the settings that KQ_* variables and flags may override.
var Overrides = []Override{
	{Key: "host"}, {Key: "jump", Flag: "jump"}, {Key: "ssh_config", Flag: "ssh-config"},
	{Key: "runtime_dir"}, {Key: "kernel", Flag: "kernel"}, {Key: "kernel_ip"},
	{Key: "workdir"}, {Key: "linger"}, {Key: "frontend", Flag: "frontend"},
	{Key: "keep", Flag: "keep"}, {Key: "keepalive"}, {Key: "keepalive_count"},
}

// OverrideLayer builds the environment-and-flags layer: a KQ_<KEY> variable
// sets <key>, and a flag that was set on the command line beats both the
// variable and the file. flags may be nil.
func OverrideLayer(flags *pflag.FlagSet) (profiles.Layer, error) {
	v := viper.New()
	v.SetEnvPrefix("KQ")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	for _, o := range Overrides {
		if err := v.BindEnv(o.Key); err != nil {
			return profiles.Layer{}, fmt.Errorf("bind KQ_%s: %w", strings.ToUpper(o.Key), err)
		}
		if o.Flag != "" && flags != nil {
			if fl := flags.Lookup(o.Flag); fl != nil {
				if err := v.BindPFlag(o.Key, fl); err != nil {
					return profiles.Layer{}, fmt.Errorf("bind --%s: %w", o.Flag, err)
				}
			}
		}
	}
	var l profiles.Layer
	for _, o := range Overrides {
		if !v.IsSet(o.Key) {
			continue
		}
		where := "KQ_" + strings.ToUpper(o.Key)
		if o.Flag != "" && flags != nil {
			if fl := flags.Lookup(o.Flag); fl != nil && fl.Changed {
				where = "--" + o.Flag
			}
		}
		bad := func(msg string) error { return &Error{Key: where, Msg: msg} }
		s := v.GetString(o.Key)
		switch o.Key {
		case "host":
			l.Host = &s
		case "jump":
			l.Jump = &s
		case "ssh_config":
			l.SSHConfig = &s
		case "runtime_dir":
			l.RuntimeDir = &s
		case "kernel":
			l.Kernel = &s
		case "kernel_ip":
			l.KernelIP = &s
		case "workdir":
			l.Workdir = &s
		case "linger":
			d, err := time.ParseDuration(s)
			if err != nil {
				return l, bad(fmt.Sprintf("want a duration like 5m or 30s, got %q", s))
			}
			l.Linger = &d
		case "frontend":
			words, err := profiles.SplitCommand(s)
			if err != nil {
				return l, bad(err.Error())
			}
			l.Frontend = words
		case "keep":
			b, err := parseBool(s)
			if err != nil {
				return l, bad(err.Error())
			}
			l.Keep = &b
		case "keepalive":
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return l, bad(fmt.Sprintf("want a duration like 5s, got %q", s))
			}
			l.Keepalive = &d
		case "keepalive_count":
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return l, bad(fmt.Sprintf("want a whole number of at least 1, got %q", s))
			}
			l.KeepaliveCount = &n
		}
	}
	return l, nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off", "":
		return false, nil
	}
	return false, fmt.Errorf("want true or false, got %q", s)
}

// Resolve is the whole lookup: the named profile from f, under f's defaults,
// under the environment and flags.
func Resolve(f *File, name string, flags *pflag.FlagSet) (profiles.Profile, error) {
	l, err := f.Profile(name)
	if err != nil {
		return profiles.Profile{}, err
	}
	ov, err := OverrideLayer(flags)
	if err != nil {
		return profiles.Profile{}, err
	}
	p, err := profiles.Resolve(name, f.Defaults, l, ov)
	if err != nil {
		return p, &Error{File: f.Path, Msg: err.Error(),
			HintText: "fix the profile in the config file, or override it with KQ_* or a flag"}
	}
	return p, nil
}
