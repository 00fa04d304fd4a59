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
)

// TestExpandTokens: every token of ssh_config(5)'s TOKENS section, ${VAR},
// and the values OpenSSH refuses.
func TestExpandTokens(t *testing.T) {
	t.Setenv("KQ_TOKEN_TEST", "env%h")
	tk := Tokens{Home: "/home/me", LocalUser: "me", UID: "1000", LocalHost: "laptop.example.org",
		Host: "10.0.0.5", Original: "gpu", Port: "2222", User: "alice", KeyAlias: "gpu-key"}
	r := SSHResolver{Home: "/home/me"}
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"~/.ssh/id_%h_%r", "/home/me/.ssh/id_10.0.0.5_alice", false},
		{"%d/%u/%i", "/home/me/me/1000", false},
		{"%l %L", "laptop.example.org laptop", false},
		{"%n:%p:%k", "gpu:2222:gpu-key", false},
		// %C is SHA1("laptop.example.org" "10.0.0.5" "2222" "alice").
		{"/cp/%C", "/cp/" + tk.ConnHash(), false},
		{"100%%", "100%", false},
		{"${KQ_TOKEN_TEST}/x", "env%h/x", false}, // one pass: no expansion of what a variable holds
		{"${KQ_TOKEN_UNSET_VAR}", "", true},
		{"${KQ_TOKEN_TEST", "", true},
		{"%z", "", true},
		{"trailing %", "", true},
		{"none", "none", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := r.ExpandFile(tk, tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %q, %v; want %q (error %v)", got, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrToken) {
				t.Fatalf("error %v is not ErrToken", err)
			}
		})
	}
	if got := (Tokens{LocalHost: "vm", Host: "real.example", Port: "2222", User: "bob"}).ConnHash(); got != "98c426feaa870531b9e51fc3db6d67037c95aefc" {
		t.Fatalf("%%C = %s, want what ssh -G printed for ControlPath %%C", got)
	}
	pc, err := tk.ExpandProxyCommand("nc -X connect -x proxy:3128 %h %p # %r %n %k %% $HOME")
	if err != nil || pc != "nc -X connect -x proxy:3128 10.0.0.5 2222 # alice gpu gpu-key % $HOME" {
		t.Fatalf("ProxyCommand: %q, %v", pc, err)
	}
	if _, err := tk.ExpandProxyCommand("x %d"); !errors.Is(err, ErrToken) {
		t.Fatalf("%%d in ProxyCommand: %v (ssh refuses it)", err)
	}
}

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{`/a /b`, []string{"/a", "/b"}, false},
		{`"/a b/known hosts" /c`, []string{"/a b/known hosts", "/c"}, false},
		{`'/x y' "/z"`, []string{"/x y", "/z"}, false},
		{`/a\ b`, []string{`/a\`, "b"}, false},
		{`"a \"q\" b"`, []string{`a "q" b`}, false},
		{`"open`, nil, true},
	}
	for _, tt := range tests {
		got, err := SplitArgs(tt.in)
		if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitArgs(%q) = %q, %v", tt.in, got, err)
		}
	}
	if got := splitPrinted("/a b/known hosts /c/x ~/y"); !reflect.DeepEqual(got, []string{"/a b/known hosts", "/c/x", "~/y"}) {
		t.Errorf("splitPrinted: %q", got)
	}
}

// tokenSSHConfig uses tokens, variables, quoted paths with blanks,
// HostKeyAlias and ProxyCommand precedence.
const tokenSSHConfig = `Host tok
  HostName real.example
  User bob
  Port 2222
  HostKeyAlias myalias
  IdentityFile "DIR/id %h_%r"
  IdentityFile DIR/id_${KQ_TOKEN_TEST}_%k
  UserKnownHostsFile "DIR/known hosts" DIR/kh_%k_%p
  IdentityAgent DIR/agent_%r
  ProxyCommand ssh -W %h:%p -l %r bastion # %n
Host cmdfirst
  HostName 10.0.0.2
  ProxyCommand nc %h %p
  ProxyJump login
Host jumpfirst
  ProxyJump login
  ProxyCommand nc %h %p
Host jumpnone
  ProxyJump none
Host off
  ProxyCommand none
Host *
  ProxyCommand connect %h %p
`

