package profiles

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestSSHHostAliases(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	files := map[string]string{
		".ssh/config": "Host gpu gpu2 *.lab !bad\n  HostName 10.0.0.1\nInclude conf.d/*.conf\n" +
			"Include ~/other.conf\n# Host commented\nHost=\"quoted\"\n",
		".ssh/conf.d/a.conf": "Host a-node\nInclude nested.conf\n",
		".ssh/nested.conf":   "Host deep gpu\n",
		"other.conf":         "Match host x\nHost b-node?\nHost tilde\n",
	}
	for name, body := range files {
		p := filepath.Join(home, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got := SSHHostAliases(filepath.Join(home, ".ssh", "config"))
	want := []string{"gpu", "gpu2", "a-node", "deep", "tilde", "quoted"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("aliases %q, want %q", got, want)
	}
	if got := SSHHostAliases(filepath.Join(home, "missing")); len(got) != 0 {
		t.Errorf("a missing file gave %q", got)
	}
}

func TestSSHHostAliasesIncludeLoop(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config")
	if err := os.WriteFile(p, []byte("Host self\nInclude "+p+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := SSHHostAliases(p); !reflect.DeepEqual(got, []string{"self"}) {
		t.Errorf("aliases %q", got)
	}
}
