package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// TestRevokedHostKeys: a host key listed in RevokedHostKeys is refused by
// ssh and kq alike, as a plain key list and as a KRL (which kq cannot
// read, so it refuses rather than connect unchecked); a list that does
// not name the key lets both in.
func TestRevokedHostKeys(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	list := filepath.Join(e.dir, "revoked keys")
	must(t, os.WriteFile(list, []byte("# revoked\n"+e.srv.HostKeyLine+"\n"), 0o600))
	other := keygen(t, filepath.Join(e.dir, "other"), "") + ".pub" // some other key
	hostPub := filepath.Join(e.dir, "host.pub")
	must(t, os.WriteFile(hostPub, []byte(e.srv.HostKeyLine+"\n"), 0o600))
	krl := filepath.Join(e.dir, "revoked.krl")
	if out, err := exec.Command("/usr/bin/ssh-keygen", "-k", "-f", krl, hostPub).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -k: %v\n%s", err, out)
	}
	id := []string{"IdentityFile " + e.srv.ClientKey, "IdentitiesOnly yes"}
	for _, c := range []policyCase{
		{name: "listed", lines: append(id, `RevokedHostKeys "`+list+`"`), code: 5, mentions: []string{"REVOKED", "RevokedHostKeys"}},
		{name: "krl", lines: append(id, "RevokedHostKeys "+krl), code: 5, mentions: []string{"KRL"}},
		{name: "not listed", lines: append(id, "RevokedHostKeys "+other), accepts: true},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, e) })
	}
}
