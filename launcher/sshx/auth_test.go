package sshx

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher/kinds"
	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

// scripted answers prompts from a list and records what was asked.
type scripted struct {
	mu      sync.Mutex
	answers []string
	asked   []string
	echoes  []bool
}

func (s *scripted) Ask(q string, echo bool) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, q)
	s.echoes = append(s.echoes, echo)
	if len(s.answers) == 0 {
		return "", errors.New("script exhausted")
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	return a, nil
}

// kbdServer is an in-process SSH server that accepts one connection and
// authenticates it with keyboard-interactive (two prompts: a hidden
// password and a visible OTP) or with a password. Used only here: the
// session itself is tested against real sshd in e2e/.
func kbdServer(t *testing.T) (addr string, knownHosts string) {
	t.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		KeyboardInteractiveCallback: func(c ssh.ConnMetadata, challenge ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			ans, err := challenge("KQ two-factor", "Use your token.", []string{"Password: ", "OTP code: "}, []bool{false, true})
			if err != nil {
				return nil, err
			}
			if len(ans) == 2 && ans[0] == "hunter2" && ans[1] == "123456" {
				return nil, nil
			}
			return nil, errors.New("wrong answers")
		},
		PasswordCallback: func(c ssh.ConnMetadata, pass []byte) (*ssh.Permissions, error) {
			if c.User() == "pw" && string(pass) == "s3cret" {
				return nil, nil
			}
			return nil, errors.New("wrong password")
		},
		MaxAuthTries: 6,
	}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveKbd(c, cfg)
			}()
		}
	}()
	addr = ln.Addr().String()
	host, port, _ := net.SplitHostPort(addr)
	knownHosts = filepath.Join(t.TempDir(), "known_hosts")
	line := fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(hostSigner.PublicKey()))
	if err := os.WriteFile(knownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return addr, knownHosts
}

// serveKbd runs kbdServer's side of one connection: authentication, then
// every channel refused.
func serveKbd(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	go func() {
		for ch := range chans {
			_ = ch.Reject(ssh.Prohibited, "test server")
		}
	}()
	_ = sc.Wait()
}

func settingsFor(addr, user, knownHosts string) profiles.SSHSettings {
	host, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	return profiles.SSHSettings{Alias: "kbd", HostName: host, Port: p, User: user,
		UserKnownHostsFiles: []string{knownHosts}, StrictHostKeyChecking: "yes",
		KbdInteractiveAuthentication: true, PasswordAuthentication: true, NumberOfPasswordPrompts: 3}
}

// TestKeyboardInteractive: both prompts are shown verbatim with the
// server's name and instruction, each with the server's echo flag; a wrong
// round is retried.
func TestKeyboardInteractive(t *testing.T) {
	addr, kh := kbdServer(t)
	p := &scripted{answers: []string{"hunter2", "000000", "hunter2", "123456"}}
	c, _, err := dialHop(context.Background(), NewAuthenticator(p), nil, settingsFor(addr, "alice", kh), "host kbd")
	if err != nil {
		t.Fatalf("dial: %v (asked %q)", err, p.asked)
	}
	c.Close()
	if len(p.asked) != 4 {
		t.Fatalf("asked %q, want two rounds of two prompts", p.asked)
	}
	if p.asked[0] != "KQ two-factor\nUse your token.\nPassword: " || p.asked[1] != "OTP code: " {
		t.Errorf("prompts not shown verbatim: %q", p.asked)
	}
	if p.echoes[0] || !p.echoes[1] {
		t.Errorf("echo flags %v, want [false true ...]", p.echoes)
	}
}

// TestPasswordAuth: the password prompt names user and host, and is hidden.
func TestPasswordAuth(t *testing.T) {
	addr, kh := kbdServer(t)
	s := settingsFor(addr, "pw", kh)
	s.KbdInteractiveAuthentication = false
	p := &scripted{answers: []string{"wrong", "s3cret"}}
	c, _, err := dialHop(context.Background(), NewAuthenticator(p), nil, s, "host kbd")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
	if len(p.asked) != 2 || !strings.HasPrefix(p.asked[0], "pw@127.0.0.1's password: ") || p.echoes[0] {
		t.Errorf("asked %q echo %v", p.asked, p.echoes)
	}
}

// TestNoPromptFailsAtOnce: without a terminal, a server that wants answers
// gets an authentication error (exit 4) right away, not a hang.
func TestNoPromptFailsAtOnce(t *testing.T) {
	addr, kh := kbdServer(t)
	for _, batch := range []bool{false, true} {
		s := settingsFor(addr, "alice", kh)
		s.BatchMode = batch
		var p Prompter = noPrompter{}
		if batch {
			p = &scripted{answers: []string{"hunter2", "123456"}} // must not be asked
		}
		start := time.Now()
		_, _, err := dialHop(context.Background(), NewAuthenticator(p), nil, s, "host kbd")
		if !errors.Is(err, kinds.Auth) || !errors.Is(err, errNoPrompt) {
			t.Fatalf("batch=%v: got %v", batch, err)
		}
		if sp, ok := p.(*scripted); ok && len(sp.asked) > 0 {
			t.Fatalf("BatchMode asked %q", sp.asked)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("took %s", time.Since(start))
		}
	}
}

func TestNewPrompter(t *testing.T) {
	tests := []struct {
		env  promptEnv
		want string
	}{
		{promptEnv{}, "none"},
		{promptEnv{askpass: "/bin/ap"}, "none"}, // no terminal, no display
		{promptEnv{askpass: "/bin/ap", display: true}, "askpass"},
		{promptEnv{askpass: "/bin/ap", require: "force"}, "askpass"},
		{promptEnv{askpass: "/bin/ap", require: "prefer"}, "none"},
		{promptEnv{askpass: "/bin/ap", require: "prefer", display: true}, "askpass"},
		{promptEnv{askpass: "/bin/ap", require: "never", display: true}, "none"},
		{promptEnv{require: "force"}, "none"},
	}
	for _, tt := range tests {
		got := "none"
		switch newPrompter(tt.env).(type) {
		case *askpassPrompter:
			got = "askpass"
		case *ttyPrompter:
			got = "tty"
		}
		if got != tt.want {
			t.Errorf("%+v: %s, want %s", tt.env, got, tt.want)
		}
	}
}

// TestAskpass: the program gets the prompt as its argument, and its output
// (without the newline) is the answer.
func TestAskpass(t *testing.T) {
	script := filepath.Join(t.TempDir(), "askpass")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = \"Password:\" ] && echo 'pa ss'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := &askpassPrompter{program: script}
	if got, err := a.Ask("Password: ", false); err != nil || got != "pa ss" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := a.Ask("Other: ", false); !errors.Is(err, errNoPrompt) {
		t.Fatalf("a failing askpass: %v", err)
	}
}
