package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// certSign signs pubFile with ca as ssh-keygen does (-h for a host
// certificate); validity is ssh-keygen's -V, e.g. "+1h".
func certSign(t *testing.T, ca, pubFile, principals, validity string, host bool) string {
	t.Helper()
	args := []string{"-q", "-s", ca, "-I", "kq-e2e-" + filepath.Base(pubFile), "-n", principals, "-V", validity}
	if host {
		args = append(args, "-h")
	}
	out, err := exec.Command("/usr/bin/ssh-keygen", append(args, pubFile)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -s: %v %s", err, out)
	}
	return strings.TrimSuffix(pubFile, ".pub") + "-cert.pub"
}

// certCase is one client set-up against a server, with the decision both
// clients must reach and what kq's stderr must (and must not) say.
type certCase struct {
	name        string
	sshConfig   []string // lines for e.sshConfigWith
	env         []string // extra environment for both clients
	accept      bool
	say, notSay string
}

// run gives ssh and kq the same ssh_config and compares their decisions;
// kq's refusals must exit with wantCode and say c.say.
func (c certCase) run(t *testing.T, e *env, wantCode int) {
	cfg := e.sshConfigWith(c.sshConfig...)
	ssh := exec.CommandContext(contextFor(t, time.Minute), "/usr/bin/ssh", "-F", cfg, "-o", "BatchMode=yes", "kqtest", "true")
	ssh.Env = append(cleanEnv(), c.env...)
	sshOut, sshErr := ssh.CombinedOutput()
	p := e.baseProfile()
	p["ssh_config"] = cfg
	p["frontend"] = []string{"/bin/true"}
	e.writeConfig(map[string]profile{"p": p})
	r, code := e.runToEnd([]string{"p"}, c.env...)
	stderr := r.stderr.String()
	if (code == 0) != c.accept || (sshErr == nil) != c.accept {
		t.Fatalf("kq exit %d, ssh err %v; want both to accept=%v\nkq:\n%s\nssh:\n%s", code, sshErr, c.accept, stderr, sshOut)
	}
	if !c.accept {
		t.Logf("kq refuses:\n%s", stderr)
	}
	if !c.accept && code != wantCode {
		t.Errorf("refused with exit %d, want %d\n%s", code, wantCode, stderr)
	}
	if c.say != "" && !strings.Contains(stderr, c.say) {
		t.Errorf("kq does not say %q:\n%s", c.say, stderr)
	}
	if c.notSay != "" && strings.Contains(stderr, c.notSay) {
		t.Errorf("kq says %q:\n%s", c.notSay, stderr)
	}
	e.assertClean(nil, nil)
}

// TestCertUserCA: an sshd that trusts only a user CA (TrustedUserCAKeys,
// AuthorizedKeysFile none) lets kq in with a key whose "-cert.pub" lies
// beside it and with an explicit CertificateFile, as it lets ssh in; an
// expired certificate and one for another principal are refused by both,
// and kq says which, exit 4.
func TestCertUserCA(t *testing.T) {
	dir := t.TempDir()
	ca := keygen(t, filepath.Join(dir, "user_ca"), "")
	e := newEnv(t, sshdtest.Options{ExtraConfig: []string{"TrustedUserCAKeys " + ca + ".pub", "AuthorizedKeysFile none"}})
	user := e.srv.User
	kh := []string{"UserKnownHostsFile " + e.srv.KnownHosts, "StrictHostKeyChecking yes", "IdentitiesOnly yes"}
	beside := keygen(t, filepath.Join(e.dir, "beside"), "")
	certSign(t, ca, beside+".pub", user, "+1h", false)
	explicit := keygen(t, filepath.Join(e.dir, "explicit"), "")
	explicitCert := filepath.Join(e.dir, "certs", "mine-cert.pub")
	must(t, os.MkdirAll(filepath.Dir(explicitCert), 0o700))
	must(t, os.Rename(certSign(t, ca, explicit+".pub", user, "+1h", false), explicitCert))
	expired := keygen(t, filepath.Join(e.dir, "expired"), "")
	certSign(t, ca, expired+".pub", user, "20200101:20200102", false)
	wrong := keygen(t, filepath.Join(e.dir, "wrong"), "")
	certSign(t, ca, wrong+".pub", "alice,bob", "+1h", false)
	plain := e.srv.ClientKey // authorised in authorized_keys, which this sshd does not read
	for _, c := range []certCase{
		{name: "key-cert.pub beside the key", sshConfig: append([]string{"IdentityFile " + beside}, kh...), accept: true},
		{name: "CertificateFile", sshConfig: append([]string{"IdentityFile " + explicit, "CertificateFile " + explicitCert}, kh...), accept: true},
		{name: "no certificate", sshConfig: append([]string{"IdentityFile " + plain}, kh...), notSay: "certificate"},
		{name: "expired", sshConfig: append([]string{"IdentityFile " + expired}, kh...),
			say: "certificate " + expired + "-cert.pub expired at 2020-01-02T00:00:00"},
		{name: "wrong principal", sshConfig: append([]string{"IdentityFile " + wrong}, kh...),
			say: "certificate " + wrong + "-cert.pub is not valid for user " + user + " (principals: alice, bob)"},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, e, 4) })
	}
}

