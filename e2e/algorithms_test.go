package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// Issue 11 points 5, 6 and 8 against the real sshd, each case also run
// with OpenSSH's ssh on the same config: both connect or both refuse.

// policyCase is one client config against the test's server.
type policyCase struct {
	name     string
	lines    []string // ssh_config lines for the host
	accepts  bool     // what both ssh and kq must decide
	code     int      // kq's exit code when it refuses
	mentions []string // kq's stderr must name these when it refuses
}

// run compares kq's decision with ssh's on the same config (BatchMode, so
// nothing can prompt).
func (c policyCase) run(t *testing.T, e *env) {
	cfg := e.sshConfigWith(append([]string{"UserKnownHostsFile " + e.srv.KnownHosts, "StrictHostKeyChecking yes", "BatchMode yes"}, c.lines...)...)
	ssh := exec.CommandContext(contextFor(t, time.Minute), "/usr/bin/ssh", "-F", cfg, "kqtest", "true")
	sshOut, sshErr := ssh.CombinedOutput()
	p := e.baseProfile()
	p["ssh_config"] = cfg
	p["frontend"] = []string{"/bin/true"}
	e.writeConfig(map[string]profile{"p": p})
	r, code := e.runToEnd([]string{"p"})
	if (sshErr == nil) != c.accepts || (code == 0) != c.accepts {
		t.Fatalf("ssh accepts=%v, kq exit %d; want both accepts=%v\nkq:\n%s\nssh:\n%s", sshErr == nil, code, c.accepts, r.stderr, sshOut)
	}
	if !c.accepts && code != c.code {
		t.Errorf("kq exit %d, want %d\n%s", code, c.code, r.stderr)
	}
	for _, m := range c.mentions {
		if !strings.Contains(r.stderr.String(), m) {
			t.Errorf("kq's error does not name %q:\n%s", m, r.stderr)
		}
	}
	t.Logf("ssh: %s\nkq: %s", strings.TrimSpace(string(sshOut)), strings.TrimSpace(r.stderr.String()))
	e.assertClean(nil, nil)
}

// TestAlgorithmPolicy: a server offering only chacha20-poly1305 and
// aes256-gcm; a client limited to aes128-ctr is refused by ssh and by kq,
// kq naming both sides' ciphers; a client allowing aes256-gcm connects
// with both; a MAC policy on an AEAD-only server changes nothing.
func TestAlgorithmPolicy(t *testing.T) {
	e := newEnv(t, sshdtest.Options{ExtraConfig: []string{"Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com"}})
	for _, c := range []policyCase{
		{name: "no common cipher", lines: []string{"IdentityFile " + e.srv.ClientKey, "Ciphers aes128-ctr"}, code: 1,
			mentions: []string{"no common algorithm", "Ciphers", "aes128-ctr", "chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com"}},
		{name: "common cipher", lines: []string{"IdentityFile " + e.srv.ClientKey, "Ciphers aes128-ctr,aes256-gcm@openssh.com"}, accepts: true},
		{name: "removed by minus", lines: []string{"IdentityFile " + e.srv.ClientKey, "Ciphers -chacha20*,aes256-gcm@openssh.com"}, code: 1,
			mentions: []string{"aes128-ctr", "chacha20-poly1305@openssh.com"}},
		{name: "no implemented cipher", lines: []string{"IdentityFile " + e.srv.ClientKey, "Ciphers aes128-cbc"}, code: 1,
			mentions: []string{"aes128-cbc"}},
		{name: "host key algorithm excluded", lines: []string{"IdentityFile " + e.srv.ClientKey, "HostKeyAlgorithms ecdsa-sha2-nistp256"}, code: 1,
			mentions: []string{"HostKeyAlgorithms", "ssh-ed25519"}},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, e) })
	}
}

