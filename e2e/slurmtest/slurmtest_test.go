package slurmtest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestCluster proves the cluster is real: a batch job submitted over SSH
// on the login node runs on the node (its hostname), the client cannot
// reach the node, and clean-up leaves nothing.
func TestCluster(t *testing.T) {
	c := Start(t, Options{})
	out := c.SSH.Run(t, "cd "+c.Dir+" && sbatch --parsable --output="+c.Dir+"/out-%j.txt --wrap hostname")
	id := strings.TrimSpace(out)
	if id == "" {
		t.Fatal("sbatch printed no job id")
	}
	deadline := time.Now().Add(20 * time.Second)
	var state string
	for time.Now().Before(deadline) {
		state = strings.TrimSpace(c.Run(t, "squeue", "-h", "-t", "all", "-j", id, "-o", "%T"))
		if state == "COMPLETED" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if state != "COMPLETED" {
		t.Fatalf("job %s: state %q after 20s", id, state)
	}
	got := strings.TrimSpace(c.SSH.Run(t, "cat "+c.Dir+"/out-"+id+".txt"))
	if got != c.NodeName {
		t.Fatalf("the job ran on %q, want %q", got, c.NodeName)
	}
	if ssh := strings.TrimSpace(c.SSH.Run(t, "hostname")); ssh == c.NodeName {
		t.Fatalf("ssh landed on the node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Command(ctx, "/bin/true").Run(); err != nil {
		t.Fatalf("nsenter: %v", err)
	}
	c.AssertClean(t, 10*time.Second)
}
