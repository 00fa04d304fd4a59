package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/kq-dev/kq/e2e/sshdtest"
)

// keygen makes a key pair; passphrase "" leaves it unencrypted.
func keygen(t *testing.T, path, passphrase string) string {
	t.Helper()
	out, err := exec.Command("/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", filepath.Base(path), "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	return path
}

// authorize appends pubFile to the server's authorized_keys.
func authorize(t *testing.T, srv *sshdtest.Server, pubFile string) {
	t.Helper()
	pub, err := os.ReadFile(pubFile)
	must(t, err)
	f, err := os.OpenFile(filepath.Join(srv.Dir, "authorized_keys"), os.O_APPEND|os.O_WRONLY, 0o600)
	must(t, err)
	_, err = f.Write(pub)
	must(t, err)
	must(t, f.Close())
}

// sshConfigWith writes an ssh_config for the server with extra options.
func (e *env) sshConfigWith(lines ...string) string {
	path := filepath.Join(e.dir, fmt.Sprintf("ssh_config-%d", time.Now().UnixNano()))
	cfg := fmt.Sprintf("Host kqtest\n  HostName %s\n  Port %d\n  User %s\n  GlobalKnownHostsFile /dev/null\n",
		e.srv.Host, e.srv.Port, e.srv.User)
	for _, l := range lines {
		cfg += "  " + l + "\n"
	}
	must(e.t, os.WriteFile(path, []byte(cfg), 0o600))
	return path
}

// startAgent runs a real ssh-agent holding keys, in this order, and
// returns its socket.
func startAgent(t *testing.T, keys ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kqagent-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command("/usr/bin/ssh-agent", "-D", "-a", sock)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent did not create its socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, k := range keys {
		add := exec.Command("/usr/bin/ssh-add", k)
		add.Env = append(cleanEnv(), "SSH_AUTH_SOCK="+sock)
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add %s: %v %s", k, err, out)
		}
	}
	return sock
}

// TestAgentAuth: the only key is in a real ssh-agent, found through
// SSH_AUTH_SOCK or ssh config's IdentityAgent; it is used, and the agent is
// not forwarded (the kernel sees no SSH_AUTH_SOCK).
func TestAgentAuth(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	sock := startAgent(t, e.srv.ClientKey)
	for _, how := range []string{"SSH_AUTH_SOCK", "IdentityAgent"} {
		t.Run(how, func(t *testing.T) {
			lines := []string{"IdentityFile " + filepath.Join(e.dir, "no-such-key"),
				"UserKnownHostsFile " + e.srv.KnownHosts, "StrictHostKeyChecking yes"}
			env := []string{"KQ_TEST_CODE=import os; print(os.getpid()); print('agent', os.environ.get('SSH_AUTH_SOCK'))"}
			if how == "IdentityAgent" {
				lines = append(lines, "IdentityAgent "+sock)
			} else {
				env = append(env, "SSH_AUTH_SOCK="+sock)
			}
			p := e.baseProfile()
			p["ssh_config"] = e.sshConfigWith(lines...)
			e.writeConfig(map[string]profile{"p": p})
			r, code := e.runToEnd([]string{"p"}, env...)
			rep := r.report(t)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, r.stderr)
			}
			if !strings.Contains(rep.Out, "agent None") {
				t.Errorf("the agent reached the server: %q", rep.Out)
			}
			pid, _ := splitPIDOutput(t, rep.Out)
			e.assertClean([]int{pid}, rep.Ports)
		})
	}
}

