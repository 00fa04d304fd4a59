// Package kernelspec is the file side of "kq kernelspec": the kernel.json
// that makes a kq profile appear in Jupyter's kernel pickers (JupyterLab,
// Notebook, VS Code, nbconvert), the directories Jupyter searches for
// them, in Jupyter's own order, and the install, list and remove of spec
// directories. It does no network and no command-line work.
package kernelspec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Spec is a kernel.json. Unknown keys of a spec kq did not write are not
// kept: kq only writes its own specs.
type Spec struct {
	// Argv is the command Jupyter runs, with "{connection_file}" in it.
	Argv []string `json:"argv"`
	// DisplayName is what the kernel pickers show.
	DisplayName string `json:"display_name"`
	// Language is the kernel's language ("python"); frontends use it for
	// syntax and file extensions.
	Language string `json:"language"`
	// InterruptMode is "signal": Jupyter sends SIGINT to kq, which turns
	// it into an interrupt of the remote kernel.
	InterruptMode string `json:"interrupt_mode,omitempty"`
	// Env is extra environment for the kernel process; kq never writes it
	// (nothing secret goes in a kernelspec).
	Env map[string]string `json:"env,omitempty"`
	// Metadata carries kq's own marker, {"kq": {"profile", "version"}}.
	Metadata map[string]json.RawMessage `json:"metadata,omitempty"`
}

// KQMeta is the "kq" entry of a spec's metadata: what marks a spec as
// kq's.
type KQMeta struct {
	// Profile is the profile the spec launches.
	Profile string `json:"profile"`
	// Version is the kq version that wrote the spec.
	Version string `json:"version"`
}

// Logo file names Jupyter looks for in a spec's directory.
const (
	Logo32 = "logo-32x32.png"
	Logo64 = "logo-64x64.png"
)

// Logos are the logo files a spec may carry, by file name.
var Logos = []string{Logo32, Logo64}

// ErrBadName: a kernelspec name Jupyter would not accept.
var ErrBadName = errors.New("invalid kernelspec name")

// namePattern is jupyter_client's NAME_PAT, as kq writes names (lowercase).
var namePattern = regexp.MustCompile(`^[a-z0-9._-]+$`)

// CheckName refuses a name Jupyter would skip or kq could not find again.
func CheckName(name string) error {
	if !namePattern.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("%w %q: use only a-z, 0-9, '.', '_' and '-'", ErrBadName, name)
	}
	return nil
}

// DefaultName is the spec name for a profile: lowercased, with every
// character Jupyter does not accept in a name turned into "-".
func DefaultName(profile string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(profile) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	n := b.String()
	if strings.Trim(n, ".") == "" { // "", ".", "..": not a directory name
		n = "kq" + strings.ReplaceAll(n, ".", "-")
	}
	return n
}

// KQ returns the spec's kq metadata, or nil when the spec is not kq's.
// A spec counts as kq's when it has a "kq" metadata entry, or when it runs
// "kq kernel" (argv[1] "kernel" after a program named kq), so that a
// hand-written one is recognised too.
func (s *Spec) KQ() *KQMeta {
	if raw, ok := s.Metadata["kq"]; ok {
		var m KQMeta
		if json.Unmarshal(raw, &m) == nil {
			return &m
		}
		return &KQMeta{}
	}
	if i := kernelArg(s.Argv); i > 0 && isKQProgram(s.Argv[0]) {
		return &KQMeta{Profile: argAfter(s.Argv, i)}
	}
	return nil
}

// kernelArg is the index of the "kernel" subcommand in a kq argv: argv[1],
// or later when global flags (--config FILE, -F FILE) come first.
func kernelArg(argv []string) int {
	for i := 1; i < len(argv); i++ {
		switch argv[i] {
		case "kernel":
			return i
		case "--config", "-F", "--ssh-config":
			i++
		default:
			if !strings.HasPrefix(argv[i], "-") {
				return -1
			}
		}
	}
	return -1
}

func argAfter(argv []string, i int) string {
	if i+1 < len(argv) {
		return argv[i+1]
	}
	return ""
}

func isKQProgram(p string) bool {
	base := strings.TrimSuffix(filepath.Base(p), ".exe")
	return base == "kq" || strings.HasPrefix(base, "kq-") || strings.HasPrefix(base, "kq.")
}

// ReadSpec reads dir/kernel.json.
func ReadSpec(dir string) (*Spec, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	if err != nil {
		return nil, err
	}
	var s Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, "kernel.json"), err)
	}
	return &s, nil
}
