package kernelspec

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

var nameCases = []struct{ profile, name string }{
	{"server-gpu", "server-gpu"},
	{"Server-GPU", "server-gpu"},
	{"gpu.example.org", "gpu.example.org"},
	{"my box@lab", "my-box-lab"},
	{"ünï", "-n-"},
	{"under_score", "under_score"},
	{"..", "kq--"},
}

func TestDefaultName(t *testing.T) {
	for _, c := range nameCases {
		t.Run(c.profile, func(t *testing.T) {
			got := DefaultName(c.profile)
			if got != c.name {
				t.Errorf("DefaultName(%q) = %q, want %q", c.profile, got, c.name)
			}
			if err := CheckName(got); err != nil {
				t.Errorf("default name %q is refused: %v", got, err)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"server-gpu", true}, {"a.b_c-1", true}, {"Server", false}, {"a b", false},
		{"a/b", false}, {"", false}, {".", false}, {"..", false}, {"x:y", false},
	} {
		err := CheckName(c.name)
		if (err == nil) != c.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrBadName) {
			t.Errorf("CheckName(%q): %v is not ErrBadName", c.name, err)
		}
	}
}

func TestKQ(t *testing.T) {
	meta := map[string]json.RawMessage{"kq": json.RawMessage(`{"profile":"p","version":"1"}`)}
	for _, c := range []struct {
		name    string
		spec    Spec
		kq      bool
		profile string
	}{
		{"metadata", Spec{Argv: []string{"/x/anything"}, Metadata: meta}, true, "p"},
		{"argv", Spec{Argv: []string{"/usr/local/bin/kq", "kernel", "q", "-f", "{connection_file}"}}, true, "q"},
		{"argv with config", Spec{Argv: []string{"/bin/kq", "--config", "/c.yaml", "-F", "/s", "kernel", "r"}}, true, "r"},
		{"python", Spec{Argv: []string{"python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"}}, false, ""},
		{"kernel but not kq", Spec{Argv: []string{"/bin/other", "kernel", "x"}}, false, ""},
		{"kq but not kernel", Spec{Argv: []string{"/bin/kq", "run", "x"}}, false, ""},
		{"empty", Spec{}, false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := c.spec.KQ()
			if (m != nil) != c.kq {
				t.Fatalf("KQ() = %+v, want kq=%v", m, c.kq)
			}
			if m != nil && m.Profile != c.profile {
				t.Errorf("profile %q, want %q", m.Profile, c.profile)
			}
		})
	}
}

var dirCases = []struct {
	name string
	env  Env
	want []string
}{
	{"plain", Env{DataDir: "/h/.local/share/jupyter", UserBase: "/h/.local", Prefix: "/usr", System: []string{"/usr/local/share/jupyter", "/usr/share/jupyter"}},
		[]string{"/h/.local/share/jupyter", "/usr/local/share/jupyter", "/usr/share/jupyter"}},
	{"jupyter path first", Env{JupyterPath: []string{"/a/", "/b"}, DataDir: "/d", System: []string{"/s"}},
		[]string{"/a", "/b", "/d", "/s"}},
	{"venv after user", Env{DataDir: "/d", UserBase: "/u", Prefix: "/venv", System: []string{"/s"}},
		[]string{"/d", "/u/share/jupyter", "/venv/share/jupyter", "/s"}},
	{"prefer env", Env{DataDir: "/d", UserBase: "/u", Prefix: "/venv", PreferEnv: true, System: []string{"/s"}},
		[]string{"/venv/share/jupyter", "/d", "/u/share/jupyter", "/s"}},
}

func TestSearchDirs(t *testing.T) {
	for _, c := range dirCases {
		t.Run(c.name, func(t *testing.T) {
			var want []string
			for _, w := range c.want {
				want = append(want, filepath.Join(w, "kernels"))
			}
			if got := SearchDirs(c.env); !reflect.DeepEqual(got, want) {
				t.Errorf("SearchDirs =\n%q\nwant\n%q", got, want)
			}
		})
	}
}

