package remote

import (
	"bytes"
	"errors"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// The protocol lines remote.sh prints. TestProtocolTags keeps this list
// and remote.sh in step.
const (
	tagFile        = "KQ-FILE "
	tagPID         = "KQ-PID "
	tagError       = "KQ-ERROR "
	tagLog         = "KQ-LOG "
	tagEntry       = "KQ-ENTRY "
	tagBegin       = "KQ-JSON-BEGIN"
	tagEnd         = "KQ-JSON-END"
	tagFailed      = "KQ-FAILED"
	tagGone        = "KQ-GONE"
	tagStopped     = "KQ-STOPPED"
	tagDetached    = "KQ-DETACHED"
	tagReleased    = "KQ-RELEASED"
	tagDone        = "KQ-DONE"
	tagInterrupted = "KQ-INTERRUPTED"
	tagListEnd     = "KQ-END"
	tagTick        = "KQ-TICK"
	tagDied        = "KQ-DIED"
	tagWarm        = "KQ-WARM"
	tagDir         = "KQ-DIR "
	tagSched       = "KQ-SCHED "
	tagExit        = "KQ-EXIT "
)

// Entry is one kernel connection file in a host's runtime dir, as kq ls
// shows it.
type Entry struct {
	// ID is what kq commands accept for it: a kq kernel's uuid, or the
	// file name without "kernel-" and ".json" for others.
	ID string `json:"id"`
	// File is the connection file's path on the host.
	File string `json:"file"`
	// AgeSeconds is the connection file's age.
	AgeSeconds int `json:"age_seconds"`
	// KQ says kq started it (and manages its lifetime).
	KQ bool `json:"kq"`
	// PID is a kq kernel's process id; 0 when unknown.
	PID int `json:"pid,omitempty"`
	// Alive is whether the kernel runs: its process for kq kernels; for
	// others the caller decides (remote.sh cannot reach their ports).
	Alive bool `json:"alive"`
	// Held is whether a kq session holds it now.
	Held bool `json:"held"`
	// Kept is whether it stays up without any kq session (--keep, --detach).
	Kept bool `json:"kept"`
	// Spare is whether it is a warm spare no session has taken yet.
	Spare bool `json:"spare"`
	// JSON is its connection file's content.
	JSON []byte `json:"-"`
	// Job is the kernel's batch job (a profile with scheduler:), as the
	// scheduler reports it; nil for a kernel that runs on the host.
	Job *JobEntry `json:"job,omitempty"`
}

// JobEntry is a kq kernel's batch job in kq ls.
type JobEntry struct {
	// ID is the scheduler's job id; State its state (RUNNING, PENDING).
	ID    string `json:"id"`
	State string `json:"state"`
	// Reason is why a pending job waits.
	Reason string `json:"reason,omitempty"`
	// Node is where it runs.
	Node string `json:"node,omitempty"`
	// TimeLeftSeconds is the time to its limit; -1 when unknown.
	TimeLeftSeconds int `json:"time_left_seconds"`
}

// parser is the one reader of remote.sh's output: fed line by line, it
// keeps what the tags say, and the JSON blocks between KQ-JSON-BEGIN and
// KQ-JSON-END (a list's blocks go to their entries).
type parser struct {
	file    string
	dir     string // a KQ-DIR line's text (op_rtcheck)
	pid     int
	errs    []string // KQ-ERROR lines, keys redacted
	log     []string // KQ-LOG lines (the kernel's output), keys redacted
	entries []Entry
	json    []byte // the last complete block outside a list
	warm    bool   // the kernel is a spare the op took
	final   string // the last tag that ends an op or a wait
	exit    int    // KQ-EXIT: op_sched's command's exit status

	inBlock bool
	block   bytes.Buffer
}

// feed takes one line. It returns tagEnd when a block is complete, or the
// tag when the line is one that ends an op (failed, gone, stopped, ...),
// else "".
func (p *parser) feed(line string) string {
	switch {
	case p.inBlock && line == tagEnd:
		p.inBlock = false
		data := append([]byte(nil), bytes.TrimSpace(p.block.Bytes())...)
		if n := len(p.entries); n > 0 {
			p.entries[n-1].JSON = data
		} else {
			p.json = data
		}
		return tagEnd
	case p.inBlock:
		p.block.WriteString(line + "\n")
	case line == tagBegin:
		p.inBlock = true
		p.block.Reset()
	case strings.HasPrefix(line, tagFile):
		p.file = strings.TrimPrefix(line, tagFile)
	case line == tagWarm:
		p.warm = true
	case strings.HasPrefix(line, tagDir):
		p.dir = strings.TrimPrefix(line, tagDir)
	case strings.HasPrefix(line, tagExit):
		p.exit, _ = strconv.Atoi(strings.TrimPrefix(line, tagExit))
	case strings.HasPrefix(line, tagPID):
		p.pid, _ = strconv.Atoi(strings.TrimPrefix(line, tagPID))
	case strings.HasPrefix(line, tagError):
		p.errs = append(p.errs, redact(strings.TrimPrefix(line, tagError)))
	case strings.HasPrefix(line, tagLog):
		p.log = append(p.log, redact(strings.TrimPrefix(line, tagLog)))
	case strings.HasPrefix(line, tagEntry):
		if e, ok := parseEntry(strings.TrimPrefix(line, tagEntry)); ok {
			p.entries = append(p.entries, e)
		}
	case line == tagFailed, line == tagGone, line == tagStopped, line == tagDetached,
		line == tagReleased, line == tagDone, line == tagListEnd:
		p.final = line
		return line
	}
	return ""
}

// parseEntry reads "FILE|AGE|KQ|PID|STATE|HELD|KEPT|SPARE".
func parseEntry(s string) (Entry, bool) {
	f := strings.Split(s, "|")
	if len(f) != 8 {
		return Entry{}, false
	}
	e := Entry{File: f[0], KQ: f[2] == "yes", Alive: f[4] == "alive", Held: f[5] == "yes", Kept: f[6] == "yes", Spare: f[7] == "yes"}
	e.AgeSeconds, _ = strconv.Atoi(f[1])
	e.PID, _ = strconv.Atoi(f[3])
	e.ID = strings.TrimSuffix(strings.TrimPrefix(path.Base(e.File), "kernel-"), ".json")
	if e.KQ {
		e.ID = strings.TrimPrefix(e.ID, "kq-")
	}
	return e, true
}

// Error is a failure remote.sh reported in a KQ-ERROR line.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// err is the first KQ-ERROR the op printed, if any.
func (p *parser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return &Error{Msg: p.errs[0]}
}

// keyValue finds a connection file's key in text the server relays (a
// kernel that printed its JSON, a Python dict in a traceback).
var keyValue = regexp.MustCompile(`(["']key["']\s*:\s*b?["'])[^"']*(["'])`)

// redact removes connection-file keys from a line kq relays from the
// server, so the key never reaches kq's output.
func redact(s string) string {
	return keyValue.ReplaceAllString(s, "${1}<redacted>${2}")
}

// lineQueue holds an op's output lines until they are read, without limit:
// a burst (a runtime dir with many connection files) loses nothing, and
// the reader of the session never blocks on it. It has one consumer at a
// time.
type lineQueue struct {
	mu    sync.Mutex
	queue []string
	eof   bool
	wake  chan struct{}
}

func newLineQueue() *lineQueue { return &lineQueue{wake: make(chan struct{}, 1)} }

func (q *lineQueue) push(line string) {
	q.mu.Lock()
	q.queue = append(q.queue, line)
	q.mu.Unlock()
	q.notify()
}

// end marks the end of the output.
func (q *lineQueue) end() {
	q.mu.Lock()
	q.eof = true
	q.mu.Unlock()
	q.notify()
}

func (q *lineQueue) notify() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// errGaveUp: next stopped waiting because its cancel channel fired.
var errGaveUp = errors.New("gave up waiting")

// next returns the next line; ok is false once the output has ended and
// every line was read. It waits until cancel fires, then returns errGaveUp.
func (q *lineQueue) next(cancel <-chan struct{}) (line string, ok bool, err error) {
	for {
		q.mu.Lock()
		if len(q.queue) > 0 {
			line = q.queue[0]
			q.queue = q.queue[1:]
			q.mu.Unlock()
			return line, true, nil
		}
		eof := q.eof
		q.mu.Unlock()
		if eof {
			return "", false, nil
		}
		select {
		case <-q.wake:
		case <-cancel:
			return "", false, errGaveUp
		}
	}
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}
