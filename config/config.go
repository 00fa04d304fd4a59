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
//
// Which keys, variables and flags exist, and what type each has, is not
// written here: both the decoder and the override layer walk
// profiles.Settings, so a setting added to that table is read everywhere.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
	// Msg says what is wrong; when it is empty, Err's text says it.
	Msg string
	// Err is the cause, when there is one (a parse error, an os error, a
	// profiles.ErrInvalid); errors.Is and errors.As reach it.
	Err error
	// HintText suggests a fix, when there is an obvious one.
	HintText string
}

// Error is the one-line message: "config FILE:LINE: KEY: what is wrong".
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
	msg := e.Msg
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	b.WriteString(": " + msg)
	return b.String()
}

// Unwrap lets callers test errors.Is(err, ErrConfig) and reach the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrConfig}
	}
	return []error{ErrConfig, e.Err}
}

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
	// Lines is the line of each key set in the file: "defaults.KEY" and
	// `profiles."NAME".KEY`.
	Lines map[string]int
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
	f := &File{Path: path, Profiles: map[string]profiles.Layer{}, Lines: map[string]int{}}
	if path == "" {
		return f, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !explicit {
			f.Path = ""
			return f, nil
		}
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read: %v", unwrapPathError(err)), Err: err,
			HintText: "pass an existing file with --config or KQ_CONFIG"}
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 && runtime.GOOS != "windows" {
		f.Warnings = append(f.Warnings, fmt.Sprintf("config %s is accessible by others (mode %04o); run chmod 600 %s",
			path, st.Mode().Perm(), path))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(path, err)
	}
	if len(doc.Content) == 0 {
		return f, nil // empty file
	}
	if err := (decoder{file: path, lines: f.Lines}).top(doc.Content[0], f); err != nil {
		return nil, err
	}
	return f, nil
}

// yamlLine is the "line N: what" of yaml.v3's syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError is a YAML syntax error located as FILE:LINE, like the others.
// The line is yaml.v3's: where the construct it could not finish began
// (for an unclosed "{" its line, for a bad indent the line above), which
// is where a person looks first.
func yamlError(path string, err error) error {
	e := &Error{File: path, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: "), Err: err,
		HintText: "YAML indents with spaces only; a value with ': ' or '#' in it needs quotes"}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "invalid YAML: " + m[2]
	}
	return e
}

