package kernelspec

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// DataDir follows jupyter_core.paths.jupyter_data_dir: $JUPYTER_DATA_DIR,
// else the platform's per-user default. It is where "kq kernelspec
// install --user" (the default) writes, and the parent of the local
// runtime dir.
func DataDir() (string, error) {
	if d := os.Getenv("JUPYTER_DATA_DIR"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find home directory: %w", err)
	}
	switch runtime.GOOS {
	case "darwin":
		return filepath.Join(home, "Library", "Jupyter"), nil
	case "windows":
		if a := os.Getenv("APPDATA"); a != "" {
			return filepath.Join(a, "jupyter"), nil
		}
		return filepath.Join(home, ".jupyter", "data"), nil
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "jupyter"), nil
	}
	return filepath.Join(home, ".local", "share", "jupyter"), nil
}

// Env is what jupyter_core.paths.jupyter_path reads: the environment and,
// from the Python that runs Jupyter, sys.prefix and the user site base.
type Env struct {
	// JupyterPath is $JUPYTER_PATH, split on the OS list separator.
	JupyterPath []string
	// DataDir is jupyter_data_dir().
	DataDir string
	// UserBase is site.getuserbase() when site.ENABLE_USER_SITE; "" skips it.
	UserBase string
	// Prefix is sys.prefix; "" when no Python with Jupyter was found.
	Prefix string
	// PreferEnv is $JUPYTER_PREFER_ENV_PATH: sys.prefix before the user's dirs.
	PreferEnv bool
	// System is SYSTEM_JUPYTER_PATH.
	System []string
}

// SystemDirs is jupyter_core's SYSTEM_JUPYTER_PATH for this OS; prefix is
// used on Windows without %PROGRAMDATA%, as there.
func SystemDirs(prefix string) []string {
	if runtime.GOOS == "windows" {
		if pd := os.Getenv("PROGRAMDATA"); pd != "" {
			return []string{filepath.Join(pd, "jupyter")}
		}
		return []string{filepath.Join(prefix, "share", "jupyter")}
	}
	return []string{"/usr/local/share/jupyter", "/usr/share/jupyter"}
}

// envSet is jupyter_core's envset: set, and not a word for false.
func envSet(v string) bool {
	switch strings.ToLower(v) {
	case "", "no", "n", "false", "off", "0", "0.0":
		return false
	}
	return true
}

// SearchDirs is jupyter_core.paths.jupyter_path("kernels"), line for line:
// $JUPYTER_PATH first, then the user's dirs (the data dir, then the user
// site base's share/jupyter) and sys.prefix's share/jupyter (this one
// first under JUPYTER_PREFER_ENV_PATH; left out when it is a system dir),
// then the system dirs. Duplicates stay, as in Jupyter: the later copy of
// a name is shadowed either way.
func SearchDirs(e Env) []string {
	var paths []string
	for _, p := range e.JupyterPath {
		paths = append(paths, strings.TrimRight(p, string(os.PathSeparator)))
	}
	user := []string{e.DataDir}
	if e.UserBase != "" {
		if d := filepath.Join(e.UserBase, "share", "jupyter"); !slices.Contains(user, d) {
			user = append(user, d)
		}
	}
	var env []string
	if e.Prefix != "" {
		if d := filepath.Join(e.Prefix, "share", "jupyter"); !slices.Contains(e.System, d) {
			env = append(env, d)
		}
	}
	if e.PreferEnv {
		paths = append(append(paths, env...), user...)
	} else {
		paths = append(append(paths, user...), env...)
	}
	paths = append(paths, e.System...)
	for i, p := range paths {
		paths[i] = filepath.Join(p, "kernels")
	}
	return paths
}

// CurrentEnv is Env for this process, with sys.prefix and the user site
// base from py (the zero Python when none was found: then sys.prefix is
// taken from an active conda or virtual environment, and the user base
// is Python's POSIX default).
func CurrentEnv(py Python) (Env, error) {
	data, err := DataDir()
	if err != nil {
		return Env{}, err
	}
	e := Env{DataDir: data, Prefix: py.Prefix, UserBase: py.UserBase, PreferEnv: envSet(os.Getenv("JUPYTER_PREFER_ENV_PATH"))}
	if jp := os.Getenv("JUPYTER_PATH"); jp != "" {
		e.JupyterPath = strings.Split(jp, string(os.PathListSeparator))
	}
	if py.Executable == "" {
		e.Prefix = firstSet(os.Getenv("CONDA_PREFIX"), os.Getenv("VIRTUAL_ENV"))
		e.UserBase = defaultUserBase()
	}
	e.System = SystemDirs(e.Prefix)
	return e, nil
}

// defaultUserBase is site.getuserbase() on POSIX: $PYTHONUSERBASE, else
// ~/.local (macOS framework builds and Windows depend on the Python
// version, so they are left to the probe).
func defaultUserBase() string {
	if b := os.Getenv("PYTHONUSERBASE"); b != "" {
		return b
	}
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		return ""
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local")
	}
	return ""
}

func firstSet(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