// TestAuthMethodPolicy: with a key the server accepts, PubkeyAuthentication
// no and PreferredAuthentications password make both ssh and kq refuse
// (BatchMode: no password can be typed), exit 4 for kq; PubkeyAccepted-
// Algorithms without the key's type does too; listing publickey again
// connects.
func TestAuthMethodPolicy(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	key := "IdentityFile " + e.srv.ClientKey
	for _, c := range []policyCase{
		{name: "pubkey works", lines: []string{key}, accepts: true},
		{name: "PubkeyAuthentication no", lines: []string{key, "PubkeyAuthentication no"}, code: 4},
		{name: "PreferredAuthentications password", lines: []string{key, "PreferredAuthentications password"}, code: 4},
		{name: "PreferredAuthentications password,publickey", lines: []string{key, "PreferredAuthentications password,publickey"}, accepts: true},
		{name: "PubkeyAcceptedAlgorithms excludes ed25519", lines: []string{key, "PubkeyAcceptedAlgorithms rsa-sha2-256"}, code: 4},
		{name: "ConnectionAttempts and AddressFamily inet", lines: []string{key, "ConnectionAttempts 2", "AddressFamily inet", "BindAddress 127.0.0.1"}, accepts: true},
		{name: "AddressFamily inet6 on an IPv4 address", lines: []string{key, "AddressFamily inet6"}, code: 1},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, e) })
	}
}

// writeSKKey writes an unencrypted OpenSSH private key file holding an
// sk-ssh-ed25519 key (PROTOCOL.key, PROTOCOL.u2f) with a made-up key
// handle: generating a real one needs a FIDO device. ssh-keygen -y reads
// its public half, which proves the layout is OpenSSH's.
func writeSKKey(t *testing.T, path string) {
	t.Helper()
	str := func(b []byte) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...) }
	pubKey, _, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	typ := []byte("sk-ssh-ed25519@openssh.com")
	pub := append(append(str(typ), str(pubKey)...), str([]byte("ssh:"))...)
	priv := append(binary.BigEndian.AppendUint32(nil, 7), binary.BigEndian.AppendUint32(nil, 7)...)
	priv = append(append(append(priv, str(typ)...), str(pubKey)...), str([]byte("ssh:"))...)
	priv = append(append(append(append(priv, 0x01), str([]byte("handle"))...), str(nil)...), str([]byte("kq test"))...)
	for i := byte(1); len(priv)%8 != 0; i++ {
		priv = append(priv, i)
	}
	b := []byte("openssh-key-v1\x00")
	b = append(append(append(b, str([]byte("none"))...), str([]byte("none"))...), str(nil)...)
	b = append(append(append(b, binary.BigEndian.AppendUint32(nil, 1)...), str(pub)...), str(priv)...)
	must(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: b}), 0o600))
	if out, err := exec.Command("/usr/bin/ssh-keygen", "-y", "-f", path).CombinedOutput(); err != nil ||
		!strings.HasPrefix(string(out), "sk-ssh-ed25519@openssh.com ") {
		t.Fatalf("ssh-keygen -y does not read the crafted sk key: %v %s", err, out)
	}
}