// top decodes the top-level mapping into f.
func (d decoder) top(root *yaml.Node, f *File) error {
	if root.Kind != yaml.MappingNode {
		return d.errf(root, "", "the top level must be a mapping with defaults: and profiles:")
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		var err error
		switch k.Value {
		case "defaults":
			f.Defaults, err = d.layer(v, "defaults")
		case "profiles":
			err = d.profiles(v, f)
		default:
			err = d.errf(k, k.Value, "unknown key (known: defaults, profiles)")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// profiles decodes profiles: into f.Profiles, names exactly as written.
func (d decoder) profiles(v *yaml.Node, f *File) error {
	if v.Kind != yaml.MappingNode {
		if v.Tag == "!!null" {
			return nil
		}
		return d.errf(v, "profiles", "want a mapping of profile names to profiles")
	}
	for j := 0; j+1 < len(v.Content); j += 2 {
		name := v.Content[j].Value
		if strings.TrimSpace(name) == "" {
			return d.errf(v.Content[j], "profiles", "empty profile name")
		}
		if _, dup := f.Profiles[name]; dup {
			return d.errf(v.Content[j], profileKey(name), "profile defined twice")
		}
		l, err := d.layer(v.Content[j+1], profileKey(name))
		if err != nil {
			return err
		}
		f.Profiles[name] = l
	}
	return nil
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
		e.HintText = "kq config init writes an example to " + loc + "; a host works without one: kq user@host, or an ssh config Host alias"
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
		e.HintText = "known profiles: " + strings.Join(names, ", ") + "; or a host: user@host, host.domain, an ssh config Host alias"
	}
	return profiles.Layer{}, e
}

// OverrideLayer builds the environment-and-flags layer from the settings
// table: a setting's KQ_* variable sets it, and its flag, when flags has it
// and it was set on the command line, beats both the variable and the file.
// flags may be nil.
//
// Viper carries only this layer, keyed by the table's keys (lower case, no
// "."), so its case folding and "." delimiter never meet a profile name.
func OverrideLayer(flags *pflag.FlagSet) (profiles.Layer, error) {
	v := viper.New()
	for _, s := range profiles.Settings {
		if err := bind(v, s, flags); err != nil {
			return profiles.Layer{}, err
		}
	}
	var l profiles.Layer
	for _, s := range profiles.Settings {
		if !v.IsSet(s.Key) {
			continue
		}
		where := s.Env
		if fl := lookupFlag(flags, s); fl != nil && fl.Changed {
			where = "--" + s.Flag
		}
		val, err := parseString(s.Kind, v.GetString(s.Key))
		if err != nil {
			return l, &Error{Key: where, Err: err}
		}
		if str, ok := val.(string); ok && s.Check != nil {
			if err := s.Check(str); err != nil {
				return l, &Error{Key: where, Err: err}
			}
		}
		if err := s.Set(&l, val); err != nil {
			return l, &Error{Key: where, Err: err}
		}
	}
	return l, nil
}

// bind tells v where s may come from: its variable and its flag.
func bind(v *viper.Viper, s *profiles.Setting, flags *pflag.FlagSet) error {
	if s.Env != "" {
		if err := v.BindEnv(s.Key, s.Env); err != nil {
			return fmt.Errorf("bind %s: %w", s.Env, err)
		}
	}
	if fl := lookupFlag(flags, s); fl != nil {
		if err := v.BindPFlag(s.Key, fl); err != nil {
			return fmt.Errorf("bind --%s: %w", s.Flag, err)
		}
	}
	return nil
}

// lookupFlag returns s's flag in flags, or nil when s has no flag or this
// command does not take it.
func lookupFlag(flags *pflag.FlagSet, s *profiles.Setting) *pflag.Flag {
	if s.Flag == "" || flags == nil {
		return nil
	}
	return flags.Lookup(s.Flag)
}

// parseString reads the string form (a KQ_* value or a flag) of a value of
// kind k. The messages are the ones users got before the table existed.
func parseString(k profiles.Kind, s string) (any, error) {
	switch k {
	case profiles.KindString:
		return s, nil
	case profiles.KindDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, &valueError{want: "a duration like 5m or 30s", got: s, err: err}
		}
		return d, nil
	case profiles.KindInterval:
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, &valueError{want: "a duration like 5s", got: s, err: err}
		}
		return d, nil
	case profiles.KindBool:
		return parseBool(s)
	case profiles.KindNumber:
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, &valueError{want: "a whole number of at least 0", got: s, err: err}
		}
		return n, nil
	case profiles.KindCount:
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, &valueError{want: "a whole number of at least 1", got: s, err: err}
		}
		return n, nil
	case profiles.KindCommand:
		return profiles.SplitCommand(s)
	}
	return nil, fmt.Errorf("a setting of kind %s has no string form", k)
}

// valueError is a string that is not a value of the wanted kind; err is the
// parser's own error, when there is one.
type valueError struct {
	want, got string
	err       error
}

// Error says what was wanted and what was given.
func (e *valueError) Error() string { return fmt.Sprintf("want %s, got %q", e.want, e.got) }

// Unwrap returns the parser's error, if any.
func (e *valueError) Unwrap() error { return e.err }

func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off", "":
		return false, nil
	}
	return false, &valueError{want: "true or false", got: s}
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
		return p, &Error{File: f.Path, Err: err,
			HintText: "fix the profile in the config file, or override it with KQ_* or a flag"}
	}
	return p, nil
}
