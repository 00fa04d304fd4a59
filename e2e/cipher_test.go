package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// TestFastCipherByDefault: with no Ciphers in the ssh config (ssh -G then
// prints OpenSSH's default list, chacha20-poly1305 first), kq offers the
// cipher that is fastest on this CPU first, and OpenSSH's sshd (which
// allows both) agrees on it: AES-GCM where the CPU has AES instructions,
// ChaCha20-Poly1305 where it has not. sshd's own log says which one.
func TestFastCipherByDefault(t *testing.T) {
	e := newEnv(t, sshdtest.Options{ExtraConfig: []string{"LogLevel DEBUG1"}})
	p := e.baseProfile()
	p["frontend"] = []string{"/bin/true"}
	e.writeConfig(map[string]profile{"p": p})
	r, code := e.runToEnd([]string{"p"})
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	want := "chacha20-poly1305@openssh.com"
	if cpuHasAES(t) {
		want = "aes128-gcm@openssh.com"
	}
	deadline := time.Now().Add(5 * time.Second)
	var log string
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(e.srv.Log)
		if log = string(b); strings.Contains(log, "kex: client->server cipher:") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(log, "kex: client->server cipher: "+want) || !strings.Contains(log, "kex: server->client cipher: "+want) {
		t.Fatalf("sshd did not agree on %s with kq:\n%s", want, log)
	}
	e.assertClean(nil, nil)
}

// cpuHasAES reads the CPU flags the kernel reports.
func cpuHasAES(t *testing.T) bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	must(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "flags") {
			f := " " + l + " "
			return strings.Contains(f, " aes ") && strings.Contains(f, " pclmulqdq ")
		}
	}
	return false
}
