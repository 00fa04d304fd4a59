package profiles

import (
	"os"
	"path/filepath"
	"testing"
)

// TestGSSAPISettings: GSSAPIAuthentication, GSSAPIDelegateCredentials and
// GSSAPITrustDns come from ssh -G and from the Go parser alike, off by
// default as in OpenSSH.
func TestGSSAPISettings(t *testing.T) {
	r := SSHResolver{Home: "/home/alice", CurrentUser: "alice"}
	got, err := r.parseSSHG([]byte("hostname h\ngssapiauthentication yes\ngssapidelegatecredentials yes\ngssapitrustdns yes\n"))
	if err != nil || !got.GSSAPIAuthentication || !got.GSSAPIDelegateCredentials || !got.GSSAPITrustDNS {
		t.Fatalf("ssh -G: %+v %v", got, err)
	}
	if got, _ := r.parseSSHG([]byte("hostname h\ngssapiauthentication no\n")); got.GSSAPIAuthentication || got.GSSAPIDelegateCredentials {
		t.Fatalf("ssh -G no: %+v", got)
	}
	cfg := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfg, []byte("Host krb\n  GSSAPIAuthentication yes\n  GSSAPIDelegateCredentials yes\n  GSSAPITrustDns yes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.SSHPath = "none"
	for host, want := range map[string]bool{"krb": true, "other": false} {
		got, err := r.Resolve(t.Context(), host, cfg)
		if err != nil || got.GSSAPIAuthentication != want || got.GSSAPIDelegateCredentials != want || got.GSSAPITrustDNS != want {
			t.Errorf("parser %s: %+v %v", host, got, err)
		}
	}
}
