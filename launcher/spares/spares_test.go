package spares

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSaveTake: an entry is written 0600 in a 0700 dir under the user's
// cache dir, read once (Take removes it), and keys tell hosts, runtime
// dirs and flavors apart.
func TestSaveTake(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	k := Key([]string{"me@login:22", "me@gpu:22"}, "/rt", "f1")
	for _, other := range []string{Key([]string{"me@gpu:22"}, "/rt", "f1"), Key([]string{"me@login:22", "me@gpu:22"}, "/rt2", "f1"),
		Key([]string{"me@login:22", "me@gpu:22"}, "/rt", "f2")} {
		if other == k {
			t.Fatalf("two different spares share key %s", k)
		}
	}
	if _, ok := Take(k); ok {
		t.Fatal("Take found an entry before any Save")
	}
	want := Entry{RT: "/rt", ID: "abc", Path: "/rt/kernel-kq-abc.json", JSON: []byte(`{"key":"s3cret"}`)}
	if err := Save(k, want); err != nil {
		t.Fatal(err)
	}
	dir, _ := Dir()
	fi, err := os.Stat(filepath.Join(dir, k+".json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("entry: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", di.Mode().Perm())
	}
	got, ok := Take(k)
	if !ok || got.ID != want.ID || got.Path != want.Path || string(got.JSON) != string(want.JSON) {
		t.Fatalf("Take = %+v, %v; want %+v", got, ok, want)
	}
	if _, ok := Take(k); ok {
		t.Error("an entry was taken twice")
	}
	if err := os.WriteFile(filepath.Join(dir, k+".json"), []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := Take(k); ok {
		t.Error("a broken entry was taken")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Errorf("left in the cache: %v", m)
	}
}
