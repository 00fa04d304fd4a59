package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// krbRealm is the test realm of TestKerberosLogin's KDC.
const krbRealm = "KQ.TEST"

// kdc is an MIT krb5kdc in a namespace of its own, with its database,
// configuration and the krb5.conf clients and sshd use, all in dir.
type kdc struct {
	t        *testing.T
	dir      string
	krb5conf string // KRB5_CONFIG for kinit, ssh, sshd and kq
	profile  string // KRB5_KDC_PROFILE for kdb5_util, kadmin.local, krb5kdc
}

// newKDC writes the configuration for a KDC at addr:88. The service
// principal is host/IP: krb5.conf turns off host name canonicalization
// (dns_canonicalize_hostname, rdns), so ssh, sshd and kq all use the
// HostName exactly as written, and no /etc/hosts entry is needed.
func newKDC(t *testing.T, addr string) *kdc {
	dir := t.TempDir()
	k := &kdc{t: t, dir: dir, krb5conf: filepath.Join(dir, "krb5.conf"), profile: filepath.Join(dir, "kdc.conf")}
	must(t, os.WriteFile(k.krb5conf, []byte(fmt.Sprintf(`[libdefaults]
 default_realm = %[1]s
 dns_lookup_kdc = false
 dns_lookup_realm = false
 dns_canonicalize_hostname = false
 rdns = false
[realms]
 %[1]s = {
  kdc = %[2]s:88
 }
`, krbRealm, addr)), 0o644))
	must(t, os.WriteFile(k.profile, []byte(fmt.Sprintf(`[kdcdefaults]
 kdc_ports = 88
 kdc_tcp_ports = 88
[realms]
 %[1]s = {
  database_name = %[2]s/principal
  key_stash_file = %[2]s/stash
  acl_file = %[2]s/kadm5.acl
  max_life = 1h
  supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
 }
[logging]
 kdc = FILE:%[2]s/kdc.log
`, krbRealm, dir)), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "kadm5.acl"), nil, 0o644))
	return k
}

// env is the environment of every Kerberos tool run for this KDC.
func (k *kdc) env(extra ...string) []string {
	return append(append(cleanEnv(), "KRB5_CONFIG="+k.krb5conf, "KRB5_KDC_PROFILE="+k.profile), extra...)
}

// run runs a Kerberos tool to completion within 30s.
func (k *kdc) run(stdin string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(contextFor(k.t, 30*time.Second), name, args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kadmin runs one kadmin.local query.
func (k *kdc) kadmin(query string) {
	k.t.Helper()
	if out, err := k.run("", k.env(), "/usr/sbin/kadmin.local", "-r", krbRealm, "-q", query); err != nil {
		k.t.Fatalf("kadmin.local -q %q: %v\n%s", query, err, out)
	}
}

// create makes the database, a user principal with a password and a
// keytab for service; it returns the keytab's path.
func (k *kdc) create(user, password, service string) string {
	k.t.Helper()
	if out, err := k.run("", k.env(), "/usr/sbin/kdb5_util", "create", "-s", "-r", krbRealm, "-P", "master pass"); err != nil {
		k.t.Fatalf("kdb5_util create: %v\n%s", err, out)
	}
	keytab := filepath.Join(k.dir, "sshd.keytab")
	k.kadmin(fmt.Sprintf("addprinc -pw %q %s@%s", password, user, krbRealm))
	k.kadmin(fmt.Sprintf("addprinc -randkey %s@%s", service, krbRealm))
	k.kadmin(fmt.Sprintf("ktadd -k %s %s@%s", keytab, service, krbRealm))
	return keytab
}

// start runs krb5kdc in the foreground inside ns, stopped (by its pid)
// when the test ends.
func (k *kdc) start(ns string) {
	k.t.Helper()
	cmd := exec.Command("/usr/sbin/ip", "netns", "exec", ns, "/usr/sbin/krb5kdc", "-n")
	cmd.Env = k.env()
	logf, err := os.Create(filepath.Join(k.dir, "krb5kdc.out"))
	must(k.t, err)
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	must(k.t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	k.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			k.t.Errorf("krb5kdc (pid %d) did not exit", cmd.Process.Pid)
		}
	})
}