// TestSearchDirsMatchJupyter: the search path is jupyter_core's own, for
// the environments that change it.
func TestSearchDirsMatchJupyter(t *testing.T) {
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil || runtime.GOOS != "linux" {
		t.Skip("needs Debian's python3 with jupyter_core")
	}
	tmp := t.TempDir()
	for _, c := range []struct{ name, env string }{
		{"defaults", ""},
		{"data dir", "JUPYTER_DATA_DIR=" + tmp + "/data"},
		{"jupyter path", "JUPYTER_PATH=" + tmp + "/a:" + tmp + "/b/"},
		{"xdg", "XDG_DATA_HOME=" + tmp + "/xdg"},
		{"user base", "PYTHONUSERBASE=" + tmp + "/ub"},
		{"prefer env", "JUPYTER_PREFER_ENV_PATH=1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range []string{"JUPYTER_DATA_DIR", "JUPYTER_PATH", "XDG_DATA_HOME", "PYTHONUSERBASE", "JUPYTER_PREFER_ENV_PATH"} {
				t.Setenv(k, "")
			}
			if k, v, ok := strings.Cut(c.env, "="); ok {
				t.Setenv(k, v)
			}
			out, err := exec.Command(py, "-c", `import json; from jupyter_core.paths import jupyter_path; print(json.dumps(jupyter_path("kernels")))`).Output()
			if err != nil {
				t.Skipf("jupyter_core: %v", err)
			}
			var want []string
			must(t, json.Unmarshal(out, &want))
			pyInfo, err := askPython(t.Context(), py)
			must(t, err)
			e, err := CurrentEnv(pyInfo)
			must(t, err)
			if got := SearchDirs(e); !reflect.DeepEqual(got, want) {
				t.Errorf("SearchDirs =\n%q\njupyter_core says\n%q", got, want)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func kqSpec(profile string) *Spec {
	return &Spec{Argv: []string{"/bin/sh", "kernel", profile, "-f", "{connection_file}"}, DisplayName: profile + " (remote)",
		Language: "python", InterruptMode: "signal",
		Metadata: map[string]json.RawMessage{"kq": json.RawMessage(`{"profile":"` + profile + `","version":"t"}`)}}
}

func writeForeign(t *testing.T, dir string, argv0 string) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	data, _ := json.Marshal(Spec{Argv: []string{argv0, "-m", "ipykernel_launcher", "-f", "{connection_file}"}, DisplayName: "Python", Language: "python"})
	must(t, os.WriteFile(filepath.Join(dir, "kernel.json"), data, 0o644))
}

func TestInstall(t *testing.T) {
	kd := filepath.Join(t.TempDir(), "kernels")
	logos := map[string][]byte{Logo64: []byte("png64"), Logo32: []byte("png32")}
	dir, err := Install(kd, "p", kqSpec("p"), logos, false)
	must(t, err)
	s, err := ReadSpec(dir)
	must(t, err)
	if s.KQ() == nil || s.KQ().Profile != "p" || s.InterruptMode != "signal" {
		t.Errorf("spec read back: %+v", s)
	}
	// A reinstall without logos removes the old ones, and leaves no temp file.
	_, err = Install(kd, "p", kqSpec("p"), nil, false)
	must(t, err)
	names, _ := os.ReadDir(dir)
	if len(names) != 1 || names[0].Name() != "kernel.json" {
		t.Errorf("files after reinstall: %v", names)
	}
	if st, _ := os.Stat(filepath.Join(dir, "kernel.json")); st.Mode().Perm() != 0o644 {
		t.Errorf("kernel.json mode %v", st.Mode())
	}
	// Another tool's spec is replaced only when forced.
	writeForeign(t, filepath.Join(kd, "python3"), "python3")
	if _, err := Install(kd, "python3", kqSpec("x"), nil, false); !errors.Is(err, ErrNotKQ) {
		t.Errorf("over a foreign spec: %v, want ErrNotKQ", err)
	}
	_, err = Install(kd, "python3", kqSpec("x"), nil, true)
	must(t, err)
	if _, err := Install(kd, "Bad Name", kqSpec("x"), nil, false); !errors.Is(err, ErrBadName) {
		t.Errorf("bad name: %v", err)
	}
}

func TestListAndRemove(t *testing.T) {
	root := t.TempDir()
	first, second := filepath.Join(root, "a", "kernels"), filepath.Join(root, "b", "kernels")
	dirs := []string{first, filepath.Join(root, "missing"), second}
	_, err := Install(first, "p", kqSpec("p"), nil, false)
	must(t, err)
	_, err = Install(second, "p", kqSpec("p2"), nil, false)
	must(t, err)
	writeForeign(t, filepath.Join(second, "py"), "/no/such/python")
	writeForeign(t, filepath.Join(second, "Bad Name"), "python3")
	must(t, os.MkdirAll(filepath.Join(second, "empty"), 0o755))

	got := map[string]Entry{}
	for _, e := range List(dirs) {
		got[e.Dir] = e
	}
	if len(got) != 3 {
		t.Fatalf("entries: %+v", got)
	}
	if e := got[filepath.Join(first, "p")]; !e.KQ || e.Shadowed || e.Profile != "p" || e.MissingProgram {
		t.Errorf("first p: %+v", e)
	}
	if e := got[filepath.Join(second, "p")]; !e.Shadowed {
		t.Errorf("second p not shadowed: %+v", e)
	}
	if e := got[filepath.Join(second, "py")]; e.KQ || !e.MissingProgram {
		t.Errorf("py: %+v", e)
	}

	var nf *NotFoundError
	if _, _, err := Remove(dirs, "nope", false); !errors.As(err, &nf) || !strings.Contains(err.Error(), first) {
		t.Errorf("remove missing: %v", err)
	}
	if _, _, err := Remove(dirs, "py", false); !errors.Is(err, ErrNotKQ) {
		t.Errorf("remove foreign: %v", err)
	}
	removed, next, err := Remove(dirs, "p", false)
	must(t, err)
	if removed.Dir != filepath.Join(first, "p") || next == nil || next.Dir != filepath.Join(second, "p") {
		t.Errorf("removed %s, next %+v", removed.Dir, next)
	}
	if _, _, err := Remove(dirs, "py", true); err != nil {
		t.Errorf("forced remove: %v", err)
	}
}
