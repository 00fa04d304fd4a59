package profiles

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// wantSettings is the user-visible spelling of every setting, as the README
// documents it. It is written out on purpose: a setting dropped from the
// table, or renamed there, fails this test instead of silently leaving a
// key, variable or flag unhandled.
var wantSettings = []struct{ key, env, flag string }{
	{"host", "KQ_HOST", ""},
	{"jump", "KQ_JUMP", "jump"},
	{"ssh_config", "KQ_SSH_CONFIG", "ssh-config"},
	{"runtime_dir", "KQ_RUNTIME_DIR", ""},
	{"kernel", "KQ_KERNEL", "kernel"},
	{"kernel_ip", "KQ_KERNEL_IP", ""},
	{"workdir", "KQ_WORKDIR", ""},
	{"env", "", ""},
	{"linger", "KQ_LINGER", ""},
	{"frontend", "KQ_FRONTEND", "frontend"},
	{"keep", "KQ_KEEP", "keep"},
	{"keepalive", "KQ_KEEPALIVE", ""},
	{"keepalive_count", "KQ_KEEPALIVE_COUNT", ""},
	{"warm", "KQ_WARM", ""},
	{"warm_code", "KQ_WARM_CODE", ""},
	{"scheduler", "KQ_SCHEDULER", ""},
	{"queue_timeout", "KQ_QUEUE_TIMEOUT", "queue-timeout"},
	{"slurm_partition", "KQ_SLURM_PARTITION", "slurm-partition"},
	{"slurm_gres", "KQ_SLURM_GRES", "slurm-gres"},
	{"slurm_gpus", "KQ_SLURM_GPUS", ""},
	{"slurm_time", "KQ_SLURM_TIME", "slurm-time"},
	{"slurm_cpus", "KQ_SLURM_CPUS", ""},
	{"slurm_mem", "KQ_SLURM_MEM", ""},
	{"slurm_account", "KQ_SLURM_ACCOUNT", ""},
	{"slurm_qos", "KQ_SLURM_QOS", ""},
	{"slurm_constraint", "KQ_SLURM_CONSTRAINT", ""},
	{"slurm_extra", "KQ_SLURM_EXTRA", ""},
}

// sample returns a value of s's kind that passes Validate and differs from
// every built-in default.
func sample(s *Setting) any {
	switch s.Kind {
	case KindString:
		if s == SettingKernelIP {
			return "10.0.0.9"
		}
		if s == SettingScheduler {
			return "slurm"
		}
		return "x-" + s.Key
	case KindDuration:
		return 90 * time.Second
	case KindInterval:
		return 3 * time.Second
	case KindBool:
		return true
	case KindCount:
		return 4
	case KindNumber:
		return 1
	case KindCommand:
		return []string{"a", "b c"}
	case KindVars:
		return map[string]string{"CUDA_VISIBLE_DEVICES": "0"}
	}
	panic("no sample for kind " + s.Kind.String())
}

func TestSettingsTable(t *testing.T) {
	if len(Settings) != len(wantSettings) {
		t.Fatalf("table has %d settings, want %d", len(Settings), len(wantSettings))
	}
	for i, w := range wantSettings {
		s := Settings[i]
		if s.Key != w.key || s.Env != w.env || s.Flag != w.flag {
			t.Errorf("row %d: %q %q %q, want %q %q %q", i, s.Key, s.Env, s.Flag, w.key, w.env, w.flag)
		}
		if found := Lookup(w.key); s.Block == "" && found != s || s.Block != "" && (found != nil || LookupSub(s.Block, s.Sub) != s) {
			t.Errorf("Lookup(%q) does not find its row (or finds a block's row)", w.key)
		}
	}
	if !reflect.DeepEqual(Keys()[:2], []string{"host", "jump"}) || Lookup("Host") != nil || Lookup("nope") != nil {
		t.Errorf("Keys/Lookup: %q", Keys())
	}
}

// TestSettingsFitViper: viper folds case and splits keys at ".", so a key
// that had either would reach the override layer under another name.
func TestSettingsFitViper(t *testing.T) {
	flags := map[string]bool{}
	for _, s := range Settings {
		if s.Key != strings.ToLower(s.Key) || strings.Contains(s.Key, ".") {
			t.Errorf("%s: keys must be lower case without '.'", s.Key)
		}
		if s.Env != "" && s.Env != "KQ_"+strings.ToUpper(s.Key) {
			t.Errorf("%s: variable %s does not follow KQ_<KEY>", s.Key, s.Env)
		}
		if s.Kind == KindVars && (s.Env != "" || s.Flag != "") {
			t.Errorf("%s: a %s has no string form, so no variable or flag", s.Key, s.Kind)
		}
		if s.Flag != "" && (s.Usage == "" || flags[s.Flag]) {
			t.Errorf("%s: flag --%s without usage, or twice", s.Key, s.Flag)
		}
		flags[s.Flag] = true
	}
}

