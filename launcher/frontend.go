package launcher

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/kq-dev/kq/profiles"
)

// frontendInstalled: nothing remote starts unless the frontend can run.
func frontendInstalled(o Options) error {
	if o.Detach {
		return nil
	}
	_, err := findFrontend(o.Profile)
	return err
}

// chooseAnother is the second half of every missing-frontend hint.
const chooseAnother = "or choose another frontend with --frontend or the profile's frontend: key (qtconsole, console, or a command)"

// findFrontend finds the program the profile's frontend runs, and for
// "jupyter SUB" also jupyter-SUB, where jupyter looks for it: on PATH and
// beside the jupyter program itself (jupyter_core's _path_with_self). It
// returns the program that will do the work (jupyter-SUB, else argv[0]).
// A missing one is a usage error naming it, with the packages that
// install it (profiles.InstallHint).
func findFrontend(p profiles.Profile) (string, error) {
	argv := p.FrontendArgv("")
	prog, err := exec.LookPath(argv[0])
	if err != nil {
		return "", withKind(ErrUsage, missingHint(argv[0]),
			fmt.Errorf("frontend %q not found: %w", argv[0], errors.Unwrap(err)))
	}
	sub := profiles.JupyterSubcommand(argv)
	if sub == "" {
		return prog, nil
	}
	if found := findSubcommand(prog, sub); found != "" {
		return found, nil
	}
	return "", withKind(ErrUsage, missingHint(sub),
		fmt.Errorf("frontend %q not found: %s is there, but %s is not (looked on PATH and in %s)",
			strings.Join(argv[:2], " "), prog, sub, filepath.Dir(prog)))
}

// missingHint is the hint for a missing program.
func missingHint(program string) string {
	if h := profiles.InstallHint(program); h != "" {
		return h + "; " + chooseAnother
	}
	return "install it, " + chooseAnother
}

// findSubcommand looks for the program sub as jupyter (at path jupyter)
// would: its own dir (and, for a symlink, its target's) first, then PATH.
func findSubcommand(jupyter, sub string) string {
	dirs := []string{filepath.Dir(jupyter)}
	if real, err := filepath.EvalSymlinks(jupyter); err == nil {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, d := range dirs {
		for _, c := range []string{filepath.Join(d, sub), filepath.Join(d, sub+".exe")} {
			if isExecutable(c) {
				return c
			}
		}
	}
	if c, err := exec.LookPath(sub); err == nil {
		return c
	}
	return ""
}

// isExecutable: a regular file someone may execute (on Windows, which
// has no execute bits, any regular file).
func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && (runtime.GOOS == "windows" || st.Mode().Perm()&0o111 != 0)
}
