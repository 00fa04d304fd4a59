//go:build unix

package remote

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var matchCases = []struct {
	name, command, want string
	specs               []RemoteSpec
}{
	{"same argv", "/opt/py/bin/python3 -m ipykernel_launcher", "py311",
		[]RemoteSpec{{Name: "python3", Argv: []string{"python3", "-m", "other"}}, {Name: "py311", Argv: []string{"python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"}}}},
	{"python3 by default", "ipython kernel", "python3",
		[]RemoteSpec{{Name: "ir", Argv: []string{"R"}}, {Name: "python3", Argv: []string{"python", "-m", "ipykernel_launcher", "-f", "{connection_file}"}}}},
	{"the only one", "julia", "julia-1.10", []RemoteSpec{{Name: "julia-1.10", Argv: []string{"julia", "-i", "{connection_file}"}}}},
	{"none", "julia", "", []RemoteSpec{{Name: "a"}, {Name: "b"}}},
	{"empty", "python3", "", nil},
}

func TestMatchSpec(t *testing.T) {
	for _, c := range matchCases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := MatchSpec(c.specs, c.command)
			if ok != (c.want != "") || got.Name != c.want {
				t.Errorf("MatchSpec = %q, %v; want %q", got.Name, ok, c.want)
			}
		})
	}
}

func TestInterpreter(t *testing.T) {
	for cmd, want := range map[string]string{
		"/usr/bin/python3 -m ipykernel_launcher": "/usr/bin/python3",
		"python -m ipykernel":                    "python",
		"ipython kernel":                         "",
		"":                                       "",
	} {
		if got := Interpreter(cmd); got != want {
			t.Errorf("Interpreter(%q) = %q, want %q", cmd, got, want)
		}
	}
}

// TestKernelSpecOps: the server's specs and logos come back through the
// real remote.sh, from Debian's Jupyter; without Jupyter the op says so.
func TestKernelSpecOps(t *testing.T) {
	const py = "/usr/bin/python3"
	if exec.Command(py, "-c", "import jupyter_client").Run() != nil {
		t.Skip("needs Debian's python3 with jupyter_client")
	}
	dataDir := t.TempDir()
	spec := filepath.Join(dataDir, "kernels", "fake")
	must(t, os.MkdirAll(spec, 0o755))
	must(t, os.WriteFile(filepath.Join(spec, "kernel.json"), []byte(`{"argv":["fake","-f","{connection_file}"],"display_name":"F","language":"fakelang"}`), 0o644))
	png := []byte("\x89PNG\r\n\x1a\n fake")
	must(t, os.WriteFile(filepath.Join(spec, "logo-64x64.png"), png, 0o644))
	t.Setenv("JUPYTER_DATA_DIR", dataDir)

	specs, err := KernelSpecs(t.Context(), localRunner{}, py)
	must(t, err)
	got, ok := MatchSpec(specs, "fake")
	if !ok || got.Language != "fakelang" || got.ResourceDir != spec {
		t.Fatalf("specs %+v, matched %+v", specs, got)
	}
	logos, err := Logos(t.Context(), localRunner{}, got.ResourceDir)
	must(t, err)
	if len(logos) != 1 || !bytes.Equal(logos["logo-64x64.png"], png) {
		t.Errorf("logos %q", logos)
	}
	logos, err = Logos(t.Context(), localRunner{}, filepath.Join(dataDir, "nothing-here"))
	if err != nil || len(logos) != 0 {
		t.Errorf("no logos: %q, %v", logos, err)
	}

	t.Setenv("PATH", t.TempDir())
	_, err = KernelSpecs(t.Context(), localRunner{}, "/no/such/python3")
	var rerr *Error
	if !errors.As(err, &rerr) {
		t.Errorf("without Jupyter: %v, want a remote *Error", err)
	}
}
