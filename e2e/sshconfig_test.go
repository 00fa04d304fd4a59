package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// Issue 11, points 3 and 4: HostKeyAlias, tokens in IdentityFile, and a
// known_hosts path with blanks, each case also run with OpenSSH's ssh on
// the same config: both succeed or both refuse.

// sshConfigCase is one ssh_config and the decision expected of both.
type sshConfigCase struct {
	name    string
	lines   []string
	accepts bool
}

// TestSSHConfigMatchesOpenSSH runs each case with ssh and with kq.
func TestSSHConfigMatchesOpenSSH(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	dir := t.TempDir()
	aliasKH := filepath.Join(dir, "known_hosts_alias")
	must(t, os.WriteFile(aliasKH, []byte("kq-alias "+e.srv.HostKeyLine+"\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "known_hosts_kq-alias"), []byte("kq-alias "+e.srv.HostKeyLine+"\n"), 0o600))
	key, err := os.ReadFile(e.srv.ClientKey)
	must(t, err)
	// IdentityFile DIR/id_%h_%r: the key under the name the tokens give.
	must(t, os.WriteFile(filepath.Join(dir, "id_"+e.srv.Host+"_"+e.srv.User), key, 0o600))
	spaced := filepath.Join(dir, "a b", "known hosts")
	must(t, os.MkdirAll(filepath.Dir(spaced), 0o700))
	plain, err := os.ReadFile(e.srv.KnownHosts)
	must(t, err)
	must(t, os.WriteFile(spaced, plain, 0o600))
	id := "IdentityFile " + e.srv.ClientKey
	strict := []string{"IdentitiesOnly yes", "StrictHostKeyChecking yes", "BatchMode yes"}
	cases := []sshConfigCase{
		{"HostKeyAlias with the alias known", []string{id, "HostKeyAlias kq-alias", "UserKnownHostsFile " + aliasKH}, true},
		{"alias known, no HostKeyAlias", []string{id, "UserKnownHostsFile " + aliasKH}, false},
		{"HostKeyAlias, only the address known", []string{id, "HostKeyAlias kq-alias", "UserKnownHostsFile " + e.srv.KnownHosts}, false},
		{"IdentityFile with %h and %r", []string{"IdentityFile " + dir + "/id_%h_%r", "UserKnownHostsFile " + e.srv.KnownHosts}, true},
		{"IdentityFile with %d and no such key", []string{"IdentityFile " + dir + "/id_%d", "UserKnownHostsFile " + e.srv.KnownHosts}, false},
		{"known_hosts path with blanks, quoted", []string{id, `UserKnownHostsFile "` + spaced + `"`}, true},
		{"known_hosts with blanks, then another", []string{id, `UserKnownHostsFile "` + spaced + `" ` + aliasKH}, true},
		{"known_hosts with %k (the alias)", []string{id, "HostKeyAlias kq-alias", "UserKnownHostsFile " + dir + "/known_hosts_%k"}, true},
		{"IdentityFile with ${VAR}", []string{"IdentityFile ${KQ_E2E_KEYDIR}/id_%h_%r", "UserKnownHostsFile " + e.srv.KnownHosts}, true},
	}
	t.Setenv("KQ_E2E_KEYDIR", dir)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := e.sshConfigWith(append(append([]string(nil), c.lines...), strict...)...)
			sshOut := sshAgrees(t, cfg, "kqtest", c.accepts)
			p := e.profileFor("kqtest", cfg)
			p["frontend"] = []string{"/bin/true"}
			e.writeConfig(map[string]profile{"p": p})
			r, code := e.runToEnd([]string{"p"}, "KQ_E2E_KEYDIR="+dir)
			if (code == 0) != c.accepts {
				t.Fatalf("kq exit %d, ssh accepts=%v\nkq:\n%s\nssh:\n%s", code, c.accepts, r.stderr, sshOut)
			}
			e.assertClean(nil, nil)
		})
	}
}

// TestHostKeyAliasRecorded: under accept-new with HostKeyAlias, kq records
// the new key under the alias (no port), and ssh then accepts that file
// under StrictHostKeyChecking yes.
func TestHostKeyAliasRecorded(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	base := []string{"IdentityFile " + e.srv.ClientKey, "IdentitiesOnly yes", "HostKeyAlias kq-new-alias",
		"UserKnownHostsFile " + kh, "BatchMode yes"}
	p := e.profileFor("kqtest", e.sshConfigWith(append(base, "StrictHostKeyChecking accept-new")...))
	p["frontend"] = []string{"/bin/true"}
	e.writeConfig(map[string]profile{"p": p})
	if r, code := e.runToEnd([]string{"p"}); code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	data, _ := os.ReadFile(kh)
	if !strings.HasPrefix(string(data), "kq-new-alias "+strings.Fields(e.srv.HostKeyLine)[0]) {
		t.Fatalf("recorded %q, want the key under the alias", data)
	}
	sshAgrees(t, e.sshConfigWith(append(base, "StrictHostKeyChecking yes")...), "kqtest", true)
	e.assertClean(nil, nil)
}
