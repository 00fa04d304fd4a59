package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// TestHostKeyDecisionsMatchOpenSSH: for each known_hosts situation, kq
// accepts exactly when `ssh -o BatchMode=yes` accepts, on identical copies
// of the same known_hosts (except where kq is stricter on purpose, listed
// below); kq's refusals exit 5.
func TestHostKeyDecisionsMatchOpenSSH(t *testing.T) {
	dir := t.TempDir()
	ca := keygen(t, filepath.Join(dir, "host_ca"), "")
	e := newEnv(t, sshdtest.Options{HostCA: ca})
	for _, c := range hostKeyCases(hostKeyFixtures(t, e, dir, ca)) {
		t.Run(c.name, func(t *testing.T) { c.run(t, e) })
	}
}

// hostKeyFixture holds the known_hosts contents the cases are built from,
// each of which needs the running server (its address, its host key).
type hostKeyFixture struct {
	plain   string // "[HOST]:PORT KEY", the line ssh itself would write
	hashed  string // plain after ssh-keygen -H
	caPub   string // the public half of the CA that signed the host key
	wrong   string // a line for this server with another host key
	revoked string // plain, plus an @revoked line for the same key
}

// hostKeyFixtures builds the fixture for e's server; the hashed form comes
// from ssh-keygen itself, so kq is tested against OpenSSH's hashing.
func hostKeyFixtures(t *testing.T, e *env, dir, ca string) hostKeyFixture {
	t.Helper()
	caPub, err := os.ReadFile(ca + ".pub")
	must(t, err)
	plain := "[" + e.srv.Host + "]:" + strconv.Itoa(e.srv.Port) + " " + e.srv.HostKeyLine + "\n"
	hashed := filepath.Join(dir, "hashed")
	must(t, os.WriteFile(hashed, []byte(plain), 0o600))
	if out, err := exec.Command("/usr/bin/ssh-keygen", "-H", "-f", hashed).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -H: %v %s", err, out)
	}
	hashedData, err := os.ReadFile(hashed)
	must(t, err)
	wrong, err := os.ReadFile(e.srv.WrongKnownHosts(t))
	must(t, err)
	return hostKeyFixture{plain: plain, hashed: string(hashedData), caPub: string(caPub), wrong: string(wrong),
		revoked: plain + "@revoked * " + e.srv.HostKeyLine + "\n"}
}

// hostKeyCase is one known_hosts situation under one StrictHostKeyChecking
// value, with the decision expected of each client.
type hostKeyCase struct {
	name, knownHosts, strict string
	sshAccepts, kqAccepts    bool // asserted both, so a surprise in either is visible
}

// hostKeyCases lists the situations; a case where the two expectations
// differ is one where kq is stricter than OpenSSH on purpose.
func hostKeyCases(f hostKeyFixture) []hostKeyCase {
	return []hostKeyCase{
		{"plain", f.plain, "yes", true, true},
		{"hashed", f.hashed, "yes", true, true},
		{"cert-authority", "@cert-authority * " + f.caPub, "yes", true, true},
		{"revoked", f.revoked, "yes", false, false},
		{"changed", f.wrong, "yes", false, false},
		{"changed under accept-new", f.wrong, "accept-new", false, false},
		{"unknown under yes", "", "yes", false, false},
		{"unknown under ask", "", "ask", false, false}, // BatchMode: nobody to ask
		{"unknown under accept-new", "", "accept-new", true, true},
		{"unknown under no", "", "no", true, true},
		// Deliberate differences: OpenSSH's "no" still connects to a host
		// whose key is revoked or changed (with password auth disabled);
		// kq never does.
		{"revoked under no", f.revoked, "no", true, false},
		{"changed under no", f.wrong, "no", true, false},
	}
}

// run gives ssh and kq identical copies of the case's known_hosts, each in
// its own file so one client's update cannot sway the other, and compares
// their decisions; kq's refusals must exit 5, and when both accept an
// unknown host both must have recorded its key.
func (c hostKeyCase) run(t *testing.T, e *env) {
	var cfgs [2]string
	var files [2]string
	for i, who := range []string{"ssh", "kq"} {
		files[i] = filepath.Join(t.TempDir(), "known_hosts-"+who)
		must(t, os.WriteFile(files[i], []byte(c.knownHosts), 0o600))
		cfgs[i] = e.sshConfigWith("IdentityFile "+e.srv.ClientKey, "IdentitiesOnly yes",
			"UserKnownHostsFile "+files[i], "StrictHostKeyChecking "+c.strict, "BatchMode yes")
	}
	ssh := exec.CommandContext(contextFor(t, time.Minute), "/usr/bin/ssh", "-F", cfgs[0], "kqtest", "true")
	sshOut, sshErr := ssh.CombinedOutput()
	sshAccepts := sshErr == nil

	p := e.baseProfile()
	p["ssh_config"] = cfgs[1]
	p["frontend"] = []string{"/bin/true"}
	e.writeConfig(map[string]profile{"p": p})
	r, code := e.runToEnd([]string{"p"})
	kqAccepts := code == 0
	if kqAccepts != c.kqAccepts || sshAccepts != c.sshAccepts {
		t.Fatalf("kq accepts=%v (exit %d), ssh accepts=%v; want kq %v, ssh %v\nkq:\n%s\nssh:\n%s",
			kqAccepts, code, sshAccepts, c.kqAccepts, c.sshAccepts, r.stderr, sshOut)
	}
	if !kqAccepts && code != 5 {
		t.Errorf("refused with exit %d, want 5\n%s", code, r.stderr)
	}
	if c.knownHosts == "" && kqAccepts && sshAccepts {
		// Both recorded the new key.
		for i, f := range files {
			data, _ := os.ReadFile(f)
			if !strings.Contains(string(data), strings.Fields(e.srv.HostKeyLine)[1]) {
				t.Errorf("%s did not record the key: %q", []string{"ssh", "kq"}[i], data)
			}
		}
	}
	e.assertClean(nil, nil)
}