// TestUnhonouredNamed: --dry-run names an sk identity file (load it into
// ssh-agent), PKCS11Provider (ssh-add -s) and options kq does not honour
// (ForwardAgent, LocalForward, ControlMaster, SendEnv), from ssh -G and
// from the Go parser alike (no ssh on PATH); -v names them at connect time, and a refused
// login's hint names the sk file. ssh refuses the same login (its sk
// middleware needs a device, its provider does not load).
func TestUnhonouredNamed(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	sk := filepath.Join(e.dir, "id_ed25519_sk")
	writeSKKey(t, sk)
	cfg := e.sshConfigWith("UserKnownHostsFile "+e.srv.KnownHosts, "StrictHostKeyChecking yes", "BatchMode yes",
		"IdentityFile "+sk, "IdentitiesOnly yes", "PKCS11Provider /nonexistent/opensc-pkcs11.so", "ForwardAgent yes",
		"LocalForward 8080 localhost:80", "ControlMaster auto", "ControlPath /tmp/kq-cm-%C", "SendEnv LANG")
	want := []string{"identity file " + sk + " is a FIDO key (sk-ssh-ed25519@openssh.com)", "ssh-add " + sk,
		"PKCS11Provider /nonexistent/opensc-pkcs11.so", "ssh-add -s /nonexistent/opensc-pkcs11.so",
		"not honoured: ForwardAgent yes: kq never forwards the agent", "not honoured: LocalForward 8080",
		"not honoured: ControlMaster auto", "not honoured: SendEnv LANG"}
	p := e.baseProfile()
	p["ssh_config"] = cfg
	e.writeConfig(map[string]profile{"p": p})
	for _, env := range [][]string{nil, {"PATH=/nonexistent"}} {
		t.Run(fmt.Sprintf("dry-run %v", env), func(t *testing.T) {
			r, code := e.runToEnd([]string{"--dry-run", "p"}, env...)
			out := r.stdout.String() + r.stderr.String()
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, out)
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("--dry-run does not say %q:\n%s", w, out)
				}
			}
		})
	}
	sshOut, sshErr := exec.CommandContext(contextFor(t, time.Minute), "/usr/bin/ssh", "-F", cfg, "-o", "ControlMaster=no", "kqtest", "true").CombinedOutput()
	r, code := e.runToEnd([]string{"-v", "p"})
	if sshErr == nil || code != 4 {
		t.Fatalf("ssh err %v, kq exit %d; want both refused, kq 4\nkq:\n%s\nssh:\n%s", sshErr, code, r.stderr, sshOut)
	}
	for _, w := range append(want, "hint: identity file "+sk) {
		if !strings.Contains(r.stderr.String(), w) {
			t.Errorf("kq -v does not say %q:\n%s", w, r.stderr)
		}
	}
	e.assertClean(nil, nil)
}

// TestJumpDeadLinkKeepalive: client → login → server, with keepalives of
// 1 s × 2 for login and 30 s × 3 for server (no profile keepalive). The
// link to login is cut: login's own keepalives find it within seconds
// (the host's would take 90 s), kq names the jump host, and once the link
// is back it reconnects and ends cleanly.
func TestJumpDeadLinkKeepalive(t *testing.T) {
	tp := newTopology(t)
	login, server := tp.host("login"), tp.host("server")
	_, loginAddr := tp.link("", login)
	loginDev := fmt.Sprintf("kq%s%db", tp.id, tp.links)
	_, serverAddr := tp.link(login, server)
	loginSSHD := startSSHD(t, login, loginAddr)
	serverSSHD := startSSHD(t, server, serverAddr)
	e := newBareEnv(t)
	cfg := e.writeTopologyConfig([]sshHost{
		{name: "login", srv: loginSSHD, key: loginSSHD.ClientKey},
		{name: "server", srv: serverSSHD, key: serverSSHD.ClientKey, jump: "login"},
	}, nil)
	data, err := os.ReadFile(cfg)
	must(t, err)
	data = append([]byte("Host login\n  ServerAliveInterval 1\n  ServerAliveCountMax 2\n  ConnectTimeout 2\n"+
		"Host server\n  ServerAliveInterval 30\n  ServerAliveCountMax 3\n"), data...)
	must(t, os.WriteFile(cfg, data, 0o600))
	e.writeConfig(map[string]profile{"gpu": e.profileFor("server", cfg)})

	r := e.start([]string{"gpu"}, addrCode, "KQ_TEST_WAIT=1")
	rep := r.report(t)
	pid, _ := splitPIDOutput(t, rep.Out)
	t0 := time.Now()
	tp.ip("-n", login, "link", "set", loginDev, "down")
	r.waitStderr(t, "jump host login: no answer to keepalives", 20*time.Second)
	found := time.Since(t0)
	if found > 15*time.Second {
		t.Errorf("dead jump link found after %s", found)
	}
	t.Logf("dead jump link found after %s", found)
	tp.ip("-n", login, "link", "set", loginDev, "up")
	r.waitStderr(t, "reconnected to server", 60*time.Second)
	r.stdin.Close()
	if code := r.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	e.assertClean([]int{pid}, rep.Ports)
}
