package launcher

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/kq-dev/kq/launcher/connfile"
)

// kqFile is a local connection file as kq writes it, owned by o, with
// ports starting at port.
func kqFile(t *testing.T, o owner, port int) []byte {
	t.Helper()
	info := &connfile.Info{Transport: "tcp", IP: "127.0.0.1", Key: "k", SignatureScheme: "hmac-sha256",
		ShellPort: port, IOPubPort: port + 1, StdinPort: port + 2, ControlPort: port + 3, HBPort: port + 4}
	data, err := info.Rewrite("127.0.0.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err = o.stamp(data)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestStamp: the owner is recorded as two plain members, replaces one
// already there, keeps every other member in order, and the result is
// still a valid connection file.
func TestStamp(t *testing.T) {
	orig, err := os.ReadFile(filepath.Join("connfile", "testdata", "valid", "unknown_fields.json"))
	if err != nil {
		t.Fatal(err)
	}
	once, err := owner{PID: 11, Host: "a"}.stamp(orig)
	if err != nil {
		t.Fatal(err)
	}
	twice, err := owner{PID: 22, Host: "b"}.stamp(once)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connfile.Parse(twice); err != nil {
		t.Fatalf("stamped file is not a valid connection file: %v\n%s", err, twice)
	}
	var got, want map[string]any
	if err := json.Unmarshal(twice, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(orig, &want); err != nil {
		t.Fatal(err)
	}
	want["kq_pid"], want["kq_host"] = float64(22), "b"
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stamped:\n%v\nwant:\n%v", got, want)
	}
	if n := strings.Count(string(twice), `"kq_pid"`); n != 1 {
		t.Errorf("kq_pid appears %d times:\n%s", n, twice)
	}
	if _, err := (owner{}).stamp([]byte(`[1]`)); err == nil {
		t.Error("a JSON array was stamped")
	}
}

// TestStale: only a file kq wrote on this machine, whose kq is gone or
// none of whose ports listens, is stale.
func TestStale(t *testing.T) {
	l := liveness{host: "here",
		pidAlive:  func(pid int) bool { return pid == 100 },
		portInUse: func(port int) bool { return port == 5002 },
	}
	for _, tc := range []struct {
		name  string
		data  []byte
		stale bool
	}{
		{"kq gone", kqFile(t, owner{PID: 200, Host: "here"}, 6000), true},
		{"kq alive, a port listening", kqFile(t, owner{PID: 100, Host: "here"}, 5000), false},
		{"kq pid reused, no port listening", kqFile(t, owner{PID: 100, Host: "here"}, 6000), true},
		{"another machine's kq", kqFile(t, owner{PID: 200, Host: "there"}, 6000), false},
		{"no owner (a kernel's own file)", []byte(`{"shell_port": 6000, "key": "k"}`), false},
		{"not JSON", []byte(`{"kq_pid": 200, "kq_ho`), false},
		{"empty (being written)", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := l.stale(tc.data); got != tc.stale {
				t.Errorf("stale = %v, want %v", got, tc.stale)
			}
		})
	}
}

// TestRemoveStale: a sweep removes exactly the stale kq files, never
// another tool's file, a live session's file, a directory or a symlink.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	l := liveness{host: "here", pidAlive: func(pid int) bool { return pid == 100 }, portInUse: func(int) bool { return true }}
	stale := kqFile(t, owner{PID: 200, Host: "here"}, 6000)
	files := map[string][]byte{
		"kernel-kq-p-00000001.json":   stale,
		"kernel-kq-p-00000001-2.json": stale,
		"kernel-kq-p-00000002.json":   kqFile(t, owner{PID: 100, Host: "here"}, 5000), // live
		"kernel-kq-p-00000003.json":   kqFile(t, owner{PID: 200, Host: "there"}, 6000),
		"kernel-1234.json":            stale, // not kq's name
		"kernel-kq-p-00000004.txt":    stale,
		"kernel-kq-0b5c-uuid.json":    []byte(`{"shell_port": 6000, "key": "k"}`),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "kernel-kq-dir.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if err := os.Symlink("kernel-1234.json", filepath.Join(dir, "kernel-kq-link.json")); err != nil {
			t.Fatal(err)
		}
	}
	removed := l.removeStale(dir)
	slices.Sort(removed)
	if want := []string{"kernel-kq-p-00000001-2.json", "kernel-kq-p-00000001.json"}; !slices.Equal(removed, want) {
		t.Errorf("removed %q, want %q", removed, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), "kernel-kq-p-00000001") || strings.HasPrefix(en.Name(), ".kq-stale") {
			t.Errorf("left: %s", en.Name())
		}
	}
	if want := len(files) - 2 + 1 + btoi(runtime.GOOS != "windows"); len(entries) != want {
		t.Errorf("%d entries left, want %d", len(entries), want)
	}
	if l.removeStale(filepath.Join(dir, "missing")) != nil {
		t.Error("a missing dir had stale files")
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRemoveIfSame: a file that changed after it was judged is put back.
func TestRemoveIfSame(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kernel-kq-p-1.json")
	if err := os.WriteFile(path, []byte("live"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := removeIfSame(path, []byte("stale")); err == nil {
		t.Error("a replaced file was removed")
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != "live" {
		t.Errorf("replaced file not put back: %q %v", data, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files in dir: %v", entries)
	}
	if err := removeIfSame(path, []byte("live")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("unchanged stale file not removed: %v", err)
	}
}

// TestSystemLiveness uses the real probes: a reaped child's pid is gone,
// this process is alive, and a bound port is in use.
func TestSystemLiveness(t *testing.T) {
	child := exec.Command(os.Args[0], "-test.run=^$")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	l := systemLiveness()
	if !pidAlive(os.Getpid()) || pidAlive(child.Process.Pid) {
		t.Fatalf("pidAlive: self %v, reaped child %v", pidAlive(os.Getpid()), pidAlive(child.Process.Pid))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	me := thisKQ()
	if l.stale(kqFile(t, me, port-4)) {
		t.Error("a file of this live process with its hb port listening is stale")
	}
	free := freePort(t)
	if !l.stale(kqFile(t, owner{PID: child.Process.Pid, Host: me.Host}, port)) {
		t.Error("a file of a gone process is not stale")
	}
	if !l.stale(kqFile(t, me, free)) {
		t.Error("a file none of whose ports listens is not stale")
	}
}

// freePort finds five consecutive ports nobody listens on, within bounds.
func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if p+4 < 65536 && !portInUse(p) && !portInUse(p+1) && !portInUse(p+2) && !portInUse(p+3) && !portInUse(p+4) {
			return p
		}
	}
	t.Fatal("no five free ports in a row")
	return 0
}