// TestUnknownHostPrompt: under StrictHostKeyChecking ask, kq shows the key
// type and fingerprint on the terminal; "yes" records a hashed line (as
// HashKnownHosts asks) that OpenSSH then accepts, "no" refuses with exit 5.
func TestUnknownHostPrompt(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	for _, answer := range []string{"no", "yes"} {
		t.Run(answer, func(t *testing.T) {
			kh := filepath.Join(t.TempDir(), "known_hosts")
			p := e.baseProfile()
			p["ssh_config"] = e.sshConfigWith("IdentityFile "+e.srv.ClientKey, "IdentitiesOnly yes",
				"UserKnownHostsFile "+kh, "StrictHostKeyChecking ask", "HashKnownHosts yes")
			e.writeConfig(map[string]profile{"p": p})
			r := e.startPTY([]string{"p"})
			r.answer(t, "Are you sure you want to continue connecting (yes/no)? ", answer)
			code := r.wait(t)
			out := r.output()
			if !strings.Contains(out, "ED25519 key fingerprint is "+e.srv.HostKeyFingerprint) {
				t.Errorf("prompt lacks key type and fingerprint:\n%s", out)
			}
			data, _ := os.ReadFile(kh)
			if answer == "no" {
				if code != 5 || len(data) != 0 {
					t.Fatalf("exit %d, known_hosts %q\n%s", code, data, out)
				}
				e.assertClean(nil, nil)
				return
			}
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, out)
			}
			if !strings.HasPrefix(string(data), "|1|") {
				t.Fatalf("recorded line is not hashed: %q", data)
			}
			check := exec.CommandContext(contextFor(t, time.Minute), "/usr/bin/ssh", "-F", e.sshConfigWith("IdentityFile "+e.srv.ClientKey,
				"IdentitiesOnly yes", "UserKnownHostsFile "+kh, "StrictHostKeyChecking yes", "BatchMode yes"), "kqtest", "true")
			if out, err := check.CombinedOutput(); err != nil {
				t.Fatalf("OpenSSH rejects the line kq wrote: %v\n%s", err, out)
			}
			rep := ptyReport(t, out)
			e.assertClean([]int{kernelPID(t, rep)}, rep.Ports)
		})
	}
}

// TestHostKeyAlgorithmsFromKnownHosts: a server with ECDSA and ed25519
// host keys, known only by its ed25519 key, is accepted: kq asks for the
// key type known_hosts holds instead of negotiating its own first choice
// (ECDSA) and calling the host "changed".
func TestHostKeyAlgorithmsFromKnownHosts(t *testing.T) {
	dir := t.TempDir()
	ecdsa := filepath.Join(dir, "ssh_host_ecdsa_key")
	if out, err := exec.Command("/usr/bin/ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", ecdsa).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	ed := keygen(t, filepath.Join(dir, "ssh_host_ed25519_key"), "")
	// Both keys: a HostKey line in ExtraConfig replaces sshdtest's own.
	e := newEnv(t, sshdtest.Options{ExtraConfig: []string{"HostKey " + ecdsa, "HostKey " + ed}})
	pub, err := os.ReadFile(ed + ".pub")
	must(t, err)
	fields := strings.Fields(string(pub))
	kh := filepath.Join(dir, "known_hosts")
	must(t, os.WriteFile(kh, []byte("["+e.srv.Host+"]:"+strconv.Itoa(e.srv.Port)+" "+fields[0]+" "+fields[1]+"\n"), 0o600))
	p := e.baseProfile()
	p["ssh_config"] = e.sshConfigWith("IdentityFile "+e.srv.ClientKey, "IdentitiesOnly yes",
		"UserKnownHostsFile "+kh, "StrictHostKeyChecking yes")
	p["frontend"] = []string{"/bin/true"}
	e.writeConfig(map[string]profile{"p": p})
	if r, code := e.runToEnd([]string{"p"}); code != 0 {
		t.Fatalf("exit %d\n%s", code, r.stderr)
	}
	e.assertClean(nil, nil)
}
