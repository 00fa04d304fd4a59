//go:build unix

package remote

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSplitPython(t *testing.T) {
	for _, tt := range []struct {
		command, prefix, module string
		ok                      bool
	}{
		{"python3 -m ipykernel_launcher", "python3", "ipykernel_launcher", true},
		{"/usr/bin/python3 -m ipykernel_launcher --matplotlib=inline", "/usr/bin/python3", "ipykernel_launcher", true},
		{"/usr/bin/python3 -S -m ipykernel_launcher", "/usr/bin/python3 -S", "ipykernel_launcher", true},
		{"python3 -X dev -I -mipykernel", "python3 -X dev -I", "ipykernel", true},
		{"conda run -n gpu python -m ipykernel_launcher", "conda run -n gpu python", "ipykernel_launcher", true},
		{"srun -N1 /opt/py/bin/python3.11 -m ipykernel_launcher --ip=10.0.0.1", "srun -N1 /opt/py/bin/python3.11", "ipykernel_launcher", true},
		{". ~/venv/bin/activate && python -m ipykernel_launcher", ". ~/venv/bin/activate && python", "ipykernel_launcher", true},
		{"env OMP_NUM_THREADS=4 python3 /opt/kernel.py", "env OMP_NUM_THREADS=4 python3", "", true},
		{"python3 -m 'bad name'", "python3", "", true},
		{"ipython kernel", "", "", false},
		{"jupyter kernel --kernel=python3", "", "", false},
		{`bash -lc "python3 -m ipykernel_launcher"`, "", "", false},
		{"PY=python3 julia", "", "", false},
	} {
		prefix, module, ok := SplitPython(tt.command)
		if prefix != tt.prefix || module != tt.module || ok != tt.ok {
			t.Errorf("SplitPython(%q) = %q, %q, %v; want %q, %q, %v", tt.command, prefix, module, ok, tt.prefix, tt.module, tt.ok)
		}
	}
}

const sysPython = "/usr/bin/python3"

func needIPyKernel(t *testing.T) {
	t.Helper()
	if exec.Command(sysPython, "-c", "import ipykernel").Run() != nil {
		t.Skip("needs Debian's python3 with ipykernel")
	}
}

// TestProbePython: the probe runs the kernel command's interpreter as the
// kernel would (its options, workdir and env:) through the real remote.sh,
// and names what it cannot import.
func TestProbePython(t *testing.T) {
	needIPyKernel(t)
	ctx := context.Background()
	wd, pp := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(wd, "kq_in_workdir.py"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(pp, "kq_on_pythonpath.py"), nil, 0o644))
	for _, tt := range []struct {
		name    string
		k       KernelSpec
		missing []string
	}{
		{"ipykernel", KernelSpec{Command: sysPython + " -m ipykernel_launcher"}, nil},
		{"no such module", KernelSpec{Command: sysPython + " -m no_such_module"}, []string{"no_such_module"}},
		{"no site-packages", KernelSpec{Command: sysPython + " -S -m ipykernel_launcher"}, []string{"ipykernel", "ipykernel_launcher"}},
		{"workdir", KernelSpec{Command: sysPython + " -m kq_in_workdir", Workdir: wd}, nil},
		{"env", KernelSpec{Command: sysPython + " -m kq_on_pythonpath", Env: map[string]string{"PYTHONPATH": pp}}, nil},
		{"env missing", KernelSpec{Command: sysPython + " -m kq_on_pythonpath"}, []string{"kq_on_pythonpath"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			info, err := ProbePython(ctx, localRunner{}, tt.k)
			must(t, err)
			if !slices.Equal(info.Missing, tt.missing) {
				t.Errorf("missing %q, want %q", info.Missing, tt.missing)
			}
			if !strings.HasPrefix(info.Version, "3.") || info.Executable != sysPython {
				t.Errorf("python %q at %q", info.Version, info.Executable)
			}
			if (info.IPyKernel == "") != slices.Contains(tt.missing, "ipykernel") {
				t.Errorf("ipykernel %q with missing %q", info.IPyKernel, info.Missing)
			}
		})
	}
	if _, err := ProbePython(ctx, localRunner{}, KernelSpec{Command: "ipython kernel"}); !errors.Is(err, ErrNoInterpreter) {
		t.Errorf("ipython kernel: %v, want ErrNoInterpreter", err)
	}
	_, err := ProbePython(ctx, localRunner{}, KernelSpec{Command: "/no/such/python3 -m ipykernel_launcher"})
	var rerr *Error
	if !errors.As(err, &rerr) || !strings.Contains(err.Error(), "status 127") || !strings.Contains(err.Error(), "/no/such/python3") {
		t.Errorf("missing interpreter: %v", err)
	}
}

// TestCheckRuntimeDir: a usable dir passes, a missing one passes when it
// can be created, and each unusable one says why; nothing is left behind.
func TestCheckRuntimeDir(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		d := filepath.Join(base, name)
		must(t, os.Mkdir(d, 0o700))
		must(t, os.Chmod(d, mode))
		return d
	}
	ok := mk("ok", 0o700)
	info, err := CheckRuntimeDir(ctx, localRunner{}, ok)
	if err != nil || !info.Exists || info.Path != ok {
		t.Errorf("usable dir: %+v, %v", info, err)
	}
	missing := filepath.Join(ok, "a", "b")
	info, err = CheckRuntimeDir(ctx, localRunner{}, missing)
	if err != nil || info.Exists || info.CreateIn != ok || info.Path != missing {
		t.Errorf("missing dir: %+v, %v", info, err)
	}
	file := filepath.Join(base, "file")
	must(t, os.WriteFile(file, nil, 0o600))
	for _, tt := range []struct{ rt, want string }{
		{mk("shared", 0o770), "writable by other users"},
		{mk("world", 0o707), "writable by other users"},
		{file, "is not a directory"},
		{filepath.Join(file, "rt"), "cannot create runtime dir"},
		{unwritable(t, mk("locked", 0o700)), "is not writable by"},
	} {
		_, err := CheckRuntimeDir(ctx, localRunner{}, tt.rt)
		var rerr *Error
		if !errors.As(err, &rerr) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error saying %q", tt.rt, err, tt.want)
		}
	}
	for _, d := range []string{ok, filepath.Join(base, "locked")} {
		if entries, _ := os.ReadDir(d); len(entries) > 0 {
			t.Errorf("left in %s: %v", d, entries)
		}
	}
}

// unwritable makes dir refuse new files: mode 0500, and for root (whom
// modes do not stop) the immutable attribute, removed at the test's end.
func unwritable(t *testing.T, dir string) string {
	must(t, os.Chmod(dir, 0o500))
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	if os.Geteuid() != 0 {
		return dir
	}
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		t.Skipf("root, and chattr +i fails (%v: %s): cannot make a dir root cannot write", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", dir).Run() })
	return dir
}
