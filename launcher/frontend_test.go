//go:build unix

package launcher

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kq-dev/kq/profiles"
)

// stub writes an executable shell script at dir/name.
func stub(t *testing.T, dir, name string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func hintOf(err error) string {
	var h interface{ Hint() string }
	if errors.As(err, &h) {
		return h.Hint()
	}
	return ""
}

// TestFindFrontend: the program of a frontend is looked for as the
// session would run it, a jupyter subcommand as jupyter would find it;
// a missing one is a usage error naming it and the packages to install.
func TestFindFrontend(t *testing.T) {
	dir := t.TempDir()
	onPath, beside, other := filepath.Join(dir, "path"), filepath.Join(dir, "beside"), filepath.Join(dir, "other")
	stub(t, onPath, "jupyter")
	stub(t, onPath, "jupyter-console")
	stub(t, beside, "jupyter")
	stub(t, beside, "jupyter-notebook")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	// A symlinked jupyter finds subcommands beside its target too.
	if err := os.Symlink(filepath.Join(beside, "jupyter"), filepath.Join(other, "jupyter")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", onPath)
	prof := func(argv ...string) profiles.Profile { return profiles.Profile{Name: "p", Frontend: argv} }

	for _, tt := range []struct {
		argv []string
		want string
	}{
		{[]string{"jupyter", "console", "--kernel", "{kernel}"}, filepath.Join(onPath, "jupyter-console")},
		{[]string{filepath.Join(beside, "jupyter"), "notebook"}, filepath.Join(beside, "jupyter-notebook")},
		{[]string{filepath.Join(other, "jupyter"), "notebook"}, filepath.Join(beside, "jupyter-notebook")},
		{[]string{"jupyter", "--existing", "{connection_file}"}, filepath.Join(onPath, "jupyter")},
	} {
		got, err := findFrontend(prof(tt.argv...))
		if err != nil || got != tt.want {
			t.Errorf("findFrontend(%q) = %q, %v; want %q", tt.argv, got, err, tt.want)
		}
	}

	for _, tt := range []struct {
		argv      []string
		msg, hint []string
	}{
		{[]string{"jupyter", "qtconsole", "--kernel", "{kernel}"},
			[]string{`frontend "jupyter qtconsole" not found`, "jupyter-qtconsole is not"},
			[]string{"apt install jupyter-qtconsole", "pip install qtconsole", "--frontend"}},
		{[]string{"/no/such/jupyter", "console"},
			[]string{`frontend "/no/such/jupyter" not found`},
			[]string{"apt install jupyter-core", "pip install jupyter-core"}},
		{[]string{"my-frontend", "{connection_file}"},
			[]string{`frontend "my-frontend" not found`},
			[]string{"install it, or choose another frontend"}},
	} {
		_, err := findFrontend(prof(tt.argv...))
		if !errors.Is(err, ErrUsage) {
			t.Fatalf("findFrontend(%q): %v, want ErrUsage", tt.argv, err)
		}
		for _, m := range tt.msg {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("findFrontend(%q): error %q does not say %q", tt.argv, err, m)
			}
		}
		for _, h := range tt.hint {
			if !strings.Contains(hintOf(err), h) {
				t.Errorf("findFrontend(%q): hint %q does not say %q", tt.argv, hintOf(err), h)
			}
		}
	}
}
