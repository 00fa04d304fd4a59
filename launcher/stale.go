package launcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// owner is the kq process a local connection file belongs to. It is kept
// in the file itself, as the members "kq_pid" and "kq_host": Jupyter
// clients ignore members they do not know, and a file that records its own
// owner cannot be separated from that record (a sidecar file would be one
// more thing a killed kq leaves behind, and could be lost or mismatched).
type owner struct {
	PID  int    `json:"kq_pid"`
	Host string `json:"kq_host"`
}

// thisKQ is the owner of the files this process writes.
func thisKQ() owner {
	host, _ := os.Hostname()
	return owner{PID: os.Getpid(), Host: host}
}

// stamp returns the connection file data (a JSON object) with o recorded
// in it, replacing any owner already there: a file pasted into kq attach -
// may come from another kq session.
func (o owner) stamp(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("record kq's pid in connection file: not a JSON object")
	}
	var obj bytes.Buffer
	obj.WriteByte('{')
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("record kq's pid in connection file: %w", err)
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("record kq's pid in connection file: %w", err)
		}
		if name == "kq_pid" || name == "kq_host" {
			continue
		}
		nameJSON, _ := json.Marshal(name)
		obj.Write(nameJSON)
		obj.WriteByte(':')
		obj.Write(raw)
		obj.WriteByte(',')
	}
	own, _ := json.Marshal(o)
	obj.Write(own[1:])
	var out bytes.Buffer
	if err := json.Indent(&out, obj.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("record kq's pid in connection file: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// liveness is how a left-behind file's session is judged; tests replace
// the probes.
type liveness struct {
	host      string // this machine's name
	pidAlive  func(pid int) bool
	portInUse func(port int) bool
}

func systemLiveness() liveness {
	return liveness{host: thisKQ().Host, pidAlive: pidAlive, portInUse: portInUse}
}

// portInUse says whether something listens on 127.0.0.1:port. It tries to
// bind the port rather than connect to it: a connection would make a live
// kq open a channel to its kernel. Any failure to bind counts as in use.
func portInUse(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return true
	}
	l.Close()
	return false
}

// stale says whether data is the local connection file of a kq session
// that is gone: a file kq wrote on this machine (it records kq_pid and
// kq_host) whose kq process is gone, or none of whose ports is listening
// (the pid was reused). Anything else (another tool's file, a remote
// kernel's own file in the same dir, a file written on another machine
// sharing this home directory, a file being written) is not stale.
func (l liveness) stale(data []byte) bool {
	var f struct {
		PID   *int   `json:"kq_pid"`
		Host  string `json:"kq_host"`
		Shell int    `json:"shell_port"`
		IOPub int    `json:"iopub_port"`
		Stdin int    `json:"stdin_port"`
		Ctrl  int    `json:"control_port"`
		HB    int    `json:"hb_port"`
	}
	if json.Unmarshal(data, &f) != nil || f.PID == nil || f.Host != l.host {
		return false
	}
	if !l.pidAlive(*f.PID) {
		return true
	}
	for _, p := range []int{f.Shell, f.IOPub, f.Stdin, f.Ctrl, f.HB} {
		if p > 0 && p < 65536 && l.portInUse(p) {
			return false
		}
	}
	return true
}

// Bounds of one sweep: kq's files are a handful, a runtime dir may hold
// thousands of other tools' files, and a connection file is small.
const (
	maxStaleScan  = 256
	maxStaleBytes = 64 << 10
)

// removeStale removes the local connection files (kernel-kq-*.json) in
// dir that kq sessions now gone left behind (kq killed, machine crashed)
// and returns their names. It never removes another file.
func (l liveness) removeStale(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var removed []string
	scanned := 0
	for _, en := range entries {
		name := en.Name()
		if !strings.HasPrefix(name, "kernel-kq-") || !strings.HasSuffix(name, ".json") || !en.Type().IsRegular() {
			continue
		}
		if scanned++; scanned > maxStaleScan {
			break
		}
		path := filepath.Join(dir, name)
		data, ok := readSmall(path)
		if ok && l.stale(data) && removeIfSame(path, data) == nil {
			removed = append(removed, name)
		}
	}
	return removed
}

func readSmall(path string) ([]byte, bool) {
	st, err := os.Lstat(path)
	if err != nil || !st.Mode().IsRegular() || st.Size() > maxStaleBytes {
		return nil, false
	}
	data, err := os.ReadFile(path)
	return data, err == nil
}

// errReplaced says a file changed between being judged and being removed.
var errReplaced = errors.New("file was replaced meanwhile")

// removeIfSame removes path only if it still holds data. The file is moved
// aside first, so that one another kq wrote under the same name after data
// was read (it too found the stale file, removed it and took the name) is
// put back, not removed.
func removeIfSame(path string, data []byte) error {
	aside := filepath.Join(filepath.Dir(path), fmt.Sprintf(".kq-stale-%d-%s", os.Getpid(), filepath.Base(path)))
	if err := os.Rename(path, aside); err != nil {
		return err
	}
	now, err := os.ReadFile(aside)
	if err == nil && bytes.Equal(now, data) {
		return os.Remove(aside)
	}
	if err := os.Link(aside, path); err != nil {
		return errors.Join(errReplaced, os.Rename(aside, path))
	}
	return errors.Join(errReplaced, os.Remove(aside))
}