// TestCertAgentIdentitiesOnly: a certificate held by ssh-agent (ssh-add
// adds key-cert.pub with the key) survives IdentitiesOnly when the config
// names the key's public half and its "-cert.pub", for kq as for ssh; with
// an IdentityFile that names nothing in the agent both refuse.
func TestCertAgentIdentitiesOnly(t *testing.T) {
	dir := t.TempDir()
	ca := keygen(t, filepath.Join(dir, "user_ca"), "")
	e := newEnv(t, sshdtest.Options{ExtraConfig: []string{"TrustedUserCAKeys " + ca + ".pub", "AuthorizedKeysFile none"}})
	key := keygen(t, filepath.Join(e.dir, "agentkey"), "")
	cert := certSign(t, ca, key+".pub", e.srv.User, "+1h", false)
	sock := startAgent(t, key) // adds agentkey-cert.pub too
	pubOnly := filepath.Join(e.dir, "pubonly")
	for src, dst := range map[string]string{key + ".pub": pubOnly, cert: pubOnly + "-cert.pub"} {
		data, err := os.ReadFile(src)
		must(t, err)
		must(t, os.WriteFile(dst, data, 0o600))
	}
	kh := []string{"UserKnownHostsFile " + e.srv.KnownHosts, "StrictHostKeyChecking yes", "IdentitiesOnly yes"}
	env := []string{"SSH_AUTH_SOCK=" + sock}
	for _, c := range []certCase{
		{name: "public key and certificate named", sshConfig: append([]string{"IdentityFile " + pubOnly}, kh...), env: env, accept: true},
		{name: "nothing named", sshConfig: append([]string{"IdentityFile " + filepath.Join(e.dir, "none")}, kh...), env: env},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, e, 4) })
	}
}

// TestCertEncryptedKey: an encrypted key with its certificate logs in to
// the CA-only sshd; the passphrase is typed at a terminal, once. ssh gets
// the same key and config, the passphrase from SSH_ASKPASS.
func TestCertEncryptedKey(t *testing.T) {
	dir := t.TempDir()
	ca := keygen(t, filepath.Join(dir, "user_ca"), "")
	e := newEnv(t, sshdtest.Options{ExtraConfig: []string{"TrustedUserCAKeys " + ca + ".pub", "AuthorizedKeysFile none"}})
	enc := keygen(t, filepath.Join(e.dir, "enc_key"), "correct horse")
	certSign(t, ca, enc+".pub", e.srv.User, "+1h", false)
	cfg := e.sshConfigWith("IdentityFile "+enc, "IdentitiesOnly yes", "UserKnownHostsFile "+e.srv.KnownHosts,
		"StrictHostKeyChecking yes")

	askpass := filepath.Join(e.dir, "askpass.sh")
	must(t, os.WriteFile(askpass, []byte("#!/bin/sh\necho 'correct horse'\n"), 0o755))
	ssh := exec.CommandContext(contextFor(t, time.Minute), "/usr/bin/ssh", "-F", cfg, "kqtest", "true")
	ssh.Env = append(cleanEnv(), "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0")
	if out, err := ssh.CombinedOutput(); err != nil {
		t.Fatalf("ssh: %v\n%s", err, out)
	}

	p := e.baseProfile()
	p["ssh_config"] = cfg
	e.writeConfig(map[string]profile{"p": p})
	r := e.startPTY([]string{"p"})
	r.answer(t, "Enter passphrase for key '"+enc+"': ", "correct horse")
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, r.output())
	}
	out := r.output()
	if n := strings.Count(out, "Enter passphrase"); n != 1 {
		t.Errorf("asked %d times, want once:\n%s", n, out)
	}
	rep := ptyReport(t, out)
	e.assertClean([]int{kernelPID(t, rep)}, rep.Ports)
}

