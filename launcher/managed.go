package launcher

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/kq-dev/kq/profiles"
)

// runManaged runs a frontend that owns its kernel (its argv names
// profiles.KernelPlaceholder): kq writes a transient kernelspec whose argv
// runs kq kernel for the profile, in a private dir put first on the
// frontend's JUPYTER_PATH, and runs the frontend with it. The frontend's
// kernel manager then starts, interrupts (Ctrl+C in qtconsole), restarts
// and stops the remote kernel itself; kq only waits for the frontend and
// removes the kernelspec.
func runManaged(ctx context.Context, o Options) (Result, error) {
	name := "kq-" + strings.ToLower(profiles.SafeName(o.Profile.Name)) + "-" + uuid.NewString()[:8]
	dir, err := writeTransientSpec(o, name)
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	s := newSession(o)
	s.managedDir = dir
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	front := s.watchSignals(cancel)
	defer front.close()
	argv := o.Profile.ManagedFrontendArgv(name)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	cmd.Env = append(os.Environ(), "JUPYTER_PATH="+joinPath(dir, os.Getenv("JUPYTER_PATH")))
	s.log.step("the frontend owns the kernel: %s (kernelspec %s in %s)", strings.Join(argv, " "), name, dir)
	res, err := s.runProcess(ctx, cmd, front)
	s.awaitManagedKernel()
	return res, err
}

// managedGrace bounds the wait for the frontend's kq kernel to finish its
// teardown once the frontend has gone.
const managedGrace = 10 * time.Second

// awaitManagedKernel waits until the frontend's kq kernel has ended: a
// frontend may quit without waiting for its kernel (jupyter console does),
// and the session's end should mean that nothing is left on the server.
func (s *session) awaitManagedKernel() {
	deadline := time.Now().Add(managedGrace)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(filepath.Join(s.managedDir, managedPIDFile))
		if err != nil {
			return // kq kernel removed it: done
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err != nil || !pidAlive(pid) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.warn("the frontend's kernel (kq kernel) is still running %s after the frontend quit", managedGrace)
}

// writeTransientSpec writes DIR/kernels/NAME/kernel.json in a new private
// dir; the caller removes the dir.
func writeTransientSpec(o Options, name string) (string, error) {
	if len(o.SelfArgv) == 0 {
		return "", withKind(ErrUsage, "", fmt.Errorf("frontend %q needs a kernelspec, but kq does not know how to run itself", o.Profile.Frontend[0]))
	}
	removeStaleSpecs()
	dir, err := os.MkdirTemp("", transientPrefix)
	if err != nil {
		return "", fmt.Errorf("transient kernelspec: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, sessionPIDFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("transient kernelspec: %w", err)
	}
	spec := map[string]any{
		"argv":           append(append([]string(nil), o.SelfArgv...), "-f", "{connection_file}"),
		"display_name":   o.Profile.Name + " (remote)",
		"language":       "python",
		"interrupt_mode": "signal",
		"metadata":       map[string]any{"kq": map[string]any{"profile": o.Profile.Name, "transient": true}},
		"env":            map[string]string{ManagedDirEnv: dir},
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err == nil {
		err = os.MkdirAll(filepath.Join(dir, "kernels", name), 0o700)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "kernels", name, "kernel.json"), data, 0o600)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("transient kernelspec: %w", err)
	}
	return dir, nil
}

func joinPath(first, rest string) string {
	if rest == "" {
		return first
	}
	return first + string(os.PathListSeparator) + rest
}

// ManagedDirEnv names, in the environment of kq kernel, the transient
// kernelspec's dir of the kq session that started its frontend: kq kernel
// writes its pid there, so that a Ctrl-C at the session's terminal reaches
// it even when the frontend fails to pass it on (the manager starts its
// kernels in a session of their own, away from the terminal's signals).
const ManagedDirEnv = "KQ_MANAGED_DIR"

// managedPIDFile is where kq kernel writes its pid in the managed dir.
const managedPIDFile = "kq-kernel.pid"

// interruptManaged sends SIGINT to the kq kernel of a managed frontend.
func (s *session) interruptManaged() {
	data, err := os.ReadFile(filepath.Join(s.managedDir, managedPIDFile))
	if err != nil {
		return // not started yet, or between a restart's two kernels
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
		_ = signalInterrupt(pid)
	}
}

// announceToSession writes kq kernel's pid into the managed dir, when a kq
// session started its frontend; the returned func removes it.
func announceToSession(dir string) func() error {
	if dir == "" {
		return func() error { return nil }
	}
	path := filepath.Join(dir, managedPIDFile)
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return func() error { return nil }
	}
	return func() error { return ignoreNotExist(os.Remove(path)) }
}

// transientPrefix names the temporary dirs of transient kernelspecs;
// sessionPIDFile in each holds the pid of the kq session that made it.
const (
	transientPrefix = "kq-kernelspec-"
	sessionPIDFile  = "kq-session.pid"
)

// removeStaleSpecs removes the transient kernelspec dirs of kq sessions
// that are gone (killed, so their own cleanup never ran). A dir without a
// readable pid file, or of a live session, is left alone.
func removeStaleSpecs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), transientPrefix+"*"))
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(d, sessionPIDFile))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 && !pidAlive(pid) {
			os.RemoveAll(d)
		}
	}
}
