package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procKiB reads the "Key:   N kB" fields of a /proc file (status,
// smaps_rollup) as KiB; missing keys are absent.
func procKiB(path string, keys ...string) map[string]float64 {
	out := map[string]float64{}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		for _, want := range keys {
			if k == want {
				f := strings.Fields(v)
				if len(f) > 0 {
					n, _ := strconv.ParseFloat(f[0], 64)
					out[k] = n
				}
			}
		}
	}
	return out
}

// memSample is one reading of a process's memory, in MiB.
type memSample struct {
	rss, anon, file float64
}

// readMem reads a process's resident memory now from smaps_rollup: all of
// it, the anonymous part (Go's heap, stacks, buffers) and the file-backed
// rest (the binary's text and data pages that were touched).
func readMem(pid int) (memSample, bool) {
	m := procKiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Rss", "Anonymous")
	rss, ok := m["Rss"]
	if !ok {
		return memSample{}, false
	}
	return memSample{rss: rss / 1024, anon: m["Anonymous"] / 1024, file: (rss - m["Anonymous"]) / 1024}, true
}

// peakRSS is VmHWM of /proc/PID/status in MiB: the process's peak resident
// set over its whole life so far, its own only (wait4's ru_maxrss also
// counts its largest reaped child, the frontend).
func peakRSS(pid int) float64 {
	return procKiB(fmt.Sprintf("/proc/%d/status", pid), "VmHWM")["VmHWM"] / 1024
}

// socketInodes are the inodes of pid's open sockets.
func socketInodes(pid int) map[string]bool {
	out := map[string]bool{}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			out[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	return out
}

// tcpConn is an established TCP connection of /proc/net/tcp.
type tcpConn struct {
	localPort, remotePort int
	inode                 string
}

// establishedTCP lists the established IPv4 and IPv6 TCP connections of
// this network namespace.
func establishedTCP() []tcpConn {
	var out []tcpConn
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // header
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 10 || fl[3] != "01" { // 01: ESTABLISHED
				continue
			}
			out = append(out, tcpConn{localPort: hexPort(fl[1]), remotePort: hexPort(fl[2]), inode: fl[9]})
		}
	}
	return out
}

// hexPort is the port of /proc/net/tcp's "ADDR:PORT" (hex).
func hexPort(addr string) int {
	_, p, _ := strings.Cut(addr, ":")
	n, _ := strconv.ParseInt(p, 16, 32)
	return int(n)
}

// tcpOf counts pid's established TCP connections: those to port (the
// sshd) and all of them.
func tcpOf(pid, port int, conns []tcpConn) (toPort, all int) {
	inodes := socketInodes(pid)
	for _, c := range conns {
		if inodes[c.inode] {
			all++
			if c.remotePort == port {
				toPort++
			}
		}
	}
	return toPort, all
}

// exePath is the program a process runs, "" once it is gone.
func exePath(pid int) string {
	p, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return p
}

// sshSessionProcs are the processes that came from an SSH session of the
// sshd on port: their environment's SSH_CONNECTION ends in that port, which
// a process that detached from sshd (setsid, a double fork) keeps too.
// Plus the processes below the sshd itself (its per-connection children).
func sshSessionProcs(sshdPID, port int) []int {
	seen := map[int]bool{}
	for _, p := range descendants(sshdPID) {
		seen[p] = true
	}
	suffix := " " + strconv.Itoa(port)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("SSH_CONNECTION=")); ok && bytes.HasSuffix(v, []byte(suffix)) {
				seen[pid] = true
			}
		}
	}
	var out []int
	for p := range seen {
		out = append(out, p)
	}
	return out
}
