package launcher

import (
	"context"
	"fmt"
	"time"

	"github.com/kq-dev/kq/launcher/remote"
)

// RemoteKernel is what the server says about the kernel a profile starts:
// its kernelspec there, when one could be read.
type RemoteKernel struct {
	// Spec is the server's kernelspec that matches the profile's kernel
	// command; valid when Found.
	Spec  remote.RemoteSpec
	Found bool
	// Logos are Spec's logo files by name (none when it has none).
	Logos map[string][]byte
	// Note says why no spec was found, in one line.
	Note string
}

// inspectTimeout bounds reading the server's kernelspecs: the connection
// is checked already, and an install must not wait on a slow Jupyter.
const inspectTimeout = 30 * time.Second

// InspectKernel test-connects to the profile's host, dialling the whole
// chain with prompts allowed when stdin is a terminal (so that an unknown
// host key is recorded now, where the profile's StrictHostKeyChecking
// allows it, and a later launch from a GUI, which can never prompt, finds
// it known), and then, over the same connection, looks at the server's
// kernelspecs for the one the profile's kernel command runs. Only the
// connection's failure is an error: a spec that cannot be read is a Note.
func InspectKernel(ctx context.Context, o Options) (RemoteKernel, error) {
	log := newReporter(o)
	t0 := time.Now()
	d, err := dialProfile(ctx, o, log)
	if err != nil {
		return RemoteKernel{}, err
	}
	defer d.closeTerminal()
	defer d.ch.Close()
	host := d.hops[len(d.hops)-1]
	log.step("connected to %s@%s in %s", host.User, host.Address(), since(t0))
	sctx, cancel := context.WithTimeout(ctx, inspectTimeout)
	defer cancel()
	return readRemoteKernel(sctx, remote.SSH{Client: d.ch.Host()}, o.Profile.Kernel), nil
}

// readRemoteKernel finds the server's spec for kernelCommand and its logos.
func readRemoteKernel(ctx context.Context, r remote.Runner, kernelCommand string) RemoteKernel {
	specs, err := remote.KernelSpecs(ctx, r, remote.Interpreter(kernelCommand))
	if err != nil {
		return RemoteKernel{Note: err.Error()}
	}
	s, ok := remote.MatchSpec(specs, kernelCommand)
	if !ok {
		return RemoteKernel{Note: fmt.Sprintf("no kernelspec on the server matches the kernel command %q", kernelCommand)}
	}
	rk := RemoteKernel{Spec: s, Found: true}
	if s.ResourceDir != "" {
		if rk.Logos, err = remote.Logos(ctx, r, s.ResourceDir); err != nil {
			rk.Note = err.Error()
		}
	}
	return rk
}
