package profiles

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestResolveAlgorithms(t *testing.T) {
	defs := []string{"a", "b-etm", "c-etm", "d"}
	for _, c := range []struct {
		value string
		want  []string
	}{
		{"", defs},
		{"x,y", []string{"x", "y"}},
		{"+x,a", []string{"a", "b-etm", "c-etm", "d", "x"}},
		{"-*-etm", []string{"a", "d"}},
		{"-a,d", []string{"b-etm", "c-etm"}},
		{"^d,x", []string{"d", "x", "a", "b-etm", "c-etm"}},
	} {
		if got := ResolveAlgorithms(c.value, defs); !reflect.DeepEqual(got, c.want) {
			t.Errorf("ResolveAlgorithms(%q) = %v, want %v", c.value, got, c.want)
		}
	}
}

func TestParseSSHGPolicy(t *testing.T) {
	out := `ciphers aes128-ctr
kexalgorithms curve25519-sha256
macs hmac-sha2-256
hostkeyalgorithms ssh-ed25519,rsa-sha2-256
pubkeyacceptedalgorithms ssh-ed25519
pubkeyauthentication false
preferredauthentications password,keyboard-interactive
connectionattempts 3
addressfamily inet6
bindaddress 127.0.0.2
tcpkeepalive no
pkcs11provider /usr/lib/opensc-pkcs11.so
forwardagent yes
localforward 8080 [localhost]:80
localforward 8081 [localhost]:81
controlmaster auto
compression no
requesttty auto
`
	got, err := SSHResolver{Home: "/h"}.parseSSHG([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Ciphers, []string{"aes128-ctr"}) || !reflect.DeepEqual(got.HostKeyAlgorithms, []string{"ssh-ed25519", "rsa-sha2-256"}) ||
		!got.NoPubkeyAuthentication || !reflect.DeepEqual(got.PreferredAuthentications, []string{"password", "keyboard-interactive"}) ||
		got.ConnectionAttempts != 3 || got.AddressFamily != "inet6" || got.BindAddress != "127.0.0.2" || !got.NoTCPKeepAlive ||
		got.PKCS11Provider != "/usr/lib/opensc-pkcs11.so" {
		t.Fatalf("got %+v", got)
	}
	var names []string
	for _, u := range got.Unhonoured {
		names = append(names, u.Option+" "+u.Value)
	}
	want := []string{"ForwardAgent yes", "LocalForward 8080 [localhost]:80", "LocalForward 8081 [localhost]:81", "ControlMaster auto"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("unhonoured %q, want %q", names, want)
	}
}

// TestFindUnhonouredDefaults: OpenSSH's own defaults, as ssh -G prints
// them with an empty config, are never reported.
func TestFindUnhonouredDefaults(t *testing.T) {
	defaults := map[string]string{"forwardagent": "no", "controlmaster": "false", "requesttty": "auto", "compression": "no",
		"canonicalizehostname": "false", "verifyhostkeydns": "false", "checkhostip": "no", "addkeystoagent": "false",
		"securitykeyprovider": "internal", "forwardx11": "no", "tunnel": "false", "rekeylimit": "0 0", "requiredrsasize": "1024",
		"fingerprinthash": "SHA256", "ipqos": "lowdelay throughput", "hostbasedauthentication": "no", "nohostauthenticationforlocalhost": "no"}
	got := FindUnhonoured(func(k string) []string {
		if v, ok := defaults[k]; ok {
			return []string{v}
		}
		return nil
	})
	if len(got) != 0 {
		t.Fatalf("defaults reported: %v", got)
	}
}

func TestMatchPatternList(t *testing.T) {
	for _, c := range []struct {
		list, s string
		want    bool
	}{
		{"*.example.org", "gpu.example.org", true},
		{"*.example.org,!bad.example.org", "bad.example.org", false},
		{"gpu?", "gpu1", true},
		{"gpu?", "gpu12", false},
		{"GPU", "gpu", true},
		{"!x", "y", false},
	} {
		if got := matchPatternList(c.list, c.s); got != c.want {
			t.Errorf("matchPatternList(%q, %q) = %v", c.list, c.s, got)
		}
	}
}

// TestParserMatch: the Go parser evaluates Match lines itself, as ssh
// does (host on the HostName set so far, originalhost, user, localuser,
// all, canonical, negation, several criteria, Match in an Include), and
// ssh -G, when installed, agrees on the same file; Match exec is refused
// by name.
func TestParserMatch(t *testing.T) {
	dir := t.TempDir()
	me, err := user.Current()
	must(t, err)
	conf := `Host gpu
  HostName gpu.lab.example
  User alice
Match host *.lab.example user alice
  Port 2201
Match originalhost gpu localuser ` + me.Username + `
  IdentityFile ~/.ssh/from_localuser
Match user bob
  Port 2299
Match canonical
  Port 2298
Match !host *.lab.example
  Port 2297
Match all
  Ciphers aes128-ctr
  Include extra.conf
  ServerAliveInterval 9
`
	must(t, os.MkdirAll(filepath.Join(dir, ".ssh"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, ".ssh", "extra.conf"), []byte("Match originalhost gpu\n  ConnectionAttempts 4\n"), 0o600))
	cfg := filepath.Join(dir, "config")
	must(t, os.WriteFile(cfg, []byte(conf), 0o600))
	resolvers := map[string]SSHResolver{"parser": {SSHPath: "none", Home: dir, CurrentUser: me.Username}}
	if path, err := exec.LookPath("ssh"); err == nil {
		t.Setenv("HOME", dir)
		resolvers["ssh -G"] = SSHResolver{SSHPath: path, Home: dir, CurrentUser: me.Username}
	}
	for name, r := range resolvers {
		t.Run(name, func(t *testing.T) {
			s, err := r.Resolve(context.Background(), "gpu", cfg)
			if err != nil {
				t.Fatal(err)
			}
			if s.HostName != "gpu.lab.example" || s.User != "alice" || s.Port != 2201 || s.ConnectionAttempts != 4 ||
				s.ServerAliveInterval.Seconds() != 9 || !reflect.DeepEqual(s.Ciphers, []string{"aes128-ctr"}) ||
				s.IdentityFiles[0] != filepath.Join(dir, ".ssh/from_localuser") {
				t.Fatalf("got %+v", s)
			}
			// The user from the profile's host wins over User, in Match too.
			if s, err = r.Resolve(context.Background(), "bob@gpu", cfg); err != nil || s.Port != 2299 {
				t.Fatalf("bob@gpu: port %d, %v", s.Port, err)
			}
		})
	}
	execCfg := filepath.Join(dir, "exec")
	must(t, os.WriteFile(execCfg, []byte("Match exec \"true\"\n  Port 1\n"), 0o600))
	_, err = resolvers["parser"].Resolve(context.Background(), "gpu", execCfg)
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, errMatchExec) || !strings.Contains(err.Error(), execCfg+":1") {
		t.Fatalf("Match exec: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
