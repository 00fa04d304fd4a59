package profiles

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

// TestCertificateFiles: every CertificateFile line is kept, in order and
// with "~" expanded, by ssh -G and by the Go parser alike; a host with
// none has none (the IdentityFile "-cert.pub" rule is the dialler's).
func TestCertificateFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	conf := "Host gpu\n  HostName 10.9.8.7\n  CertificateFile ~/.ssh/a-cert.pub\n  CertificateFile /certs/b-cert.pub\n" +
		"Host plain\n  HostName 10.9.8.6\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	resolvers := map[string]SSHResolver{"parser": {SSHPath: "none", Home: dir, CurrentUser: "me"}}
	if path, err := exec.LookPath("ssh"); err == nil {
		t.Setenv("HOME", dir)
		resolvers["ssh -G"] = SSHResolver{SSHPath: path, Home: dir, CurrentUser: "me"}
	}
	want := []string{filepath.Join(dir, ".ssh/a-cert.pub"), "/certs/b-cert.pub"}
	for name, r := range resolvers {
		t.Run(name, func(t *testing.T) {
			s, err := r.Resolve(context.Background(), "gpu", cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.CertificateFiles, want) {
				t.Errorf("CertificateFiles %q, want %q", s.CertificateFiles, want)
			}
			s, err = r.Resolve(context.Background(), "plain", cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.CertificateFiles) != 0 {
				t.Errorf("plain host: CertificateFiles %q, want none", s.CertificateFiles)
			}
		})
	}
}
