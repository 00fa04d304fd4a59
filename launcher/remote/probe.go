package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// The probe ops of kq doctor print one tag of their own, KQ-DIR (see
// protocol.go), beside KQ-FILE, JSON blocks, KQ-LOG, KQ-DONE and KQ-ERROR.

// PythonInfo is what the kernel command's interpreter says of itself.
type PythonInfo struct {
	// Command is the probe's command: the kernel command up to its
	// interpreter and that interpreter's options, then -c CODE.
	Command string `json:"-"`
	// Module is the module the kernel command runs with -m, or "".
	Module string `json:"-"`
	// Executable and Version are sys.executable and the version.
	Executable string `json:"executable"`
	Version    string `json:"version"`
	// IPyKernel is ipykernel's version; "" when it cannot be imported.
	IPyKernel string `json:"ipykernel"`
	// Missing names the modules it cannot import: ipykernel (or the
	// module ipykernel needs that is missing), and the -m module.
	Missing []string `json:"missing"`
	// Log is whatever else the interpreter printed (warnings).
	Log []string `json:"-"`
}

// ErrNoInterpreter: the kernel command names no Python kq can ask.
var ErrNoInterpreter = errors.New("the kernel command names no Python interpreter")

// probeCode is the Python that answers (Python 3; Python 2 too, for a
// clear "missing ipykernel" rather than a syntax error). %s is the -m
// module as a string literal.
const probeCode = `import json, sys
r = {"executable": sys.executable, "version": sys.version.split()[0], "missing": [], "ipykernel": ""}
try:
    import ipykernel
    r["ipykernel"] = getattr(ipykernel, "__version__", "unknown")
except ImportError as e:
    r["missing"].append(getattr(e, "name", None) or "ipykernel")
m = %s
if m and m not in r["missing"]:
    try:
        import importlib.util
        if importlib.util.find_spec(m) is None:
            r["missing"].append(m)
    except ImportError as e:
        r["missing"].append(getattr(e, "name", None) or m)
print("kq-probe: " + json.dumps(r))`

// ProbePython asks the interpreter of kernel command k.Command, in k's
// workdir and with k's env (as the kernel would run), for its version,
// ipykernel's, and whether the module the command runs with -m imports.
// A command whose interpreter kq cannot tell is ErrNoInterpreter.
func ProbePython(ctx context.Context, r Runner, k KernelSpec) (PythonInfo, error) {
	prefix, module, ok := SplitPython(k.Command)
	if !ok {
		return PythonInfo{}, ErrNoInterpreter
	}
	lit, _ := json.Marshal(module) // a module name is ASCII: a Python literal too
	info := PythonInfo{Command: prefix + " -c " + shQuote(fmt.Sprintf(probeCode, lit)), Module: module}
	probe := KernelSpec{Command: info.Command, Workdir: k.Workdir, Env: k.Env}
	p, err := run(ctx, r, vars{start: probe.StartScript()}, "op_probe")
	if p != nil {
		info.Log = p.log
	}
	if err == nil && p.final != tagDone {
		err = errors.New("op_probe: the answer ended early")
	}
	if err != nil {
		if n := len(info.Log); n > 0 {
			err = fmt.Errorf("%w: %s", err, info.Log[n-1])
		}
		return info, fmt.Errorf("run %s: %w", prefix, err)
	}
	if err := json.Unmarshal(p.json, &info); err != nil {
		return info, fmt.Errorf("run %s: unexpected answer: %w", prefix, err)
	}
	return info, nil
}

var (
	wordRe   = regexp.MustCompile(`\S+`)
	moduleRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
)

// SplitPython finds the Python in a kernel command: prefix is the command
// as written up to the first word whose program name starts with "python"
// and that interpreter's own options (-S, -I, -X dev, ...: they change
// what imports), so wrappers and activations before it (env, conda run,
// srun, ". venv/bin/activate &&") stay; module is what it runs with -m.
// ok is false when no word names a Python.
func SplitPython(command string) (prefix, module string, ok bool) {
	locs := wordRe.FindAllStringIndex(command, -1)
	words := make([]string, len(locs))
	for i, l := range locs {
		words[i] = command[l[0]:l[1]]
	}
	for i, w := range words {
		if !strings.HasPrefix(path.Base(w), "python") || strings.ContainsAny(w, `'"=$`+"`") {
			continue
		}
		last, module := pythonOptions(words, i)
		if !moduleRe.MatchString(module) {
			module = ""
		}
		return command[:locs[last][1]], module, true
	}
	return "", "", false
}

// pythonOptions reads the options after the interpreter at words[i]: the
// index of the last option word, and the -m module ("" when there is
// none: a script, -c, or nothing).
func pythonOptions(words []string, i int) (last int, module string) {
	last = i
	for j := i + 1; j < len(words); j++ {
		a := words[j]
		switch {
		case a == "-m" && j+1 < len(words):
			return last, words[j+1]
		case strings.HasPrefix(a, "-m") && len(a) > 2:
			return last, a[2:]
		case (a == "-X" || a == "-W") && j+1 < len(words):
			j++
			last = j
		case strings.HasPrefix(a, "-") && a != "-" && !strings.HasPrefix(a, "-c") && a != "--":
			last = j
		default:
			return last, ""
		}
	}
	return last, ""
}

// RuntimeDirInfo is what op_rtcheck found.
type RuntimeDirInfo struct {
	// Path is the runtime dir (the server's answer when none was given).
	Path string
	// Exists: it is there, the user's, writable by nobody else, and takes
	// new files. Otherwise kq creates it in CreateIn, which takes them.
	Exists   bool
	CreateIn string
}

// CheckRuntimeDir checks runtime dir rt ("" asks the server) as op_start
// will use it, leaving nothing behind. A dir kq cannot use is an *Error
// saying why.
func CheckRuntimeDir(ctx context.Context, r Runner, rt string) (RuntimeDirInfo, error) {
	p, err := run(ctx, r, vars{rt: rt}, "op_rtcheck")
	info := RuntimeDirInfo{}
	if p != nil {
		info.Path = p.file
	}
	if err != nil {
		return info, err
	}
	state, parent, _ := strings.Cut(p.dir, " ")
	switch {
	case p.final != tagDone:
		return info, errors.New("op_rtcheck: the answer ended early")
	case state == "exists":
		info.Exists = true
	case state == "missing" && parent != "":
		info.CreateIn = parent
	default:
		return info, fmt.Errorf("op_rtcheck: unexpected answer %q", p.dir)
	}
	return info, nil
}
