//go:build linux

package launcher_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher"
	"github.com/kq-dev/kq/profiles"
)

// TestRunFrontendMissing: a session whose frontend is the qtconsole
// shortcut, where jupyter is installed but jupyter-qtconsole is not, fails
// before it connects anywhere: a usage error naming jupyter-qtconsole,
// with a hint naming its Debian and pip packages.
func TestRunFrontendMissing(t *testing.T) {
	e := newRunEnv(t)
	bin := filepath.Join(e.dir, "bin")
	runMust(t, os.Mkdir(bin, 0o755))
	runMust(t, os.WriteFile(filepath.Join(bin, "jupyter"), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	t.Setenv("PATH", bin)
	p := e.profile(frontendSpec{})
	p.Frontend = profiles.ExpandFrontend([]string{"qtconsole"})
	s := e.start(p)
	res, err := s.wait(30 * time.Second)
	if !errors.Is(err, launcher.ErrUsage) || res.FrontendRan {
		t.Fatalf("Run: %+v, %v; want ErrUsage before any frontend", res, err)
	}
	if !strings.Contains(err.Error(), "jupyter-qtconsole") {
		t.Errorf("error %q does not name jupyter-qtconsole", err)
	}
	var h interface{ Hint() string }
	if !errors.As(err, &h) || !strings.Contains(h.Hint(), "apt install jupyter-qtconsole") ||
		!strings.Contains(h.Hint(), "pip install qtconsole") {
		t.Errorf("hint does not name the packages: %v", err)
	}
	if n := e.srv.Accepted(); n != 0 {
		t.Errorf("the server accepted %d connections; nothing should have connected", n)
	}
	e.assertClean(nil, nil)
}
