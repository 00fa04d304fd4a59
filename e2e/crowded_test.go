package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// foreignKernels is how many connection files of kernels kq did not start
// TestCrowdedRuntimeDir puts beside kq's: enough that kq ls's output (about
// 15 lines per file) is several times the 256 lines a remote op's reader
// once kept.
const foreignKernels = 60

// TestCrowdedRuntimeDir: a runtime dir with 60 connection files kq did not
// write (stale ones, as a busy server collects: their ports are 1-5 on the
// loopback, where nothing listens) beside one kq kernel. kq ls lists all 61,
// and kq attach and kq stop find the kq kernel by a unique prefix of its id;
// the foreign files are left alone.
func TestCrowdedRuntimeDir(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	foreign := e.crowdRuntimeDir(t)

	r, code := e.runToEnd([]string{"run", "--detach", "p"})
	if code != 0 {
		t.Fatalf("run --detach: exit %d\n%s", code, r.stderr)
	}
	id := kqID(t, e.remoteRT)
	prefix := uniquePrefix(id, foreign)
	kq := e.checkCrowdedListing(t, id, foreign)

	a, code := e.runToEnd([]string{"attach", "p", prefix}, "KQ_TEST_CODE=print('attached')")
	if code != 0 {
		t.Fatalf("attach %s: exit %d\n%s", prefix, code, a.stderr)
	}
	if out := strings.TrimSpace(a.report(t).Out); out != "attached" {
		t.Fatalf("attach %s: the kernel says %q\n%s", prefix, out, a.stderr)
	}

	s, code := e.runToEnd([]string{"stop", "p", prefix})
	if code != 0 || !strings.Contains(s.stderr.String(), "stopped kernel "+id) {
		t.Fatalf("stop %s: exit %d\n%s", prefix, code, s.stderr)
	}
	sshdtest.WaitGone(t, kq.PID, 10*time.Second)
	waitNoFiles(t, e.remoteRT, 10*time.Second)
	for _, path := range foreign {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("a foreign connection file was touched: %v", err)
		}
		os.Remove(path)
	}
	e.assertClean(nil, nil)
}

// crowdRuntimeDir fills the remote runtime dir with foreignKernels stale
// connection files and returns them by kernel id. Half are named as Jupyter
// servers name them (a uuid), half as old IPython did (a pid), so kq's id
// parsing meets both. They are removed when the test ends, whatever kq did.
func (e *env) crowdRuntimeDir(t *testing.T) map[string]string {
	t.Helper()
	must(t, os.MkdirAll(e.remoteRT, 0o700))
	foreign := map[string]string{} // id → path
	for i := range foreignKernels {
		id := fmt.Sprintf("%d", 40000+i)
		if i%2 == 0 {
			id = randomUUID(t)
		}
		path := filepath.Join(e.remoteRT, "kernel-"+id+".json")
		writeForeignConnFile(t, path)
		foreign[id] = path
	}
	t.Cleanup(func() {
		for _, p := range foreign {
			os.Remove(p)
		}
	})
	return foreign
}

// checkCrowdedListing holds kq ls to the crowded dir: every kernel listed,
// the kq one alive and kept, each foreign one dead, not kq's and at its own
// path. It returns the kq kernel's entry, whose PID the stop must end.
func (e *env) checkCrowdedListing(t *testing.T, id string, foreign map[string]string) lsEntry {
	t.Helper()
	start := time.Now()
	entries := e.ls(t)
	t.Logf("kq ls with %d foreign kernels took %s", foreignKernels, time.Since(start).Round(time.Millisecond))
	if len(entries) != foreignKernels+1 {
		t.Errorf("kq ls lists %d kernels, want %d", len(entries), foreignKernels+1)
	}
	kq, ok := entries[id]
	if !ok || !kq.KQ || !kq.Alive || !kq.Kept || kq.PID == 0 {
		t.Fatalf("kq kernel %s in ls: %+v (present %v)", id, kq, ok)
	}
	for fid, path := range foreign {
		if en, ok := entries[fid]; !ok || en.KQ || en.Alive || en.File != path {
			t.Errorf("foreign kernel %s in ls: %+v (present %v)", fid, en, ok)
		}
	}
	return kq
}

// writeForeignConnFile writes a connection file as ipykernel writes one
// (indented JSON), for a kernel that is not running.
func writeForeignConnFile(t *testing.T, path string) {
	t.Helper()
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	data, err := json.MarshalIndent(map[string]any{
		"shell_port":       1,
		"iopub_port":       2,
		"stdin_port":       3,
		"control_port":     4,
		"hb_port":          5,
		"ip":               "127.0.0.1",
		"key":              hex.EncodeToString(key),
		"transport":        "tcp",
		"signature_scheme": "hmac-sha256",
		"kernel_name":      "",
	}, "", "  ")
	must(t, err)
	must(t, os.WriteFile(path, data, 0o600))
}

func randomUUID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	_, err := rand.Read(b)
	must(t, err)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// uniquePrefix is the shortest prefix of id, at least 8 characters, that
// no other id starts with.
func uniquePrefix(id string, others map[string]string) string {
	for n := 8; n < len(id); n++ {
		clash := false
		for o := range others {
			if strings.HasPrefix(o, id[:n]) {
				clash = true
				break
			}
		}
		if !clash {
			return id[:n]
		}
	}
	return id
}