// TestResolveTokens runs ssh -G and the Go parser on one config: both must
// give the same expanded paths, alias and proxy.
func TestResolveTokens(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KQ_TOKEN_TEST", "v")
	cfg := filepath.Join(dir, "config")
	data := []byte(strings.ReplaceAll(tokenSSHConfig, "DIR", dir))
	if err := os.WriteFile(cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	resolvers := map[string]SSHResolver{"parser": {SSHPath: "none", Home: dir, CurrentUser: "me"}}
	if path, err := exec.LookPath("ssh"); err == nil {
		resolvers["ssh -G"] = SSHResolver{SSHPath: path, Home: dir, CurrentUser: "me"}
	}
	for name, r := range resolvers {
		t.Run(name, func(t *testing.T) {
			s, err := r.Resolve(context.Background(), "tok", cfg)
			if err != nil {
				t.Fatal(err)
			}
			wantIDs := []string{dir + "/id real.example_bob", dir + "/id_v_myalias"}
			if !reflect.DeepEqual(s.IdentityFiles[:2], wantIDs) {
				t.Errorf("identity files %q, want %q", s.IdentityFiles, wantIDs)
			}
			if want := []string{dir + "/known hosts", dir + "/kh_myalias_2222"}; !reflect.DeepEqual(s.UserKnownHostsFiles, want) {
				t.Errorf("known hosts %q, want %q", s.UserKnownHostsFiles, want)
			}
			if s.IdentityAgent != dir+"/agent_bob" || s.HostKeyAlias != "myalias" {
				t.Errorf("agent %q, alias %q", s.IdentityAgent, s.HostKeyAlias)
			}
			if s.ProxyCommand != "ssh -W real.example:2222 -l bob bastion # tok" {
				t.Errorf("proxy command %q", s.ProxyCommand)
			}
			for host, want := range map[string][2]string{
				"cmdfirst":  {"", "nc 10.0.0.2 22"},
				"jumpfirst": {"login", ""},
				"jumpnone":  {"", "connect jumpnone 22"},
				"off":       {"", ""},
			} {
				s, err := r.Resolve(context.Background(), host, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if jump, _ := SplitJump(s.ProxyJump); strings.Join(jump, ",") != want[0] || s.ProxyCommand != want[1] {
					t.Errorf("%s: ProxyJump %q ProxyCommand %q, want %q", host, s.ProxyJump, s.ProxyCommand, want)
				}
			}
		})
	}
}

// TestChainProxyCommand: only the chain's first hop keeps a ProxyCommand;
// a hop reached through a jump is reached as ssh -J reaches it.
func TestChainProxyCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	conf := "Host server\n  HostName 10.1.0.5\n  ProxyCommand nc %h %p\nHost login\n  ProxyCommand nc login-proxy %p\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r := SSHResolver{SSHPath: "none", Home: dir, CurrentUser: "me"}
	hops, err := r.ResolveChain(context.Background(), "server", "", cfg)
	if err != nil || len(hops) != 1 || hops[0].ProxyCommand != "nc 10.1.0.5 22" {
		t.Fatalf("own ProxyCommand: %+v %v", hops, err)
	}
	hops, err = r.ResolveChain(context.Background(), "server", "login,other", cfg)
	if err != nil || len(hops) != 3 {
		t.Fatalf("%+v %v", hops, err)
	}
	got := []string{hops[0].ProxyCommand, hops[1].ProxyCommand, hops[2].ProxyCommand}
	if want := []string{"nc login-proxy 22", "", ""}; !reflect.DeepEqual(got, want) {
		t.Fatalf("proxy commands %q, want %q", got, want)
	}
}
