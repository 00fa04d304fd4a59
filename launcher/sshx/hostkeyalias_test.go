package sshx

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kq-dev/kq/launcher/kinds"
)

// TestHostKeyAlias: with HostKeyAlias the key is looked up under the alias
// alone (a known_hosts holding only "alias KEY" passes StrictHostKeyChecking
// yes, one holding only the address does not), and a new key is recorded
// under the alias, as OpenSSH writes it (no port). An alias in known_hosts'
// own form for another port ("[127.0.0.1]:2299") is looked up as it stands.
func TestHostKeyAlias(t *testing.T) {
	addr, kh := kbdServer(t)
	data, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	key := strings.SplitN(strings.TrimSpace(string(data)), " ", 2)[1]
	aliasKH := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(aliasKH, []byte("myalias "+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dial := func(known, alias, strict string) error {
		s := settingsFor(addr, "pw", known)
		s.KbdInteractiveAuthentication, s.HostKeyAlias, s.StrictHostKeyChecking = false, alias, strict
		c, _, err := dialHop(context.Background(), NewAuthenticator(&scripted{answers: []string{"s3cret"}}), nil, s, "host kbd")
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(aliasKH, "myalias", "yes"); err != nil {
		t.Fatalf("alias in known_hosts: %v", err)
	}
	if err := dial(kh, "myalias", "yes"); !errors.Is(err, kinds.HostKey) || !strings.Contains(err.Error(), "myalias") {
		t.Fatalf("only the address known: %v, want a refusal naming the alias", err)
	}
	if err := dial(aliasKH, "", "yes"); !errors.Is(err, kinds.HostKey) {
		t.Fatalf("no alias, only the alias known: %v", err)
	}
	bracketKH := filepath.Join(t.TempDir(), "bracket_known_hosts")
	if err := os.WriteFile(bracketKH, []byte("[127.0.0.1]:2299 "+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := dial(bracketKH, "[127.0.0.1]:2299", "yes"); err != nil {
		t.Fatalf("alias [127.0.0.1]:2299 in known_hosts: %v", err)
	}
	fresh := filepath.Join(t.TempDir(), "new_known_hosts")
	if err := dial(fresh, "other-alias", "accept-new"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(fresh)
	if !strings.HasPrefix(string(got), "other-alias "+strings.Fields(key)[0]) {
		t.Fatalf("recorded %q, want the key under the alias", got)
	}
}
