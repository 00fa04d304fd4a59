package wire

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher/connfile"
)

// kernelPython is the interpreter that has ipykernel on the machines kq is
// developed on; "python3" on PATH may be a different one without Jupyter.
const kernelPython = "/usr/bin/python3"

// kernel is a real ipykernel started for a test.
type kernel struct {
	info   *connfile.Info
	cmd    *exec.Cmd
	exited chan error // receives cmd.Wait's result once
	log    string     // path of the kernel's stdout+stderr
}

func (k *kernel) endpoint(t *testing.T, name string) string {
	t.Helper()
	ep, err := k.info.Endpoint(name)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func (k *kernel) key() []byte { return []byte(k.info.Key) }

// startKernel runs `python3 -m ipykernel_launcher -f DIR/k.json`, waits
// (bounded) until the kernel has written a complete, valid connection file,
// and kills the kernel by PID when the test ends.
func startKernel(t *testing.T) *kernel {
	t.Helper()
	if out, err := exec.Command(kernelPython, "-c", "import ipykernel").CombinedOutput(); err != nil {
		t.Skipf("%s cannot import ipykernel: %v: %s", kernelPython, err, out)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "k.json")
	logPath := filepath.Join(dir, "kernel.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()

	cmd := kernelCommand(dir, file, logFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	k := &kernel{cmd: cmd, exited: make(chan error, 1), log: logPath}
	go func() { k.exited <- cmd.Wait() }()
	t.Cleanup(func() { k.kill(t) })
	k.awaitConnFile(t, file)
	return k
}

// kernelCommand is the ipykernel command line, with every Jupyter and
// IPython directory inside dir so the test neither reads the developer's
// configuration nor leaves files in their home.
func kernelCommand(dir, file string, logFile *os.File) *exec.Cmd {
	cmd := exec.Command(kernelPython, "-m", "ipykernel_launcher", "-f", file)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"JUPYTER_RUNTIME_DIR="+filepath.Join(dir, "runtime"),
		"JUPYTER_DATA_DIR="+filepath.Join(dir, "data"),
		"JUPYTER_CONFIG_DIR="+filepath.Join(dir, "config"),
		"IPYTHONDIR="+filepath.Join(dir, "ipython"),
		"PYDEVD_DISABLE_FILE_VALIDATION=1",
	)
	// An *os.File (not a buffer) so exec starts no copying goroutine that
	// the leak checks would see.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	return cmd
}

// kill ends the kernel by PID unless it has already exited (Shutdown
// worked), and fails the test if even SIGKILL does not end it.
func (k *kernel) kill(t *testing.T) {
	select {
	case <-k.exited:
		return // already gone (Shutdown worked)
	default:
	}
	_ = k.cmd.Process.Kill() // by PID
	select {
	case <-k.exited:
	case <-time.After(30 * time.Second):
		t.Errorf("kernel pid %d did not exit after SIGKILL", k.cmd.Process.Pid)
	}
}

// awaitConnFile sets k.info from the connection file once it parses. The
// kernel writes the file itself, possibly in more than one write, so a
// partial file is retried rather than reported; a kernel that exits first
// fails the test at once, with its log.
func (k *kernel) awaitConnFile(t *testing.T, file string) {
	t.Helper()
	var lastErr error
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < 1200 && time.Now().Before(deadline); i++ {
		data, err := os.ReadFile(file)
		if err == nil {
			k.info, lastErr = connfile.Parse(data)
			if lastErr == nil {
				return
			}
		} else {
			lastErr = err
		}
		select {
		case err := <-k.exited:
			k.exited <- err // keep it for Cleanup
			t.Fatalf("kernel exited before writing %s: %v\n%s", file, err, k.logText())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("no valid connection file from the kernel: %v\n%s", lastErr, k.logText())
}

func (k *kernel) logText() string {
	b, _ := os.ReadFile(k.log)
	return string(b)
}

// TestKernel talks to a real ipykernel: the subtests share one kernel and run
// in order, the last one shutting it down.
func TestKernel(t *testing.T) {
	k := startKernel(t)
	shell := k.endpoint(t, connfile.Shell)
	control := k.endpoint(t, connfile.Control)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	kept, err := Dial(ctx, control) // kept open across the others, as a session does
	cancel()
	if err != nil {
		t.Fatalf("Dial %s: %v", control, err)
	}
	t.Run("kernel_info", func(t *testing.T) { k.checkKernelInfo(t, shell) })
	t.Run("wrong key gets no reply", func(t *testing.T) { k.checkWrongKey(t, shell) })
	t.Run("execute", func(t *testing.T) { k.checkExecute(t, shell) })
	t.Run("silent execute", func(t *testing.T) { k.checkSilentExecute(t, shell) })
	t.Run("shutdown on a kept connection", func(t *testing.T) { k.checkShutdown(t, kept) })
}

// checkSilentExecute runs empty code with user_expressions, as a warm
// session's claim does: results and errors come back in the reply.
func (k *kernel) checkSilentExecute(t *testing.T, shell string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reply, err := Execute(ctx, shell, k.key(), "", map[string]any{"a": "6*7", "b": "1/0"})
	if err != nil {
		t.Fatalf("Execute: %v\n%s", err, k.logText())
	}
	ue, _ := reply.Content["user_expressions"].(map[string]any)
	a, _ := ue["a"].(map[string]any)
	b, _ := ue["b"].(map[string]any)
	data, _ := a["data"].(map[string]any)
	if a["status"] != "ok" || data["text/plain"] != "42" || b["status"] != "error" || b["ename"] != "ZeroDivisionError" {
		t.Errorf("user_expressions: %v", ue)
	}
}

// checkKernelInfo asks for kernel_info, the request kq's ready check sends,
// and expects a protocol 5 reply.
func (k *kernel) checkKernelInfo(t *testing.T, shell string) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reply, err := KernelInfo(ctx, shell, k.key())
	if err != nil {
		t.Fatalf("KernelInfo: %v\n%s", err, k.logText())
	}
	v, _ := reply.Content["protocol_version"].(string)
	if !strings.HasPrefix(v, "5.") {
		t.Errorf("protocol_version = %q", v)
	}
	if reply.Header.MsgType != "kernel_info_reply" || reply.Status() != "ok" {
		t.Errorf("reply header %+v status %q", reply.Header, reply.Status())
	}
	t.Logf("kernel: %v, protocol %s", reply.Content["implementation"], v)
}

// checkWrongKey proves a real kernel ignores a request signed with another
// key: the only answer is the deadline, and the error quotes neither key.
func (k *kernel) checkWrongKey(t *testing.T, shell string) {
	checkLeaks(t)
	wrong := []byte("0000000-wrong-key-not-the-kernels")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	reply, err := KernelInfo(ctx, shell, wrong)
	if err == nil {
		t.Fatalf("kernel answered a request signed with the wrong key: %+v", reply)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want the deadline", err)
	}
	for _, key := range [][]byte{wrong, k.key()} {
		if strings.Contains(err.Error(), string(key)) {
			t.Errorf("error contains a key: %v", err)
		}
	}
	t.Logf("error: %v", err)
}

// checkExecute runs code in the kernel through Request and reads the result
// back from user_expressions.
func (k *kernel) checkExecute(t *testing.T, shell string) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reply, err := Request(ctx, shell, k.key(), "execute_request", map[string]any{
		"code":             "x=41+1",
		"silent":           false,
		"store_history":    true,
		"user_expressions": map[string]any{"x": "x"},
		"allow_stdin":      false,
		"stop_on_error":    true,
	})
	if err != nil {
		t.Fatalf("execute_request: %v\n%s", err, k.logText())
	}
	if reply.Header.MsgType != "execute_reply" || reply.Status() != "ok" {
		t.Fatalf("reply %+v content %v", reply.Header, reply.Content)
	}
	// The expression proves the code really ran in the kernel.
	ue, _ := reply.Content["user_expressions"].(map[string]any)
	x, _ := ue["x"].(map[string]any)
	data, _ := x["data"].(map[string]any)
	if data["text/plain"] != "42" {
		t.Errorf("user_expressions = %v, want x = 42", ue)
	}
}

// checkShutdown sends shutdown_request on a control connection kept open
// since before the other requests, and expects the kernel process to exit
// by itself afterwards.
func (k *kernel) checkShutdown(t *testing.T, kept *Conn) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	defer kept.Close()
	if !kept.Alive() {
		t.Fatal("the kept connection is not alive before the shutdown")
	}
	if err := kept.Shutdown(ctx, k.key()); err != nil {
		t.Fatalf("Shutdown: %v\n%s", err, k.logText())
	}
	select {
	case err := <-k.exited:
		k.exited <- err
		t.Logf("kernel pid %d exited: %v", k.cmd.Process.Pid, err)
	case <-time.After(60 * time.Second):
		t.Fatalf("kernel pid %d still running 60s after shutdown_reply\n%s", k.cmd.Process.Pid, k.logText())
	}
	for deadline := time.Now().Add(10 * time.Second); kept.Alive(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the kept connection is still alive 10s after its kernel exited")
		}
	}
}
