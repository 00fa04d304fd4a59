package cmd

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets testscript run the test binary as the kq command.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"kq": func() { os.Exit(Main(os.Args[1:])) },
	})
}

// TestScripts runs the CLI behaviour scripts in testdata/script: flags,
// config errors, exit codes and the one-line error and hint format.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			// Nothing of the developer's own setup may leak in.
			env.Setenv("XDG_CONFIG_HOME", env.WorkDir+"/xdg")
			env.Setenv("HOME", env.WorkDir+"/home")
			env.Setenv("SSH_AUTH_SOCK", "")
			env.Setenv("JUPYTER_RUNTIME_DIR", env.WorkDir+"/runtime")
			// testscript puts the kq command's dir first on PATH; a
			// script that sets PATH to its own dirs keeps kq with it.
			env.Setenv("KQBIN", strings.SplitN(env.Getenv("PATH"), string(os.PathListSeparator), 2)[0])
			return nil
		},
		Condition: scriptCondition,
	})
}

// scriptCondition answers the scripts' own [conditions]: bashcompletion
// is whether the bash-completion package (which cobra's bash script
// needs) is installed.
func scriptCondition(cond string) (bool, error) {
	switch cond {
	case "bashcompletion":
		_, err := os.Stat(bashCompletion)
		return err == nil, nil
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}

// bashCompletion is where Debian's bash-completion package keeps its
// functions.
const bashCompletion = "/usr/share/bash-completion/bash_completion"
