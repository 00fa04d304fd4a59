package sshdtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestServer(t *testing.T) {
	s := Start(t, Options{})

	if s.Host != "127.0.0.1" || s.Addr != "127.0.0.1:"+strconv.Itoa(s.Port) || s.Alias != Alias {
		t.Fatalf("unexpected address fields: %+v", s)
	}
	if !strings.HasPrefix(s.HostKeyFingerprint, "SHA256:") {
		t.Fatalf("fingerprint %q", s.HostKeyFingerprint)
	}
	if !ProcessAlive(s.PID) {
		t.Fatalf("sshd %d not alive", s.PID)
	}
	if !Listening(s.Port) {
		t.Fatalf("nothing listening on %d", s.Port)
	}
	kh, err := os.ReadFile(s.KnownHosts)
	if err != nil || !strings.HasPrefix(string(kh), "[127.0.0.1]:"+strconv.Itoa(s.Port)+" ssh-ed25519 ") {
		t.Fatalf("known_hosts = %q, %v", kh, err)
	}

	if got := s.Run(t, "echo hi"); got != "hi\n" {
		t.Fatalf("Run(echo hi) = %q", got)
	}
	t.Logf("remote env:\n%s", s.Run(t, "env | sort"))
	t.Logf("remote which python3 jupyter:\n%s", s.Run(t, "which python3 jupyter; echo exit=$?"))

	if got := ProcessesMatching(s.SSHConfig); len(got) != 0 {
		t.Fatalf("ssh processes left after Run: %v", got)
	}
	if got := ProcessesMatching(s.Dir + "/sshd_config"); len(got) != 1 || got[0] != s.PID {
		t.Fatalf("ProcessesMatching(sshd_config) = %v, want [%d]", got, s.PID)
	}

	t.Run("refuses changed host key", func(t *testing.T) {
		refused(t, s, s.WrongKnownHosts(t), "REMOTE HOST IDENTIFICATION HAS CHANGED")
	})
	t.Run("refuses unknown host", func(t *testing.T) {
		refused(t, s, s.EmptyKnownHosts(t), "Host key verification failed")
	})

	pid, port := s.PID, s.Port
	s.Close()
	s.Close() // idempotent
	WaitGone(t, pid, 5*time.Second)
	if ProcessAlive(pid) {
		t.Fatalf("sshd %d alive after Close", pid)
	}
	if Listening(port) {
		t.Fatalf("port %d still listening after Close", port)
	}
}

func refused(t *testing.T, s *Server, knownHosts, want string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := s.Command(ctx, "-o", "UserKnownHostsFile="+knownHosts, s.Alias, "echo", "connected")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err == nil || strings.Contains(string(out), "connected") {
		t.Fatalf("ssh with %s succeeded: %q", knownHosts, out)
	}
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("ssh stderr lacks %q:\n%s", want, stderr.String())
	}
}

func TestExtraConfigOverridesDefault(t *testing.T) {
	s := Start(t, Options{ExtraConfig: []string{"AllowTcpForwarding no", "Match User nobody", "  X11Forwarding no"}})
	cfg, err := os.ReadFile(s.Dir + "/sshd_config")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cfg), "AllowTcpForwarding yes") {
		t.Fatalf("default not replaced:\n%s", cfg)
	}
	if !strings.HasSuffix(string(cfg), "Match User nobody\n  X11Forwarding no\n") {
		t.Fatalf("Match block not last:\n%s", cfg)
	}
	if got := s.Run(t, "echo ok"); got != "ok\n" {
		t.Fatalf("Run = %q", got)
	}
	// Forwarding is refused: ssh -W asks for a direct-tcpip channel.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := s.Command(ctx, "-W", s.Addr, s.Alias)
	cmd.Stderr = &stderr
	if out, err := cmd.Output(); err == nil || bytes.HasPrefix(out, []byte("SSH-")) {
		t.Fatalf("forwarding allowed despite AllowTcpForwarding no: %q %v", out, err)
	}
	t.Logf("ssh -W refused: %s", strings.TrimSpace(stderr.String()))
}

func TestProcessAlive(t *testing.T) {
	if !ProcessAlive(os.Getpid()) {
		t.Fatal("self not alive")
	}
	if ProcessAlive(0) || ProcessAlive(-1) {
		t.Fatal("non-positive pid alive")
	}
}

func TestListenAddrMustBeLoopback(t *testing.T) {
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() { // Fatalf calls runtime.Goexit
		defer close(done)
		Start(ft, Options{ListenAddr: "0.0.0.0"})
	}()
	<-done
	if !strings.Contains(ft.msg, "loopback") {
		t.Fatalf("Start(0.0.0.0) did not refuse: %q", ft.msg)
	}
}

// fatalRecorder records the first Fatalf instead of failing the real test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
