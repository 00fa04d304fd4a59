package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/pflag"
)

const goodConfig = `defaults:
  frontend: [jupyter, console, --existing, "{connection_file}"]
  linger: 5m
  env: {OMP_NUM_THREADS: "4"}
profiles:
  server-gpu:
    host: server
    kernel: /usr/bin/python3 -m ipykernel_launcher
    workdir: ~/project
    env: {CUDA_VISIBLE_DEVICES: "0"}
    linger: 10m
  gpu.example.org:
    host: alice@gpu.example.org:2222
    frontend: jupyter qtconsole --existing {connection_file}
  Server-GPU:
    host: other
    keep: true
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clearEnv makes sure a KQ_* variable of the developer's shell cannot leak
// into a test.
func clearEnv(t *testing.T) {
	for _, s := range profiles.Settings {
		if s.Env != "" {
			t.Setenv(s.Env, "")
			os.Unsetenv(s.Env)
		}
	}
}

func TestProfileNames(t *testing.T) {
	clearEnv(t)
	f, err := Load(writeConfig(t, goodConfig), true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Names(), []string{"Server-GPU", "gpu.example.org", "server-gpu"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("names %q, want %q (case preserved, dots kept)", got, want)
	}
	tests := []struct {
		name, host string
		keep       bool
		frontend0  string
	}{
		{"server-gpu", "server", false, "jupyter"},
		{"Server-GPU", "other", true, "jupyter"},
		{"gpu.example.org", "alice@gpu.example.org:2222", false, "jupyter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Resolve(f, tt.name, nil)
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != tt.name || p.Host != tt.host || p.Keep != tt.keep || p.Frontend[0] != tt.frontend0 {
				t.Fatalf("got %+v", p)
			}
		})
	}
	p, _ := Resolve(f, "server-gpu", nil)
	if p.Env["CUDA_VISIBLE_DEVICES"] != "0" || p.Env["OMP_NUM_THREADS"] != "4" || len(p.Env) != 2 {
		t.Fatalf("env names must keep their case: %v", p.Env)
	}
	if p.Linger != 10*time.Minute || p.Workdir != "~/project" {
		t.Fatalf("got %+v", p)
	}
	q, _ := Resolve(f, "gpu.example.org", nil)
	if want := []string{"jupyter", "qtconsole", "--existing", "{connection_file}"}; !reflect.DeepEqual(q.Frontend, want) {
		t.Fatalf("frontend string split: %q", q.Frontend)
	}
}

func TestUnknownProfile(t *testing.T) {
	clearEnv(t)
	path := writeConfig(t, goodConfig)
	f, err := Load(path, true)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Resolve(f, "nope", nil)
	var ce *Error
	if !errors.As(err, &ce) || !errors.Is(err, ErrConfig) {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("error must name file and profile: %v", err)
	}
	if !strings.Contains(ce.Hint(), "Server-GPU, gpu.example.org, server-gpu") {
		t.Fatalf("hint must list the profiles: %q", ce.Hint())
	}
	_, err = Resolve(f, "SERVER-gpu", nil)
	if !errors.As(err, &ce) || !strings.Contains(ce.Hint(), "case-sensitive") {
		t.Fatalf("case mismatch: %v / %q", err, ce.Hint())
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string // substrings of the error
	}{
		{"invalid yaml", "profiles:\n  a: [\n", []string{"invalid YAML"}},
		{"top-level unknown", "profile:\n  a: {host: h}\n", []string{":1", "profile", "unknown key"}},
		{"profile unknown key", "profiles:\n  a:\n    host: h\n    hots: x\n", []string{":4", `profiles."a".hots`, "unknown key", "known: host"}},
		{"wrong type linger", "profiles:\n  a:\n    host: h\n    linger: [1]\n", []string{":4", `profiles."a".linger`, "duration"}},
		{"bad duration", "profiles:\n  a:\n    host: h\n    linger: soon\n", []string{`profiles."a".linger`, `"soon"`}},
		{"wrong type host", "profiles:\n  a:\n    host: [x]\n", []string{`profiles."a".host`, "want a string, got a list"}},
		{"wrong type env", "profiles:\n  a:\n    host: h\n    env: [A]\n", []string{`profiles."a".env`, "mapping"}},
		{"wrong type keep", "profiles:\n  a:\n    host: h\n    keep: maybe\n", []string{`profiles."a".keep`, "true or false"}},
		{"frontend number", "profiles:\n  a:\n    host: h\n    frontend: 3\n", []string{`profiles."a".frontend`}},
		{"profiles not a map", "profiles: [a]\n", []string{"profiles", "mapping"}},
		{"defaults unknown key", "defaults:\n  lingr: 5m\n", []string{"defaults.lingr", "unknown key"}},
		{"duplicate key", "profiles:\n  a:\n    host: h\n    host: i\n", []string{":4", "set twice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.body)
			_, err := Load(path, true)
			if err == nil || !errors.Is(err, ErrConfig) {
				t.Fatalf("got %v, want a config error", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error does not name the file: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.yaml")
	if _, err := Load(missing, true); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("explicit missing file: %v", err)
	}
	f, err := Load(missing, false)
	if err != nil || len(f.Profiles) != 0 {
		t.Fatalf("default missing file: %v %+v", err, f)
	}
	if _, err := f.Profile("x"); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "no config file") {
		t.Fatalf("profile without config: %v", err)
	}
}

func TestLocate(t *testing.T) {
	t.Setenv("KQ_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", "/xdg")
	if p, explicit := Locate("/flag.yaml"); p != "/flag.yaml" || !explicit {
		t.Fatal("flag must win")
	}
	if p, explicit := Locate(""); p != "/xdg/kq/config.yaml" || explicit {
		t.Fatalf("xdg: %s", p)
	}
	t.Setenv("KQ_CONFIG", "/env.yaml")
	if p, explicit := Locate(""); p != "/env.yaml" || !explicit {
		t.Fatal("KQ_CONFIG must win over XDG")
	}
	t.Setenv("KQ_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "/home/u")
	if p, _ := Locate(""); p != "/home/u/.config/kq/config.yaml" {
		t.Fatalf("home fallback: %s", p)
	}
}

func runFlags(t *testing.T, args ...string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.String("frontend", "", "")
	fs.String("kernel", "", "")
	fs.Bool("keep", false, "")
	fs.StringP("ssh-config", "F", "", "")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestOverridePrecedence(t *testing.T) {
	clearEnv(t)
	f, err := Load(writeConfig(t, goodConfig), true)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		kernel string
		linger time.Duration
		keep   bool
		front  []string
		sshcfg string
	}{
		{"file only", nil, nil, "/usr/bin/python3 -m ipykernel_launcher", 10 * time.Minute, false,
			[]string{"jupyter", "console", "--existing", "{connection_file}"}, ""},
		{"env over file", map[string]string{"KQ_KERNEL": "ipython kernel", "KQ_LINGER": "1m", "KQ_KEEP": "yes"}, nil,
			"ipython kernel", time.Minute, true, []string{"jupyter", "console", "--existing", "{connection_file}"}, ""},
		{"flag over env", map[string]string{"KQ_KERNEL": "ipython kernel", "KQ_FRONTEND": "a b"},
			[]string{"--kernel", "k2", "--frontend", `c "d e"`, "-F", "/cfg"},
			"k2", 10 * time.Minute, false, []string{"c", "d e"}, "/cfg"},
		{"unset flag leaves env", map[string]string{"KQ_SSH_CONFIG": "/env-cfg"}, []string{"--keep"},
			"/usr/bin/python3 -m ipykernel_launcher", 10 * time.Minute, true,
			[]string{"jupyter", "console", "--existing", "{connection_file}"}, "/env-cfg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			p, err := Resolve(f, "server-gpu", runFlags(t, tt.args...))
			if err != nil {
				t.Fatal(err)
			}
			if p.Kernel != tt.kernel || p.Linger != tt.linger || p.Keep != tt.keep || p.SSHConfig != tt.sshcfg ||
				!reflect.DeepEqual(p.Frontend, tt.front) {
				t.Fatalf("got %+v", p)
			}
		})
	}
}

func TestOverrideErrors(t *testing.T) {
	clearEnv(t)
	f, err := Load(writeConfig(t, goodConfig), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KQ_LINGER", "forever")
	if _, err := Resolve(f, "server-gpu", nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "KQ_LINGER") {
		t.Fatalf("got %v", err)
	}
	t.Setenv("KQ_LINGER", "")
	os.Unsetenv("KQ_LINGER")
	if _, err := Resolve(f, "server-gpu", runFlags(t, "--frontend", `"unbalanced`)); !errors.Is(err, ErrConfig) ||
		!strings.Contains(err.Error(), "--frontend") {
		t.Fatalf("got %v", err)
	}
	t.Setenv("KQ_HOST", "bad host")
	if _, err := Resolve(f, "server-gpu", nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "host") {
		t.Fatalf("got %v", err)
	}
}
