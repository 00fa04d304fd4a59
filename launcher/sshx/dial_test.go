package sshx

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/launcher/internal/sshtest"
	"github.com/kq-dev/kq/launcher/kinds"
	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

// TestDialHandshakeDeadline: a host that accepts TCP but never speaks SSH
// fails after ConnectTimeout instead of hanging kq.
func TestDialHandshakeDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			held <- c // accepted, never answered
		}
	}()
	defer func() {
		select {
		case c := <-held:
			c.Close()
		default:
		}
	}()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	s := profiles.SSHSettings{HostName: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, User: "u",
		IdentityFiles: []string{keyFile}, ConnectTimeout: 300 * time.Millisecond}
	done := make(chan error, 1)
	go func() {
		_, _, err := dialHop(context.Background(), NewAuthenticator(noPrompter{}), nil, s, "host h")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, kinds.Connect) || !strings.Contains(err.Error(), "handshake timed out") {
			t.Fatalf("got %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dial did not honour ConnectTimeout")
	}
}

// TestWrongPassphrase: a passphrase typed wrong every time fails with the
// sentinel the lazy signer wraps, which the dial reports as an
// authentication failure (exit 4) by type, not by its text.
func TestWrongPassphrase(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("right"))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &scripted{answers: []string{"wrong", "also wrong"}}
	s := profiles.SSHSettings{Alias: "h", NumberOfPasswordPrompts: 2}
	signer, _ := NewAuthenticator(p).identityFile(keyFile, s)
	if signer == nil {
		t.Fatal("no lazy signer for an encrypted key")
	}
	_, err = signer.Sign(rand.Reader, []byte("data"))
	if !errors.Is(err, errWrongPassphrase) || len(p.asked) != 2 {
		t.Fatalf("Sign = %v after %d questions, want errWrongPassphrase after 2", err, len(p.asked))
	}
	herr := classifyHandshake(context.Background(), "host h", fmt.Errorf("ssh: handshake failed: %w", err))
	if !errors.Is(herr, kinds.Auth) {
		t.Fatalf("classifyHandshake = %v, want kinds.Auth", herr)
	}
}

// TestChainCloseTwice: closing a chain that is already closed (as a watch
// closes a dead link's) is not an error.
func TestChainCloseTwice(t *testing.T) {
	ch := newChain(sshtest.Dead(t, true))
	if err := ch.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ch.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