// kinit gets user a TGT in a new FILE: cache, retrying while the KDC
// starts; it returns KRB5CCNAME.
func (k *kdc) kinit(user, password string) string {
	k.t.Helper()
	cc := "FILE:" + filepath.Join(k.dir, "cc-"+user)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := k.run(password+"\n", k.env("KRB5CCNAME="+cc), "/usr/bin/kinit", user+"@"+krbRealm)
		if err == nil {
			return cc
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(k.dir, "kdc.log"))
			k.t.Fatalf("kinit: %v\n%s\nkdc.log:\n%s", err, out, log)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestKerberosLogin: at a Kerberos-only site (sshd accepts gssapi-with-mic
// and nothing else; the client has no keys at all) a ticket from kinit in
// a FILE: cache logs kq in, as it does OpenSSH's ssh on the same config;
// without a ticket both fail and kq says there is no Kerberos ticket and
// how to get one.
func TestKerberosLogin(t *testing.T) {
	for _, p := range []string{"/usr/sbin/krb5kdc", "/usr/sbin/kdb5_util", "/usr/sbin/kadmin.local", "/usr/bin/kinit"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s missing: install krb5-kdc krb5-admin-server krb5-user", p)
		}
	}
	tp := newTopology(t)
	kdcNS, server := tp.host("kdc"), tp.host("server")
	_, kdcAddr := tp.link("", kdcNS)
	_, serverAddr := tp.link("", server)
	k := newKDC(t, kdcAddr)
	keytab := k.create("root", "ticket pass", "host/"+serverAddr)
	k.start(kdcNS)
	cc := k.kinit("root", "ticket pass")

	// sshd reads its keytab and krb5.conf from its environment, which it
	// inherits from the test process.
	t.Setenv("KRB5_KTNAME", "FILE:"+keytab)
	t.Setenv("KRB5_CONFIG", k.krb5conf)
	srv := startSSHD(t, server, serverAddr, "GSSAPIAuthentication yes", "GSSAPIStrictAcceptorCheck no",
		"KerberosAuthentication no", "PubkeyAuthentication no", "PasswordAuthentication no")

	e := newBareEnv(t)
	khPath := filepath.Join(e.dir, "known_hosts")
	must(t, os.WriteFile(khPath, []byte(fmt.Sprintf("[%s]:%d %s\n", srv.Host, srv.Port, srv.HostKeyLine)), 0o600))
	cfg := filepath.Join(e.dir, "ssh_config")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`Host krb
  HostName %s
  Port %d
  User %s
  GSSAPIAuthentication yes
  GSSAPIDelegateCredentials yes
  IdentityFile %s
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
`, srv.Host, srv.Port, srv.User, filepath.Join(e.dir, "no-such-key"), khPath)), 0o600))
	e.writeConfig(map[string]profile{"krb": e.profileFor("krb", cfg)})

	t.Run("ticket", func(t *testing.T) { kerberosSession(t, e, cfg, cc, srv.Log) })
	t.Run("no ticket", func(t *testing.T) { kerberosNoTicket(t, e, cfg) })
}

// sshRun runs OpenSSH's ssh on cfg's host "krb" with KRB5CCNAME=cc.
func sshRun(t *testing.T, cfg, cc string) (string, error) {
	cmd := exec.CommandContext(contextFor(t, 30*time.Second), "ssh", "-F", cfg, "-o", "GSSAPIAuthentication=yes", "krb", "echo", "ssh-ok")
	cmd.Env = append(cleanEnv(), "KRB5CCNAME="+cc)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kerberosSession: ssh and a kq session both log in with the ticket (sshd
// logs gssapi-with-mic twice); -v says that delegation is not done.
func kerberosSession(t *testing.T, e *env, cfg, cc, sshdLog string) {
	if out, err := sshRun(t, cfg, cc); err != nil || !strings.Contains(out, "ssh-ok") {
		t.Fatalf("OpenSSH with the ticket: %v\n%s", err, out)
	}
	r := e.start([]string{"-v", "krb"}, "KRB5CCNAME="+cc)
	rep := r.report(t)
	r.stdin.Close()
	if code := r.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("kq exit %d\n%s", code, r.stderr)
	}
	if !strings.Contains(r.stderr.String(), "cannot delegate Kerberos credentials") {
		t.Errorf("-v does not say delegation is off:\n%s", r.stderr)
	}
	log, _ := os.ReadFile(sshdLog)
	if n := strings.Count(string(log), "Accepted gssapi-with-mic for root"); n != 2 {
		t.Errorf("sshd accepted gssapi-with-mic %d times, want 2 (ssh, kq):\n%s", n, log)
	}
	pid, _ := splitPIDOutput(t, rep.Out)
	e.assertClean([]int{pid}, rep.Ports)
}

// kerberosNoTicket: with an empty cache location both fail; kq exits 4
// saying there is no Kerberos ticket, with kinit as the way out. A cache
// kq cannot read (KEYRING:) is named, with the kinit that makes a FILE:.
func kerberosNoTicket(t *testing.T, e *env, cfg string) {
	cc := "FILE:" + filepath.Join(e.dir, "no-cache")
	if out, err := sshRun(t, cfg, cc); err == nil {
		t.Fatalf("OpenSSH logged in without a ticket:\n%s", out)
	}
	r, code := e.runToEnd([]string{"krb"}, "KRB5CCNAME="+cc)
	stderr := r.stderr.String()
	if code != 4 || !strings.Contains(stderr, "no Kerberos ticket") || !strings.Contains(stderr, "kinit") {
		t.Fatalf("exit %d, want 4 with a no-ticket message:\n%s", code, stderr)
	}
	t.Logf("kq without a ticket:\n%s", stderr)
	r, code = e.runToEnd([]string{"krb"}, "KRB5CCNAME=KEYRING:persistent:0")
	if stderr = r.stderr.String(); code != 4 || !strings.Contains(stderr, "KEYRING:persistent:0") ||
		!strings.Contains(stderr, "KRB5CCNAME=FILE:/tmp/krb5cc_$(id -u) kinit") {
		t.Fatalf("exit %d, want 4 naming the KEYRING cache:\n%s", code, stderr)
	}
}
