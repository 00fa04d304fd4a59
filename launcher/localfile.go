package launcher

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/kq-dev/kq/launcher/kernelspec"
)

// LocalRuntimeDir is where Jupyter clients on this machine look for
// connection files (what `jupyter --runtime-dir` prints), so that
// `jupyter console --existing NAME` finds kq's file by name.
func LocalRuntimeDir() (string, error) {
	if d := os.Getenv("JUPYTER_RUNTIME_DIR"); d != "" {
		return d, nil
	}
	data, err := jupyterDataDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(data, "runtime"), nil
}

// jupyterDataDir follows jupyter_core.paths.jupyter_data_dir; kernelspec
// owns the rule, since kq kernelspec install writes there too.
func jupyterDataDir() (string, error) { return kernelspec.DataDir() }

// maxLocalNames bounds the names tried for one local file: the short name,
// then NAME-2.json, NAME-3.json... while other live sessions hold them.
const maxLocalNames = 100

// writeLocalFile creates dir (0700) and, exclusively, the file (0600), so
// that the key is never readable by another user, not even for a moment,
// and checks both afterwards: a file system that ignores modes is refused.
// The first session on a kernel gets name, the one the README tells users
// to pass to --existing; a second session from this machine (kq attach
// while kq run holds the kernel) gets a numbered name next to it. A
// pre-existing dir that others can enter is worth a warning (the file
// itself stays private).
func writeLocalFile(dir, name string, data []byte) (path, warning string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("create runtime dir: %w", err)
	}
	if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o077 != 0 && runtime.GOOS != "windows" {
		warning = fmt.Sprintf("runtime dir %s is accessible by others (mode %04o); chmod 700 it", dir, st.Mode().Perm())
	}
	ext := filepath.Ext(name)
	for i := 1; i <= maxLocalNames; i++ {
		n := name
		if i > 1 {
			n = fmt.Sprintf("%s-%d%s", strings.TrimSuffix(name, ext), i, ext)
		}
		path, err = createPrivate(filepath.Join(dir, n), data)
		if !errors.Is(err, fs.ErrExist) {
			return path, warning, err
		}
	}
	return "", warning, err
}

func createPrivate(path string, data []byte) (string, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("create connection file: %w", err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("write connection file %s: %w", path, err)
	}
	if st, err := os.Stat(path); err != nil || (st.Mode().Perm() != 0o600 && runtime.GOOS != "windows") {
		os.Remove(path)
		return "", fmt.Errorf("connection file %s is not private (mode %v): %v", path, modeOf(st), err)
	}
	return path, nil
}

func modeOf(st os.FileInfo) string {
	if st == nil {
		return "unknown"
	}
	return fmt.Sprintf("%04o", st.Mode().Perm())
}
