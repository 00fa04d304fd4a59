package profiles

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

func TestResolvePrecedence(t *testing.T) {
	defaults := Layer{Kernel: ptr("ipython kernel"), Linger: ptr(10 * time.Minute),
		Env: map[string]string{"A": "default", "B": "default"}, Frontend: []string{"jupyter", "console", "--existing", "{connection_file}"}}
	profile := Layer{Host: ptr("server"), Env: map[string]string{"B": "profile"}, Workdir: ptr("~/project")}
	env := Layer{Kernel: ptr("python3 -m ipykernel_launcher"), Linger: ptr(time.Minute)}
	flags := Layer{Kernel: ptr("/usr/bin/python3 -m ipykernel_launcher"), Keep: ptr(true)}

	tests := []struct {
		name   string
		layers []Layer
		want   Profile
	}{
		{
			name:   "built-in defaults only",
			layers: []Layer{{Host: ptr("h")}},
			want: Profile{Name: "p", Host: "h", Kernel: DefaultKernel, Linger: DefaultLinger,
				Frontend: DefaultFrontend, Env: map[string]string{}},
		},
		{
			name:   "defaults under profile",
			layers: []Layer{defaults, profile},
			want: Profile{Name: "p", Host: "server", Kernel: "ipython kernel", Linger: 10 * time.Minute, Workdir: "~/project",
				Frontend: defaults.Frontend, Env: map[string]string{"A": "default", "B": "profile"}},
		},
		{
			name:   "environment over profile",
			layers: []Layer{defaults, profile, env},
			want: Profile{Name: "p", Host: "server", Kernel: "python3 -m ipykernel_launcher", Linger: time.Minute, Workdir: "~/project",
				Frontend: defaults.Frontend, Env: map[string]string{"A": "default", "B": "profile"}},
		},
		{
			name:   "flags over environment",
			layers: []Layer{defaults, profile, env, flags},
			want: Profile{Name: "p", Host: "server", Kernel: "/usr/bin/python3 -m ipykernel_launcher", Linger: time.Minute,
				Workdir: "~/project", Keep: true, Frontend: defaults.Frontend, Env: map[string]string{"A": "default", "B": "profile"}},
		},
		{
			name:   "empty string set explicitly overrides",
			layers: []Layer{{Host: ptr("h"), Workdir: ptr("/a")}, {Workdir: ptr("")}},
			want: Profile{Name: "p", Host: "h", Kernel: DefaultKernel, Linger: DefaultLinger,
				Frontend: DefaultFrontend, Env: map[string]string{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve("p", tt.layers...)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestResolveDoesNotAliasLayers(t *testing.T) {
	l := Layer{Host: ptr("h"), Frontend: []string{"a", "b"}, Env: map[string]string{"X": "1"}}
	p, err := Resolve("p", l)
	if err != nil {
		t.Fatal(err)
	}
	p.Frontend[0] = "changed"
	p.Env["X"] = "changed"
	if l.Frontend[0] != "a" || l.Env["X"] != "1" {
		t.Fatal("Resolve shares slices or maps with its layers")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		layer Layer
		want  string
	}{
		{"no host", Layer{}, "no host"},
		{"bad port", Layer{Host: ptr("h:99999")}, "port"},
		{"empty kernel", Layer{Host: ptr("h"), Kernel: ptr("  ")}, "kernel"},
		{"empty frontend", Layer{Host: ptr("h"), Frontend: []string{""}}, "frontend"},
		{"negative linger", Layer{Host: ptr("h"), Linger: ptr(-time.Second)}, "linger"},
		{"bad kernel_ip", Layer{Host: ptr("h"), KernelIP: ptr("node1")}, "kernel_ip"},
		{"bad env name", Layer{Host: ptr("h"), Env: map[string]string{"A-B": "1"}}, "env"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve("p", tt.layer)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrInvalid mentioning %q", err, tt.want)
			}
		})
	}
	for _, ip := range []string{"", "auto", "10.0.0.2", "fd00::2"} {
		if _, err := Resolve("p", Layer{Host: ptr("h"), KernelIP: ptr(ip)}); err != nil {
			t.Errorf("kernel_ip %q: %v", ip, err)
		}
	}
}

func TestParseHost(t *testing.T) {
	tests := []struct {
		in      string
		want    HostSpec
		wantErr bool
	}{
		{"server", HostSpec{Host: "server"}, false},
		{"gpu.example.org", HostSpec{Host: "gpu.example.org"}, false},
		{"alice@gpu.example.org", HostSpec{User: "alice", Host: "gpu.example.org"}, false},
		{"alice@10.0.0.2:2222", HostSpec{User: "alice", Host: "10.0.0.2", Port: 2222}, false},
		{"[::1]:2222", HostSpec{Host: "::1", Port: 2222}, false},
		{"bob@[fd00::1]", HostSpec{User: "bob", Host: "fd00::1"}, false},
		{"a.b@c@host", HostSpec{User: "a.b@c", Host: "host"}, false},
		{"host:0", HostSpec{}, true},
		{"host:ssh", HostSpec{}, true},
		{"@host", HostSpec{}, true},
		{"", HostSpec{}, true},
		{"host;rm -rf", HostSpec{}, true},
		{"[::1", HostSpec{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseHost(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFrontendArgvAndSplit(t *testing.T) {
	words, err := SplitCommand(`jupyter console --existing {connection_file} --ZMQTerminalInteractiveShell.banner="hello world"`)
	if err != nil {
		t.Fatal(err)
	}
	p := Profile{Frontend: words}
	got := p.FrontendArgv("/run/k.json")
	want := []string{"jupyter", "console", "--existing", "/run/k.json", "--ZMQTerminalInteractiveShell.banner=hello world"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := SplitCommand("  "); err == nil {
		t.Fatal("empty command accepted")
	}
	if _, err := SplitCommand(`a "b`); err == nil {
		t.Fatal("unbalanced quote accepted")
	}
}

func TestSafeName(t *testing.T) {
	for in, want := range map[string]string{"gpu.example.org": "gpu.example.org", "Server-GPU": "Server-GPU",
		"a/b c": "a_b_c", "": "profile"} {
		if got := SafeName(in); got != want {
			t.Errorf("SafeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSSHG(t *testing.T) {
	out := `user alice
hostname 10.1.2.3
port 2222
identityfile ~/.ssh/id_ed25519
identityfile /keys/work
identitiesonly yes
userknownhostsfile ~/.ssh/known_hosts /etc/kh
globalknownhostsfile none
stricthostkeychecking true
connecttimeout 7
proxyjump login
batchmode yes
passwordauthentication no
numberofpasswordprompts 2
hashknownhosts yes
`
	r := SSHResolver{Home: "/home/alice"}
	got, err := r.parseSSHG([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := SSHSettings{HostName: "10.1.2.3", User: "alice", Port: 2222,
		IdentityFiles: []string{"/home/alice/.ssh/id_ed25519", "/keys/work"}, IdentitiesOnly: true,
		UserKnownHostsFiles: []string{"/home/alice/.ssh/known_hosts", "/etc/kh"}, StrictHostKeyChecking: "yes",
		ConnectTimeout: 7 * time.Second, ProxyJump: "login", BatchMode: true, Source: "ssh -G",
		KbdInteractiveAuthentication: true, NumberOfPasswordPrompts: 2, HashKnownHosts: true,
		ConnectionAttempts: 1, AddressFamily: "any"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if got.Address() != "10.1.2.3:2222" {
		t.Fatalf("Address = %q", got.Address())
	}
}

const testSSHConfig = `Host gpu
  HostName 10.9.8.7
  User carol
  Port 2200
  IdentityFile ~/.ssh/gpu_key
  IdentitiesOnly yes
  UserKnownHostsFile ~/kh
  StrictHostKeyChecking yes
`

// TestResolveSSH runs both resolvers on the same ssh_config: the result
// must not depend on whether OpenSSH's client is installed.
func TestResolveSSH(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	if err := os.WriteFile(cfg, []byte(testSSHConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	resolvers := map[string]SSHResolver{"parser": {SSHPath: "none", Home: dir, CurrentUser: "me"}}
	if path, err := exec.LookPath("ssh"); err == nil {
		t.Setenv("HOME", dir)
		resolvers["ssh -G"] = SSHResolver{SSHPath: path, Home: dir, CurrentUser: "me"}
	} else {
		t.Log("no ssh client: only the parser is tested")
	}
	for name, r := range resolvers {
		t.Run(name, func(t *testing.T) {
			s, err := r.Resolve(context.Background(), "gpu", cfg)
			if err != nil {
				t.Fatal(err)
			}
			if s.HostName != "10.9.8.7" || s.User != "carol" || s.Port != 2200 || !s.IdentitiesOnly ||
				s.StrictHostKeyChecking != "yes" || s.Alias != "gpu" {
				t.Fatalf("alias: %+v", s)
			}
			if len(s.IdentityFiles) == 0 || s.IdentityFiles[0] != filepath.Join(dir, ".ssh/gpu_key") {
				t.Fatalf("identity files %q", s.IdentityFiles)
			}
			// ssh expands ~ with the passwd entry's home, the parser with Home.
			if len(s.UserKnownHostsFiles) != 1 || !strings.HasSuffix(s.UserKnownHostsFiles[0], "/kh") ||
				strings.HasPrefix(s.UserKnownHostsFiles[0], "~") {
				t.Fatalf("known hosts %q", s.UserKnownHostsFiles)
			}
			s, err = r.Resolve(context.Background(), "dave@other.example.org:2022", cfg)
			if err != nil {
				t.Fatal(err)
			}
			if s.HostName != "other.example.org" || s.User != "dave" || s.Port != 2022 {
				t.Fatalf("user@host:port: %+v", s)
			}
			s, err = r.Resolve(context.Background(), "plain", cfg)
			if err != nil {
				t.Fatal(err)
			}
			if s.User == "" || s.HostName != "plain" || s.Port != 22 {
				t.Fatalf("defaults: %+v", s)
			}
		})
	}
	if _, err := (SSHResolver{SSHPath: "none"}).Resolve(context.Background(), "gpu", filepath.Join(dir, "missing")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("missing ssh config: %v", err)
	}
}

func TestSplitJump(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"none", nil, false},
		{"login", []string{"login"}, false},
		{"bastion, alice@login:2222", []string{"bastion", "alice@login:2222"}, false},
		{"ssh://bob@jump.example.org:22", []string{"bob@jump.example.org:22"}, false},
		{"a,,b", nil, true},
		{"a:0", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := SplitJump(tt.in)
			if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
}

const chainSSHConfig = `Host server
  HostName 10.1.0.5
  ProxyJump login
Host login
  HostName 10.0.0.2
  ProxyJump bastion
Host bastion
  HostName 192.0.2.1
Host loop1
  ProxyJump loop2
Host loop2
  ProxyJump loop1
`

func TestResolveChain(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	if err := os.WriteFile(cfg, []byte(chainSSHConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	resolvers := map[string]SSHResolver{"parser": {SSHPath: "none", Home: dir, CurrentUser: "me"}}
	if path, err := exec.LookPath("ssh"); err == nil {
		resolvers["ssh -G"] = SSHResolver{SSHPath: path, Home: dir, CurrentUser: "me"}
	}
	tests := []struct {
		host, jump string
		want       []string // HostName of every hop
	}{
		{"server", "", []string{"192.0.2.1", "10.0.0.2", "10.1.0.5"}},
		{"server", "none", []string{"10.1.0.5"}},
		{"server", "bastion,other:2200", []string{"192.0.2.1", "other", "10.1.0.5"}},
		{"login", "", []string{"192.0.2.1", "10.0.0.2"}},
		{"plain", "", []string{"plain"}},
	}
	for name, r := range resolvers {
		for _, tt := range tests {
			t.Run(name+"/"+tt.host+"/"+tt.jump, func(t *testing.T) {
				hops, err := r.ResolveChain(context.Background(), tt.host, tt.jump, cfg)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, h := range hops {
					got = append(got, h.HostName)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("hops %q, want %q", got, tt.want)
				}
			})
		}
		t.Run(name+"/loop", func(t *testing.T) {
			if _, err := r.ResolveChain(context.Background(), "loop1", "", cfg); !errors.Is(err, ErrInvalid) {
				t.Fatalf("a ProxyJump loop must be refused: %v", err)
			}
		})
	}
}

// TestCheckKernelCommand: commands as users write them pass; text that
// would swallow or detach the appended "-f FILE" is refused.
func TestCheckKernelCommand(t *testing.T) {
	for _, tc := range []struct {
		cmd, err string
	}{
		{"python3 -m ipykernel_launcher", ""},
		{"CUDA_VISIBLE_DEVICES=0 python3 -m ipykernel_launcher", ""},
		{"source ~/venv/bin/activate && python -m ipykernel_launcher", ""},
		{`python -c 'import sys # not a comment' -m x`, ""},
		{`python "a#b" x#y`, ""},
		{`echo \# ; python -m ipykernel_launcher`, ""},
		{"conda run -n torch python -m ipykernel_launcher", ""},
		{"python3 -m ipykernel_launcher # my kernel", "# comment"},
		{"python3 -m ipykernel_launcher;# x", "# comment"},
		{"python3 -m ipykernel_launcher 'unclosed", "unclosed ' quote"},
		{`python3 -m ipykernel_launcher "unclosed`, `unclosed " quote`},
		{`python3 -m ipykernel_launcher \`, "trailing backslash"},
		{"python3 -m ipykernel_launcher;", `ends with ";"`},
		{"python3 -m ipykernel_launcher &&", `ends with "&&"`},
		{"python3 -m ipykernel_launcher ||  ", `ends with "||"`},
		{"python3 -m ipykernel_launcher &", `ends with "&"`},
		{"python3 -m ipykernel_launcher |", `ends with "|"`},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			err := CheckKernelCommand(tc.cmd)
			if tc.err == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("got %v, want an error with %q", err, tc.err)
			}
		})
	}
}
