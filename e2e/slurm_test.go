package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/slurmtest"
)

// slurmEnv is a test world with a real Slurm cluster: kq's host is the
// cluster's login node, the kernel runs on its compute node, which the
// client cannot reach.
func slurmEnv(t *testing.T, opts slurmtest.Options) (*env, *slurmtest.Cluster) {
	t.Helper()
	c := slurmtest.Start(t, opts)
	e := newBareEnv(t)
	e.srv = c.SSH
	e.sshConfig = e.writeSSHConfig(c.SSH.KnownHosts, c.SSH.ClientKey)
	return e, c
}

// slurmProfile is a scheduler profile for the cluster.
func (e *env) slurmProfile(extra ...profile) profile {
	p := e.profileFor("kqtest", e.sshConfig, profile{"scheduler": "slurm", "slurm": map[string]any{"time": "5"},
		"linger": "6s"})
	for _, x := range extra {
		for k, v := range x {
			p[k] = v
		}
	}
	return p
}

// slurmClean proves nothing is left: no job in the queue, nothing running on
// the node (no kernel, no slurmstepd), no file on either side.
func slurmClean(t *testing.T, e *env, c *slurmtest.Cluster) {
	t.Helper()
	c.AssertClean(t, 20*time.Second)
	e.assertClean(nil, nil)
}

// TestSlurmSession: one command gives a kernel on the compute node, bound to
// the node's address, reached through the login node; at the end the job is
// gone and so is every file.
func TestSlurmSession(t *testing.T) {
	e, c := slurmEnv(t, slurmtest.Options{})
	e.writeConfig(map[string]profile{"cluster": e.slurmProfile()})
	r, code := e.runToEnd([]string{"cluster"}, "KQ_TEST_CODE=import socket; print(socket.gethostname())")
	if code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", code, r.stderr)
	}
	rep := r.report(t)
	if strings.TrimSpace(rep.Out) != c.NodeName {
		t.Errorf("the kernel ran on %q, want the node %q", rep.Out, c.NodeName)
	}
	if rep.IP != "127.0.0.1" {
		t.Errorf("local connection file ip %q", rep.IP)
	}
	for _, want := range []string{"submitted job ", "running on " + c.NodeName} {
		if !strings.Contains(r.stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	slurmClean(t, e, c)
}
