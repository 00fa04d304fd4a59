package profiles

import (
	"reflect"
	"strings"
	"testing"
)

func TestExpandFrontend(t *testing.T) {
	for _, tt := range []struct {
		in, want []string
	}{
		{[]string{"qtconsole"}, []string{"jupyter", "qtconsole", "--kernel", "{kernel}"}},
		{[]string{"console"}, []string{"jupyter", "console", "--kernel", "{kernel}"}},
		// Not a shortcut alone: an argv as written.
		{[]string{"console", "--foo"}, []string{"console", "--foo"}},
		{[]string{"jupyter", "console"}, []string{"jupyter", "console"}},
		{[]string{"/usr/bin/console"}, []string{"/usr/bin/console"}},
		{[]string{"notebook"}, []string{"notebook"}},
	} {
		if got := ExpandFrontend(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ExpandFrontend(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// The expansion is a copy: editing it leaves the table alone.
	got := ExpandFrontend([]string{"qtconsole"})
	got[0] = "changed"
	if DefaultFrontend[0] != "jupyter" || ExpandFrontend([]string{"qtconsole"})[0] != "jupyter" {
		t.Fatal("ExpandFrontend handed out the table itself")
	}
}

// TestFrontendSettingShortcut: the frontend setting stores a shortcut as
// its argv, and the resolved profile owns its kernel.
func TestFrontendSettingShortcut(t *testing.T) {
	var l Layer
	if err := SettingFrontend.Set(&l, []string{"console"}); err != nil {
		t.Fatal(err)
	}
	p, err := Resolve("p", Layer{Host: ptr("h")}, l)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"jupyter", "console", "--kernel", "{kernel}"}; !reflect.DeepEqual(p.Frontend, want) || !p.OwnsKernel() {
		t.Fatalf("frontend %q (owns kernel %v), want %q", p.Frontend, p.OwnsKernel(), want)
	}
	if got := p.FrontendArgv("/f.json"); !reflect.DeepEqual(got, []string{"jupyter", "console", "--existing", "/f.json"}) {
		t.Fatalf("--existing form %q", got)
	}
}

func TestJupyterSubcommand(t *testing.T) {
	for _, tt := range []struct {
		argv []string
		want string
	}{
		{[]string{"jupyter", "qtconsole", "--kernel", "x"}, "jupyter-qtconsole"},
		{[]string{"/usr/bin/jupyter", "console"}, "jupyter-console"},
		{[]string{"jupyter", "--version"}, ""},
		{[]string{"jupyter"}, ""},
		{[]string{"ipython", "console"}, ""},
		{[]string{"/opt/jupyter-wrapper", "console"}, ""},
	} {
		if got := JupyterSubcommand(tt.argv); got != tt.want {
			t.Errorf("JupyterSubcommand(%q) = %q, want %q", tt.argv, got, tt.want)
		}
	}
}

func TestInstallHint(t *testing.T) {
	for _, tt := range []struct {
		program string
		want    []string
	}{
		{"jupyter-qtconsole", []string{"apt install jupyter-qtconsole", "pip install qtconsole"}},
		{"/usr/bin/jupyter-console", []string{"apt install jupyter-console", "pip install jupyter-console"}},
		{"jupyter", []string{"apt install jupyter-core", "pip install jupyter-core"}},
		{"jupyter-lab", []string{"pip install jupyterlab"}},
	} {
		got := InstallHint(tt.program)
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("InstallHint(%q) = %q, want it to name %q", tt.program, got, w)
			}
		}
	}
	if h := InstallHint("jupyter-lab"); strings.Contains(h, "apt") {
		t.Errorf("jupyter-lab has no Debian package, hint %q", h)
	}
	if h := InstallHint("my-frontend"); h != "" {
		t.Errorf("unknown program: hint %q", h)
	}
}
