package kernelspec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"time"
)

// Python is what a local Python with Jupyter says about its paths.
type Python struct {
	// Executable is the interpreter that answered; "" when none did.
	Executable string `json:"executable"`
	// Prefix is its sys.prefix.
	Prefix string `json:"prefix"`
	// UserBase is site.getuserbase() when site.ENABLE_USER_SITE, else "".
	UserBase string `json:"userbase"`
}

// ErrNoPython: no local Python with jupyter_core was found.
var ErrNoPython = errors.New("no local Python with Jupyter (jupyter_core) found")

// probeScript fails unless jupyter_core imports: a python3 without
// Jupyter (a pyenv shim, say) is not the one Jupyter runs on.
const probeScript = `import json, site, sys, jupyter_core
ub = site.getuserbase() if site.ENABLE_USER_SITE and hasattr(site, "getuserbase") else (site.USER_BASE if site.ENABLE_USER_SITE else "")
print(json.dumps({"executable": sys.executable, "prefix": sys.prefix, "userbase": ub or ""}))`

// PythonCandidates are tried in order: the Pythons on PATH, then
// Debian's, whose Jupyter the system packages install.
var PythonCandidates = []string{"python3", "python", "/usr/bin/python3"}

// probeTimeout bounds one interpreter's answer.
const probeTimeout = 10 * time.Second

// FindPython asks each candidate in turn for its paths and returns the
// first that has Jupyter.
func FindPython(ctx context.Context, candidates []string) (Python, error) {
	seen := map[string]bool{}
	for _, c := range candidates {
		exe, err := exec.LookPath(c)
		if err != nil || seen[exe] {
			continue
		}
		seen[exe] = true
		if py, err := askPython(ctx, exe); err == nil {
			return py, nil
		}
	}
	return Python{}, ErrNoPython
}

func askPython(ctx context.Context, exe string) (Python, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, "-c", probeScript)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return Python{}, fmt.Errorf("ask %s for its paths: %w", exe, err)
	}
	var py Python
	if err := json.Unmarshal(out.Bytes(), &py); err != nil || py.Prefix == "" {
		return Python{}, fmt.Errorf("ask %s for its paths: unexpected answer %q", exe, out.String())
	}
	return py, nil
}

// SearchPath is Jupyter's kernelspec search path here: SearchDirs for
// this process, with sys.prefix from the first of PythonCandidates that
// has Jupyter (none: the environment alone).
func SearchPath(ctx context.Context) ([]string, error) {
	py, _ := FindPython(ctx, PythonCandidates)
	env, err := CurrentEnv(py)
	if err != nil {
		return nil, err
	}
	return SearchDirs(env), nil
}
