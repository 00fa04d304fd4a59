package config

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/pflag"
)

// forms are, per kind, one value as YAML, the same value as a KQ_* or flag
// string, and what both decode to. A kind missing here fails the tests
// below for every setting of that kind.
var forms = map[profiles.Kind]struct {
	yaml, str string
	want      any
}{
	profiles.KindString:   {`"10.0.0.9"`, "10.0.0.9", "10.0.0.9"},
	profiles.KindDuration: {"90s", "90s", 90 * time.Second},
	profiles.KindInterval: {"3s", "3s", 3 * time.Second},
	profiles.KindBool:     {"true", "yes", true},
	profiles.KindCount:    {"4", "4", 4},
	profiles.KindNumber:   {"1", "1", 1},
	profiles.KindCommand:  {`[a, "b c"]`, `a "b c"`, []string{"a", "b c"}},
	profiles.KindVars:     {`{CUDA_VISIBLE_DEVICES: "0"}`, "", map[string]string{"CUDA_VISIBLE_DEVICES": "0"}},
}

// TestDecodeEverySetting: every setting of the table is read from a profile
// and from defaults:, and reaches the resolved profile.
func TestDecodeEverySetting(t *testing.T) {
	clearEnv(t)
	for _, s := range profiles.Settings {
		t.Run(s.Key, func(t *testing.T) {
			form, ok := forms[s.Kind]
			if !ok {
				t.Fatalf("no YAML form for kind %s", s.Kind)
			}
			val := form.yaml
			if s == profiles.SettingScheduler {
				val, form.want = "slurm", "slurm"
			}
			entry := s.Key + ": " + val
			if s.Block != "" {
				entry = s.Block + ": {" + s.Sub + ": " + val + "}"
			}
			body := "defaults:\n  " + entry + "\nprofiles:\n  p:\n    host: h\n    " + entry + "\n"
			if s.Block == "" {
				body += "    slurm: {time: \"1:00\"}\n" // a scheduler needs its time limit
			}
			if s == profiles.SettingHost {
				body = "defaults:\n  host: " + form.yaml + "\nprofiles:\n  p:\n    host: " + form.yaml + "\n"
			}
			f, err := Load(writeConfig(t, body), true)
			if err != nil {
				t.Fatal(err)
			}
			for where, l := range map[string]profiles.Layer{"defaults": f.Defaults, "profile": f.Profiles["p"]} {
				if got, ok := s.Get(l); !ok || !reflect.DeepEqual(got, form.want) {
					t.Errorf("%s: got %v (set %v), want %v", where, got, ok, form.want)
				}
			}
			p, err := Resolve(f, "p", nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Resolved(p); !reflect.DeepEqual(got, form.want) {
				t.Errorf("resolved %v, want %v", got, form.want)
			}
		})
	}
}

// settingFlags declares every setting flag of the table, as cmd does.
func settingFlags(t *testing.T, args ...string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("kq", pflag.ContinueOnError)
	for _, s := range profiles.Settings {
		switch {
		case s.Flag == "":
		case s.Kind == profiles.KindBool:
			fs.BoolP(s.Flag, s.Shorthand, false, s.Usage)
		default:
			fs.StringP(s.Flag, s.Shorthand, "", s.Usage)
		}
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

// TestOverrideEverySetting: every setting with a variable is read from it,
// a declared flag that was not set leaves it alone, and its flag, when it
// has one, beats the variable.
func TestOverrideEverySetting(t *testing.T) {
	for _, s := range profiles.Settings {
		if s.Env == "" {
			continue
		}
		t.Run(s.Key, func(t *testing.T) {
			clearEnv(t)
			form := forms[s.Kind]
			if s == profiles.SettingScheduler {
				form.str, form.want = "slurm", "slurm"
			}
			t.Setenv(s.Env, form.str)
			l, err := OverrideLayer(settingFlags(t))
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := s.Get(l); !ok || !reflect.DeepEqual(got, form.want) {
				t.Errorf("%s: got %v (set %v), want %v", s.Env, got, ok, form.want)
			}
			for _, other := range profiles.Settings {
				if _, set := other.Get(l); set && other != s {
					t.Errorf("%s also set %s", s.Env, other.Key)
				}
			}
			if s.Flag == "" {
				return
			}
			t.Setenv(s.Env, "junk that no kind parses \"")
			arg := "--" + s.Flag + "=" + form.str
			if s.Kind == profiles.KindBool {
				arg = "--" + s.Flag
			}
			if l, err = OverrideLayer(settingFlags(t, arg)); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.Get(l); !reflect.DeepEqual(got, form.want) {
				t.Errorf("--%s: got %v, want %v", s.Flag, got, form.want)
			}
		})
	}
}

// TestOverrideErrorsKeepCause: a bad value names where it came from, is a
// config error, and keeps the parser's error as its cause.
func TestOverrideErrorsKeepCause(t *testing.T) {
	clearEnv(t)
	t.Setenv("KQ_KEEPALIVE_COUNT", "many")
	_, err := OverrideLayer(nil)
	var ce *Error
	var numErr *strconv.NumError
	if !errors.As(err, &ce) || ce.Key != "KQ_KEEPALIVE_COUNT" || !errors.Is(err, ErrConfig) || !errors.As(err, &numErr) {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), `want a whole number of at least 1, got "many"`) {
		t.Fatalf("message changed: %v", err)
	}
	clearEnv(t)
	_, err = OverrideLayer(settingFlags(t, "--frontend", `"unbalanced`))
	if !errors.As(err, &ce) || ce.Key != "--frontend" {
		t.Fatalf("got %v", err)
	}
}

// TestErrorUnwrap: errors.Is reaches both ErrConfig and the cause.
func TestErrorUnwrap(t *testing.T) {
	cause := errors.New("cause")
	err := error(&Error{File: "f", Err: cause})
	if !errors.Is(err, ErrConfig) || !errors.Is(err, cause) || err.Error() != "config f: cause" {
		t.Fatalf("got %v", err)
	}
	if err := error(&Error{Msg: "m"}); !errors.Is(err, ErrConfig) || err.Error() != "config: m" {
		t.Fatalf("got %v", err)
	}
	clearEnv(t)
	f, err := Load(writeConfig(t, "profiles:\n  p: {kernel: k}\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(f, "p", nil); !errors.Is(err, profiles.ErrInvalid) || !errors.Is(err, ErrConfig) {
		t.Fatalf("an invalid profile must stay profiles.ErrInvalid under the config error: %v", err)
	}
}
