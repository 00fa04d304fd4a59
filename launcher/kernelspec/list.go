package kernelspec

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Entry is one spec directory found in the search path.
type Entry struct {
	// Name is the spec's name (its directory's, lowercased, as Jupyter
	// keys it).
	Name string `json:"name"`
	// Dir is the spec's directory.
	Dir string `json:"dir"`
	// DisplayName and Argv are from its kernel.json.
	DisplayName string   `json:"display_name"`
	Argv        []string `json:"argv"`
	// KQ says the spec launches kq; Profile is the profile it names.
	KQ      bool   `json:"kq"`
	Profile string `json:"profile,omitempty"`
	// Shadowed says a spec of the same name earlier in the search path
	// wins: Jupyter never shows this one.
	Shadowed bool `json:"shadowed"`
	// MissingProgram says argv[0] does not exist (an absolute path) or is
	// not on PATH: Jupyter would fail to launch it.
	MissingProgram bool `json:"missing_program"`
	// Err is why kernel.json could not be read; such a spec is skipped by
	// Jupyter but still shadows later ones of its name.
	Err string `json:"error,omitempty"`
}

// List reads every spec directory in dirs, in order, as Jupyter's
// KernelSpecManager finds them: a subdirectory with a kernel.json, keyed
// by its lowercased name; directories with names Jupyter does not accept
// are skipped, as there.
func List(dirs []string) []Entry {
	var out []Entry
	seen := map[string]bool{}
	for _, d := range dirs {
		names, err := os.ReadDir(d)
		if err != nil {
			continue // missing or unreadable: Jupyter skips it too
		}
		for _, n := range names {
			name := strings.ToLower(n.Name())
			dir := filepath.Join(d, n.Name())
			if CheckName(name) != nil || !isFile(filepath.Join(dir, "kernel.json")) {
				continue
			}
			e := entryFor(name, dir)
			e.Shadowed = seen[name]
			seen[name] = true
			out = append(out, e)
		}
	}
	return out
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func entryFor(name, dir string) Entry {
	e := Entry{Name: name, Dir: dir}
	s, err := ReadSpec(dir)
	if err != nil {
		e.Err = err.Error()
		return e
	}
	e.DisplayName, e.Argv = s.DisplayName, s.Argv
	if m := s.KQ(); m != nil {
		e.KQ, e.Profile = true, m.Profile
	}
	e.MissingProgram = len(s.Argv) == 0 || !programExists(s.Argv[0])
	return e
}

func programExists(p string) bool {
	if filepath.IsAbs(p) {
		_, err := os.Stat(p)
		return err == nil
	}
	_, err := exec.LookPath(p)
	return err == nil
}

// ErrNotFound: no spec of that name in the search path.
var ErrNotFound = errors.New("no such kernelspec")

// NotFoundError names the spec and every directory searched for it.
type NotFoundError struct {
	Name string
	Dirs []string
}

// Error names where kq looked.
func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no kernelspec %q in %s", e.Name, strings.Join(e.Dirs, ", "))
}

// Unwrap makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Unwrap() error { return ErrNotFound }

// Find returns the spec of that name Jupyter uses: the first in the
// search path.
func Find(entries []Entry, dirs []string, name string) (Entry, error) {
	for _, e := range entries {
		if e.Name == strings.ToLower(name) && !e.Shadowed {
			return e, nil
		}
	}
	return Entry{}, &NotFoundError{Name: name, Dirs: dirs}
}

// Remove deletes the spec Jupyter uses under that name, refusing one kq
// did not write unless force. It returns what it removed and the spec of
// the same name that Jupyter will use now, if any.
func Remove(dirs []string, name string, force bool) (removed Entry, next *Entry, err error) {
	entries := List(dirs)
	e, err := Find(entries, dirs, name)
	if err != nil {
		return Entry{}, nil, err
	}
	if !e.KQ && !force {
		return e, nil, fmt.Errorf("%s: %w (pass --force to remove it anyway)", e.Dir, ErrNotKQ)
	}
	if err := os.RemoveAll(e.Dir); err != nil {
		return e, nil, fmt.Errorf("remove kernelspec %s: %w", e.Dir, err)
	}
	for _, o := range entries {
		if o.Name == e.Name && o.Dir != e.Dir {
			return e, &o, nil
		}
	}
	return e, nil, nil
}
