package kernelspec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrNotKQ: a spec directory holds a spec kq did not write, and the
// caller did not force the operation.
var ErrNotKQ = errors.New("not a kq kernelspec")

// Install writes spec (and the logos given, by file name) as
// kernelsDir/name. Each file is written to a temporary file in the
// directory and renamed over its final name, so a frontend listing specs
// meanwhile reads the old spec or the new one, never half of either. A
// directory holding another tool's spec is refused unless force is set;
// logos of an earlier kq spec that this one does not have are removed.
func Install(kernelsDir, name string, spec *Spec, logos map[string][]byte, force bool) (string, error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	dir := filepath.Join(kernelsDir, name)
	if old, err := ReadSpec(dir); err == nil && old.KQ() == nil && !force {
		return "", fmt.Errorf("%s: %w (pass --force to replace it)", dir, ErrNotKQ)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create kernelspec dir: %w", err)
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode kernel.json: %w", err)
	}
	for _, logo := range Logos {
		if b, ok := logos[logo]; ok {
			err = writeAtomic(dir, logo, b)
		} else if err = os.Remove(filepath.Join(dir, logo)); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		if err != nil {
			return "", err
		}
	}
	// kernel.json last: once it is there, the spec is complete.
	if err := writeAtomic(dir, "kernel.json", append(data, '\n')); err != nil {
		return "", err
	}
	return dir, nil
}

// writeAtomic writes dir/name through a temporary file in dir and a
// rename, which is atomic within one directory.
func writeAtomic(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(dir, name), err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644) // CreateTemp makes it 0600; Jupyter of other users may read it
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(dir, name), err)
	}
	return nil
}
