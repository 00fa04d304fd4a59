package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/pflag"
)

func TestExampleLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kq", "config.yaml")
	if err := Init(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("stat %s: %v %v, want mode 0600", path, st, err)
	}
	f, err := Load(path, true)
	if err != nil {
		t.Fatalf("kq rejects its own example: %v", err)
	}
	if len(f.Warnings) != 0 {
		t.Errorf("warnings on the example: %v", f.Warnings)
	}
	if got := strings.Join(f.Names(), ","); got != "cluster-node,server-gpu" {
		t.Errorf("profiles %q", got)
	}
	for _, n := range f.Names() {
		if _, err := Resolve(f, n, nil); err != nil {
			t.Errorf("profile %s: %v", n, err)
		}
	}
	for _, s := range profiles.Settings {
		key := s.Key
		if s.Block != "" {
			key = s.Sub
		}
		if !strings.Contains(Example, key+":") {
			t.Errorf("the example does not mention %s", s.Key)
		}
	}
}

func TestInitNeverOverwrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Init(path)
	if !errors.Is(err, ErrExists) || !errors.Is(err, ErrConfig) {
		t.Fatalf("Init over a file: %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "mine\n" {
		t.Errorf("the file was changed: %q", b)
	}
}

func TestExplainOrigins(t *testing.T) {
	path := writeConfig(t, goodConfig)
	f, err := Load(path, true)
	if err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.Bool("keep", false, "")
	if err := fs.Parse([]string{"--keep"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KQ_WORKDIR", "/scratch")
	_, origins, err := Explain(f, "server-gpu", fs, false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"host":      path + ":7",
		"kernel":    path + ":8",
		"linger":    path + ":11",
		"frontend":  path + ":2 (defaults:)",
		"workdir":   "environment KQ_WORKDIR",
		"keep":      "flag --keep",
		"kernel_ip": "default",
		"env":       path + ":10",
	}
	got := map[string]Origin{}
	for _, o := range origins {
		got[o.Setting.Key] = o
	}
	for k, w := range want {
		if got[k].From != w {
			t.Errorf("%s from %q, want %q", k, got[k].From, w)
		}
	}
	if v := got["env"].Value; strings.Contains(v, `"0"`) || !strings.Contains(v, "CUDA_VISIBLE_DEVICES") {
		t.Errorf("env shown as %q: want names, never values", v)
	}
	if v := got["workdir"].Value; v != "/scratch" {
		t.Errorf("workdir %q", v)
	}
}

func TestResolveHostZeroConfig(t *testing.T) {
	f, err := Load("", false)
	if err != nil {
		t.Fatal(err)
	}
	p, origins, err := Explain(f, "alice@gpu.example.org:2222", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if p.Host != "alice@gpu.example.org:2222" || p.Kernel != profiles.DefaultKernel {
		t.Errorf("zero-config profile %+v", p)
	}
	if origins[0].Setting != profiles.SettingHost || origins[0].From != "command line" {
		t.Errorf("host origin %+v", origins[0])
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Minute: "5m", 30 * time.Second: "30s", 2 * time.Hour: "2h",
		90 * time.Minute: "1h30m", 1500 * time.Millisecond: "1.5s", 61 * time.Second: "1m1s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