// TestIdentitiesOnly: an agent holding more keys than the server's
// MaxAuthTries fails without IdentitiesOnly (as ssh does) and works with
// it, because only the configured identity is offered.
func TestIdentitiesOnly(t *testing.T) {
	e := newEnv(t, sshdtest.Options{ExtraConfig: []string{"MaxAuthTries 3"}})
	var keys []string
	for i := 0; i < 5; i++ {
		keys = append(keys, keygen(t, filepath.Join(e.dir, fmt.Sprintf("decoy%d", i)), ""))
	}
	// The right key's private half is only in the agent; the config names
	// its public half.
	pubOnly := filepath.Join(e.dir, "right.pub")
	data, err := os.ReadFile(e.srv.ClientKey + ".pub")
	must(t, err)
	must(t, os.WriteFile(pubOnly, data, 0o600))
	sock := startAgent(t, append(keys, e.srv.ClientKey)...)
	for _, only := range []string{"no", "yes"} {
		t.Run("IdentitiesOnly "+only, func(t *testing.T) {
			p := e.baseProfile()
			p["ssh_config"] = e.sshConfigWith("IdentityFile "+pubOnly, "IdentitiesOnly "+only,
				"UserKnownHostsFile "+e.srv.KnownHosts, "StrictHostKeyChecking yes")
			e.writeConfig(map[string]profile{"p": p})
			r, code := e.runToEnd([]string{"p"}, "SSH_AUTH_SOCK="+sock)
			want := map[string]int{"no": 4, "yes": 0}[only]
			if code != want {
				t.Fatalf("exit %d, want %d\n%s", code, want, r.stderr)
			}
			if only == "no" && !strings.Contains(r.stderr.String(), "IdentitiesOnly") {
				t.Errorf("no hint about IdentitiesOnly:\n%s", r.stderr)
			}
			e.assertClean(nil, nil)
		})
	}
}

// ptyRun is kq running on a pseudo-terminal, as when a user types.
type ptyRun struct {
	cmd  *exec.Cmd
	tty  *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	code int
}

func (e *env) startPTY(args []string, extraEnv ...string) *ptyRun {
	e.t.Helper()
	cmd := exec.Command(kqBin, append([]string{"--config", e.configFile}, args...)...)
	cmd.Env = append(append(cleanEnv(), "JUPYTER_RUNTIME_DIR="+e.localRT, "TERM=dumb"), extraEnv...)
	tty, err := pty.Start(cmd)
	must(e.t, err)
	r := &ptyRun{cmd: cmd, tty: tty, done: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			r.mu.Lock()
			r.out.Write(buf[:n])
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		r.code = cmd.ProcessState.ExitCode()
		close(r.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			<-r.done
		}
		tty.Close()
	})
	return r
}

