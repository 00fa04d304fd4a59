package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/kq-dev/kq/profiles"
)

// TestSlurmBlock: the slurm: block merges key by key across defaults: and
// the profile, and flags beat both.
func TestSlurmBlock(t *testing.T) {
	clearEnv(t)
	f, err := Load(writeConfig(t, `defaults:
  slurm: {time: "1:00:00", account: proj}
profiles:
  c:
    host: login
    scheduler: slurm
    slurm:
      partition: gpu
      gres: gpu:1
      extra: [--exclusive, "--comment=a b"]
`), true)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Resolve(f, "c", settingFlags(t, "--slurm-time=2:00", "--slurm-gres=gpu:2"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Scheduler != "slurm" || p.SlurmTime != "2:00" || p.SlurmGres != "gpu:2" || p.SlurmPartition != "gpu" ||
		p.SlurmAccount != "proj" || !reflect.DeepEqual(p.SlurmExtra, []string{"--exclusive", "--comment=a b"}) {
		t.Errorf("resolved %+v", p)
	}
}

// TestSlurmErrors: each mistake is a config error naming file, line and key.
func TestSlurmErrors(t *testing.T) {
	for _, c := range []struct{ name, body, want string }{
		{"unknown sub-key", "profiles:\n  c:\n    host: h\n    slurm:\n      tme: 1\n", `:5: profiles."c".slurm.tme: unknown key (known: partition, gres, gpus, time,`},
		{"unknown scheduler", "profiles:\n  c:\n    host: h\n    scheduler: pbs\n", `:4: profiles."c".scheduler: unknown scheduler "pbs" (kq knows: slurm)`},
		{"not a mapping", "profiles:\n  c:\n    host: h\n    slurm: gpu\n", `:4: profiles."c".slurm: want a mapping of slurm settings, got a string`},
		{"wrong type", "profiles:\n  c:\n    host: h\n    slurm: {time: [1]}\n", `:4: profiles."c".slurm.time: want a string, got a list`},
		{"flat key", "profiles:\n  c:\n    host: h\n    slurm_time: 1\n", `profiles."c".slurm_time: unknown key`},
	} {
		t.Run(c.name, func(t *testing.T) {
			clearEnv(t)
			_, err := Load(writeConfig(t, c.body), true)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want %q", err, c.want)
			}
		})
	}
	clearEnv(t)
	f, err := Load(writeConfig(t, "profiles:\n  c: {host: h, scheduler: slurm}\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(f, "c", nil); !errors.Is(err, profiles.ErrInvalid) || !strings.Contains(err.Error(), "slurm: time: required") {
		t.Errorf("no time limit: %v", err)
	}
	t.Setenv("KQ_SCHEDULER", "lsf")
	if _, err := OverrideLayer(nil); err == nil || !strings.Contains(err.Error(), "KQ_SCHEDULER") {
		t.Errorf("KQ_SCHEDULER=lsf: %v", err)
	}
}
