package remote

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// The kernelspec ops print no tags of their own: a JSON block, KQ-DONE,
// or a KQ-ERROR line (see protocol.go).

// RemoteSpec is one of the server's Jupyter kernelspecs, as `jupyter
// kernelspec list --json` shows it.
type RemoteSpec struct {
	// Name is the spec's name ("python3").
	Name string
	// ResourceDir is its directory on the server (where its logos are).
	ResourceDir string
	// Argv, DisplayName and Language are from its kernel.json.
	Argv        []string
	DisplayName string
	Language    string
}

// KernelSpecs lists the server's kernelspecs. python, when set, is the
// interpreter of the profile's kernel command: its Jupyter is asked first,
// since that is the environment the kernel runs in.
func KernelSpecs(ctx context.Context, r Runner, python string) ([]RemoteSpec, error) {
	p, err := run(ctx, r, vars{path: python}, "op_kernelspecs")
	if err != nil {
		return nil, fmt.Errorf("list the server's kernelspecs: %w", err)
	}
	var list struct {
		Kernelspecs map[string]struct {
			ResourceDir string `json:"resource_dir"`
			Spec        struct {
				Argv        []string `json:"argv"`
				DisplayName string   `json:"display_name"`
				Language    string   `json:"language"`
			} `json:"spec"`
		} `json:"kernelspecs"`
	}
	if err := json.Unmarshal(p.json, &list); err != nil {
		return nil, fmt.Errorf("list the server's kernelspecs: %w", err)
	}
	var out []RemoteSpec
	for name, k := range list.Kernelspecs {
		out = append(out, RemoteSpec{Name: name, ResourceDir: k.ResourceDir, Argv: k.Spec.Argv,
			DisplayName: k.Spec.DisplayName, Language: k.Spec.Language})
	}
	slices.SortFunc(out, func(a, b RemoteSpec) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Logos reads the logo files of the kernelspec in dir on the server, by
// file name; a spec without logos has none, which is no error.
func Logos(ctx context.Context, r Runner, dir string) (map[string][]byte, error) {
	p, err := run(ctx, r, vars{path: dir}, "op_logos")
	if err != nil {
		return nil, fmt.Errorf("read the kernelspec's logos: %w", err)
	}
	if p.final != tagDone {
		return nil, errors.New("read the kernelspec's logos: the answer ended early")
	}
	var enc map[string]string
	if err := json.Unmarshal(p.json, &enc); err != nil {
		return nil, fmt.Errorf("read the kernelspec's logos: %w", err)
	}
	out := map[string][]byte{}
	for name, b64 := range enc {
		data, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("read logo %s: %w", name, err)
		}
		out[name] = data
	}
	return out, nil
}

// MatchSpec picks the server's spec for the profile's kernel command: one
// whose argv (without "-f {connection_file}") is the command, comparing
// programs by base name; else "python3", Jupyter's default; else the only
// spec there is.
func MatchSpec(specs []RemoteSpec, kernelCommand string) (RemoteSpec, bool) {
	words := strings.Fields(kernelCommand)
	for _, s := range specs {
		if sameCommand(specArgs(s.Argv), words) {
			return s, true
		}
	}
	for _, s := range specs {
		if s.Name == "python3" {
			return s, true
		}
	}
	if len(specs) == 1 {
		return specs[0], true
	}
	return RemoteSpec{}, false
}

// specArgs is a spec's argv without its "-f {connection_file}".
func specArgs(argv []string) []string {
	var out []string
	for i := 0; i < len(argv); i++ {
		if (argv[i] == "-f" || argv[i] == "--f") && i+1 < len(argv) && argv[i+1] == "{connection_file}" {
			i++
			continue
		}
		if argv[i] == "--f={connection_file}" || argv[i] == "-f={connection_file}" {
			continue
		}
		out = append(out, argv[i])
	}
	return out
}

func sameCommand(a, b []string) bool {
	if len(a) == 0 || len(a) != len(b) || path.Base(a[0]) != path.Base(b[0]) {
		return false
	}
	return slices.Equal(a[1:], b[1:])
}

// Interpreter is the program of a kernel command when it is a Python
// ("python3 -m ipykernel_launcher" → "python3"), else "": its Jupyter
// knows the kernel's spec best.
func Interpreter(kernelCommand string) string {
	words := strings.Fields(kernelCommand)
	if len(words) == 0 || !strings.HasPrefix(path.Base(words[0]), "python") {
		return ""
	}
	return words[0]
}