func (r *ptyRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// answer waits for prompt on the terminal and types line.
func (r *ptyRun) answer(t *testing.T, prompt, line string) {
	t.Helper()
	r.answerNth(t, prompt, 1, line)
}

// answerNth waits for the n-th time prompt is shown and types line.
func (r *ptyRun) answerNth(t *testing.T, prompt string, n int, line string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(r.output(), prompt) < n {
		select {
		case <-r.done:
			t.Fatalf("kq exited (%d) before asking %q:\n%s", r.code, prompt, r.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the terminal:\n%s", prompt, r.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err := io.WriteString(r.tty, line+"\n")
	must(t, err)
}

func (r *ptyRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(2 * time.Minute):
		t.Fatalf("kq did not exit:\n%s", r.output())
		return -1
	}
}

// ptyReport finds clientPy's report in the terminal output.
func ptyReport(t *testing.T, out string) report {
	t.Helper()
	i := strings.Index(out, "KQTEST ")
	if i < 0 {
		t.Fatalf("no report on the terminal:\n%s", out)
	}
	line, _, _ := strings.Cut(out[i+len("KQTEST "):], "\n")
	var rep report
	if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &rep); err != nil {
		t.Fatalf("report %q: %v", line, err)
	}
	return rep
}

// encryptedKeyProfile authorises a new key encrypted with the passphrase
// "correct horse" and returns a profile that offers only that key.
func (e *env) encryptedKeyProfile(t *testing.T) (profile, string) {
	t.Helper()
	enc := keygen(t, filepath.Join(e.dir, "enc_key"), "correct horse")
	authorize(t, e.srv, enc+".pub")
	p := e.baseProfile()
	p["ssh_config"] = e.sshConfigWith("IdentityFile "+enc, "IdentitiesOnly yes",
		"UserKnownHostsFile "+e.srv.KnownHosts, "StrictHostKeyChecking yes")
	return p, enc
}

// TestEncryptedKeyPassphrase: an encrypted key's passphrase is typed at a
// terminal once, though two hops (a jump through the same server) use it.
func TestEncryptedKeyPassphrase(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	p, enc := e.encryptedKeyProfile(t)
	p["jump"] = "kqtest"
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
	if strings.Contains(out, "correct horse") {
		t.Errorf("the passphrase was echoed:\n%s", out)
	}
	rep := ptyReport(t, out)
	e.assertClean([]int{kernelPID(t, rep)}, rep.Ports)
}

// TestNoTerminal: the same key without a terminal fails at once with exit
// 4 and a hint, starting nothing; with SSH_ASKPASS forced, the askpass
// program supplies the passphrase.
func TestNoTerminal(t *testing.T) {
	e := newEnv(t, sshdtest.Options{})
	p, _ := e.encryptedKeyProfile(t)
	e.writeConfig(map[string]profile{"p": p})

	start := time.Now()
	r, code := e.runToEnd([]string{"p"})
	if code != 4 || !strings.Contains(r.stderr.String(), "kq: hint: load the key into ssh-agent") {
		t.Fatalf("exit %d, want 4 with a hint\n%s", code, r.stderr)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %s to give up", d)
	}
	e.assertClean(nil, nil)
	if _, err := os.Stat(e.remoteRT); err == nil {
		t.Error("something was started remotely")
	}

	askpass := filepath.Join(e.dir, "askpass.sh")
	must(t, os.WriteFile(askpass, []byte("#!/bin/sh\ncase \"$1\" in *passphrase*) echo 'correct horse';; *) exit 1;; esac\n"), 0o755))
	r, code = e.runToEnd([]string{"p"}, "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force")
	rep := r.report(t)
	if code != 0 {
		t.Fatalf("with SSH_ASKPASS: exit %d\n%s", code, r.stderr)
	}
	e.assertClean([]int{kernelPID(t, rep)}, rep.Ports)
}

// throwawayUser creates a user with the given login shell and a home of
// its own, removed when the test ends.
func throwawayUser(t *testing.T, shell string) (name, home string) {
	t.Helper()
	name = fmt.Sprintf("kqu%d", time.Now().UnixNano()%1000000)
	home, err := os.MkdirTemp("", "kqu-home-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(home) })
	must(t, os.Chmod(home, 0o755))
	// Password "*": no password login, but not locked (sshd refuses locked
	// accounts even key auth).
	if out, err := exec.Command("/usr/sbin/useradd", "--no-create-home", "--home-dir", home, "--shell", shell,
		"--password", "*", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v %s", err, out)
	}
	t.Cleanup(func() {
		// The kernel's watchdog may still be in its last `sleep 2`.
		var out []byte
		var err error
		for i := 0; i < 50; i++ {
			if out, err = exec.Command("/usr/sbin/userdel", name).CombinedOutput(); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("userdel %s: %v %s", name, err, out)
	})
	u, err := user.Lookup(name)
	must(t, err)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	must(t, os.Chown(home, uid, gid))
	return name, home
}

// TestPasswordAuth: password authentication against real sshd, typed at a
// terminal, for a throwaway user made for this test.
func TestPasswordAuth(t *testing.T) {
	name, home := throwawayUser(t, "/bin/sh")
	chpw := exec.Command("/usr/sbin/chpasswd")
	chpw.Stdin = strings.NewReader(name + ":pass word 1\n")
	if out, err := chpw.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v %s", err, out)
	}

	e := newEnv(t, sshdtest.Options{ExtraConfig: []string{"PasswordAuthentication yes"}})
	e.remoteRT = filepath.Join(home, "runtime")
	p := e.baseProfile()
	p["host"] = name + "@kqtest"
	p["ssh_config"] = e.sshConfigWith("IdentityFile "+filepath.Join(e.dir, "none"),
		"UserKnownHostsFile "+e.srv.KnownHosts, "StrictHostKeyChecking yes")
	e.writeConfig(map[string]profile{"p": p})
	r := e.startPTY([]string{"p"}, "KQ_TEST_CODE=import os, pwd; print(os.getpid()); print(pwd.getpwuid(os.getuid()).pw_name)")
	r.answer(t, name+"@127.0.0.1's password: ", "wrong")
	r.answerNth(t, name+"@127.0.0.1's password: ", 2, "pass word 1")
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, r.output())
	}
	rep := ptyReport(t, r.output())
	pid, who := splitPIDOutput(t, rep.Out)
	if strings.TrimSpace(who) != name {
		t.Errorf("kernel runs as %q, want %s", who, name)
	}
	e.assertClean([]int{pid}, rep.Ports)
}