// TestSettingsCoverLayer: each Layer field belongs to exactly one setting.
func TestSettingsCoverLayer(t *testing.T) {
	owner := map[string]string{}
	for _, s := range Settings {
		var l Layer
		if err := s.Set(&l, sample(s)); err != nil {
			t.Fatal(err)
		}
		if got, ok := s.Get(l); !ok || !reflect.DeepEqual(got, sample(s)) {
			t.Errorf("%s: Get = %v, %v", s.Key, got, ok)
		}
		set := nonZeroFields(reflect.ValueOf(l))
		if len(set) != 1 {
			t.Fatalf("%s sets Layer fields %q, want one", s.Key, set)
		}
		if prev, dup := owner[set[0]]; dup {
			t.Errorf("Layer.%s is set by both %s and %s", set[0], prev, s.Key)
		}
		owner[set[0]] = s.Key
	}
	if n := reflect.TypeOf(Layer{}).NumField(); len(owner) != n {
		t.Errorf("settings cover %d of Layer's %d fields: %v", len(owner), n, owner)
	}
}

// TestSettingsReachProfile: each setting, set in a layer, changes exactly
// its own field of the resolved profile, and every Profile field but Name
// is some setting's.
func TestSettingsReachProfile(t *testing.T) {
	// A scheduler needs its time limit: every profile here has one.
	base, err := Resolve("p", Layer{Host: ptr("h"), SlurmTime: ptr("1:00")})
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, s := range Settings {
		l := Layer{Host: ptr("h"), SlurmTime: ptr("1:00")}
		if err := s.Set(&l, sample(s)); err != nil {
			t.Fatal(err)
		}
		p, err := Resolve("p", l)
		if err != nil {
			t.Fatalf("%s: %v", s.Key, err)
		}
		if got := s.Resolved(p); !reflect.DeepEqual(got, sample(s)) {
			t.Errorf("%s: resolved %v, want %v", s.Key, got, sample(s))
		}
		diff := differingFields(reflect.ValueOf(base), reflect.ValueOf(p))
		if len(diff) != 1 {
			t.Errorf("%s changes Profile fields %q, want one", s.Key, diff)
		}
		for _, f := range diff {
			covered[f] = true
		}
	}
	covered["SlurmTime"] = true // set in base, so changed by no row here
	if n := reflect.TypeOf(Profile{}).NumField() - 1; len(covered) != n {
		t.Errorf("settings reach %d of Profile's %d fields besides Name: %v", len(covered), n, covered)
	}
}

func TestSettingSetWrongType(t *testing.T) {
	var l Layer
	if err := SettingLinger.Set(&l, "5m"); err == nil || l.Linger != nil {
		t.Fatalf("a string set as a duration: %v", err)
	}
	if err := SettingFrontend.Set(&l, "a b"); err == nil || l.Frontend != nil {
		t.Fatalf("a string set as a command: %v", err)
	}
}

// TestREADMEListsSettings keeps the README's lists of keys, variables and
// flags true.
func TestREADMEListsSettings(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Skip(err)
	}
	readme := string(data)
	for _, s := range Settings {
		words := []string{"`" + s.Key + "`"}
		if s.Block != "" {
			words = []string{"`" + s.Block + ":`", "`" + s.Sub + "`"}
		}
		if s.Env != "" {
			words = append(words, "`"+s.Env+"`")
		}
		if s.Shorthand != "" {
			words = append(words, "`-"+s.Shorthand+"`")
		} else if s.Flag != "" {
			words = append(words, "`--"+s.Flag+"`")
		}
		for _, w := range words {
			if !strings.Contains(readme, w) {
				t.Errorf("README does not mention %s", w)
			}
		}
	}
}

func nonZeroFields(v reflect.Value) []string {
	var out []string
	for i := range v.NumField() {
		if !v.Field(i).IsZero() {
			out = append(out, v.Type().Field(i).Name)
		}
	}
	return out
}

func differingFields(a, b reflect.Value) []string {
	var out []string
	for i := range a.NumField() {
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			out = append(out, a.Type().Field(i).Name)
		}
	}
	return out
}