// TestCertHostCertificate: known_hosts trusts the host CA
// (@cert-authority) and nothing else. A valid host certificate is
// accepted by both clients; an expired one and one for another name are
// refused by both under StrictHostKeyChecking yes, kq with its own message
// (exit 5), never "CHANGED … ssh-keygen -R". A known_hosts trusting another
// CA makes the host unknown to both, and with the host's plain key added
// both accept. Deliberate difference: under accept-new ssh falls back to
// the plain key and records it; kq refuses a trusted CA's invalid
// certificate.
func TestCertHostCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := keygen(t, filepath.Join(dir, "host_ca"), "")
	otherCA := keygen(t, filepath.Join(dir, "other_ca"), "")
	e := newEnv(t, sshdtest.Options{HostCA: ca})
	caPub, err := os.ReadFile(ca + ".pub")
	must(t, err)
	otherPub, err := os.ReadFile(otherCA + ".pub")
	must(t, err)
	plain := e.srv.KnownHostsPattern() + " " + e.srv.HostKeyLine + "\n"
	hostPub := filepath.Join(e.srv.Dir, "ssh_host_ed25519_key.pub")
	for _, c := range []struct {
		name, principal, validity, knownHosts, strict string
		ssh, kq                                       bool
		say                                           string
	}{
		{"valid", e.srv.Host, "+1h", "@cert-authority * " + string(caPub), "yes", true, true, ""},
		{"expired", e.srv.Host, "20200101:20200102", "@cert-authority * " + string(caPub), "yes", false, false, "expired at 2020-01-02T00:00:00"},
		{"another name", "gpu.example.org", "+1h", "@cert-authority * " + string(caPub), "yes", false, false,
			"is not valid for " + e.srv.Host + " (principals: gpu.example.org)"},
		{"expired, plain key known", e.srv.Host, "20200101:20200102", "@cert-authority * " + string(caPub) + plain, "yes", true, true, ""},
		{"other CA", e.srv.Host, "+1h", "@cert-authority * " + string(otherPub), "yes", false, false, "is unknown"},
		{"other CA, plain key known", e.srv.Host, "+1h", "@cert-authority * " + string(otherPub) + plain, "yes", true, true, ""},
		{"expired under accept-new", e.srv.Host, "20200101:20200102", "@cert-authority * " + string(caPub), "accept-new", true, false, "expired at"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// sshd loads its host certificate for every connection.
			certSign(t, ca, hostPub, c.principal, c.validity, true)
			hc := hostKeyCase{name: c.name, knownHosts: c.knownHosts, strict: c.strict, sshAccepts: c.ssh, kqAccepts: c.kq}
			if stderr := hostCertRun(t, e, hc); !c.kq && (!strings.Contains(stderr, c.say) || strings.Contains(stderr, "CHANGED") ||
				strings.Contains(stderr, "ssh-keygen -R")) {
				t.Errorf("kq does not say %q, or calls it a changed key:\n%s", c.say, stderr)
			}
		})
	}
}

// hostCertRun is hostKeyCase.run that also returns kq's stderr: ssh and kq
// get identical copies of the case's known_hosts, their decisions must be
// the case's, and kq's refusals exit 5.
func hostCertRun(t *testing.T, e *env, c hostKeyCase) string {
	var cfgs [2]string
	for i, who := range []string{"ssh", "kq"} {
		file := filepath.Join(t.TempDir(), "known_hosts-"+who)
		must(t, os.WriteFile(file, []byte(c.knownHosts), 0o600))
		cfgs[i] = e.sshConfigWith("IdentityFile "+e.srv.ClientKey, "IdentitiesOnly yes",
			"UserKnownHostsFile "+file, "StrictHostKeyChecking "+c.strict, "BatchMode yes")
	}
	ssh := exec.CommandContext(contextFor(t, time.Minute), "/usr/bin/ssh", "-F", cfgs[0], "kqtest", "true")
	sshOut, sshErr := ssh.CombinedOutput()
	p := e.baseProfile()
	p["ssh_config"] = cfgs[1]
	p["frontend"] = []string{"/bin/true"}
	e.writeConfig(map[string]profile{"p": p})
	r, code := e.runToEnd([]string{"p"})
	if (code == 0) != c.kqAccepts || (sshErr == nil) != c.sshAccepts {
		t.Fatalf("kq exit %d, ssh err %v; want kq accepts=%v, ssh %v\nkq:\n%s\nssh:\n%s",
			code, sshErr, c.kqAccepts, c.sshAccepts, r.stderr, sshOut)
	}
	if code != 0 && code != 5 {
		t.Errorf("refused with exit %d, want 5\n%s", code, r.stderr)
	}
	if code != 0 {
		t.Logf("kq refuses:\n%s", r.stderr)
	}
	e.assertClean(nil, nil)
	return r.stderr.String()
}
