package profiles

import (
	"path/filepath"
	"strings"
)

// Frontend shortcuts: a frontend setting that is one of these words alone
// stands for its argv. Both own their kernel (KernelPlaceholder): the
// frontend's own kernel manager starts kq kernel, so its interrupt and
// restart reach the remote kernel.
var frontendShortcuts = map[string][]string{
	"qtconsole": DefaultFrontend,
	"console":   {"jupyter", "console", "--kernel", KernelPlaceholder},
}

// FrontendShortcuts lists the shortcut words, for help texts.
func FrontendShortcuts() []string { return []string{"qtconsole", "console"} }

// ExpandFrontend turns a frontend setting into its argv: a shortcut word
// alone ("qtconsole", "console") becomes the command it stands for;
// anything else is an argv already and is returned as it is.
func ExpandFrontend(words []string) []string {
	if len(words) == 1 {
		if argv, ok := frontendShortcuts[words[0]]; ok {
			return append([]string(nil), argv...)
		}
	}
	return words
}

// Package names what installs a frontend's program: its Debian package and
// its pip package ("" when there is none).
type Package struct {
	// Debian is the Debian/Ubuntu package (apt install ...).
	Debian string
	// Pip is the PyPI package (pip install ...).
	Pip string
}

// frontendPackages is the one table of the programs kq's frontends run
// and what installs them; the session's check and kq doctor both read it.
// A jupyter subcommand X is the program jupyter-X.
var frontendPackages = map[string]Package{
	"jupyter":           {Debian: "jupyter-core", Pip: "jupyter-core"},
	"jupyter-qtconsole": {Debian: "jupyter-qtconsole", Pip: "qtconsole"},
	"jupyter-console":   {Debian: "jupyter-console", Pip: "jupyter-console"},
	"jupyter-notebook":  {Debian: "jupyter-notebook", Pip: "notebook"},
	"jupyter-lab":       {Pip: "jupyterlab"},
	"jupyter-nbclassic": {Pip: "nbclassic"},
	"ipython":           {Debian: "ipython3", Pip: "ipython"},
	"ipython3":          {Debian: "ipython3", Pip: "ipython"},
}

// PackageFor says what installs program (a name or a path; its base name
// counts), and whether kq knows.
func PackageFor(program string) (Package, bool) {
	p, ok := frontendPackages[filepath.Base(program)]
	return p, ok
}

// InstallHint is the hint for a missing frontend program: the packages
// that install it, or "" when kq does not know them.
func InstallHint(program string) string {
	p, ok := PackageFor(program)
	if !ok {
		return ""
	}
	var ways []string
	if p.Debian != "" {
		ways = append(ways, "apt install "+p.Debian)
	}
	if p.Pip != "" {
		ways = append(ways, "pip install "+p.Pip)
	}
	return "install it: " + strings.Join(ways, ", or ")
}

// JupyterSubcommand is the program that "jupyter SUB ..." runs (jupyter
// finds its subcommands as jupyter-SUB), or "" when argv is not a jupyter
// subcommand.
func JupyterSubcommand(argv []string) string {
	if len(argv) < 2 || strings.TrimSuffix(filepath.Base(argv[0]), ".exe") != "jupyter" || strings.HasPrefix(argv[1], "-") {
		return ""
	}
	return "jupyter-" + argv[1]
}
