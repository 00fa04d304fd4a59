package launcher

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/kq-dev/kq/launcher/remote"
	"github.com/kq-dev/kq/launcher/sshx"
	"github.com/kq-dev/kq/profiles"
)

// Plan writes what Run would do with o, without connecting anywhere: each
// hop with its resolved settings, the remote command, the forwarding
// targets and the frontend. It is what --dry-run prints, so a user can see
// why kq would reach the wrong machine before it does.
func Plan(ctx context.Context, o Options) (string, error) {
	p := o.Profile
	hops, err := resolveHops(ctx, o, reporter{w: io.Discard, quiet: true})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("profile %s", p.Name)
	planHops(w, hops)
	host := hops[len(hops)-1]
	planRemote(w, p, host.Alias)
	if err := planJob(w, p); err != nil {
		return "", err
	}
	target := forwardHost(p.KernelIP, "<ip in the kernel's connection file>")
	if p.Scheduler != "" && p.KernelIP == "" {
		target = forwardHost("auto", "<the node's address, in the kernel's connection file>")
	}
	w("forward: shell, iopub, stdin, control, hb: 127.0.0.1:<free port> here -> %s:<kernel port> as seen from %s", target, host.Alias)
	w("frontend: %s", planFrontend(o))
	switch {
	case p.Keep:
		w("on exit: leave the kernel running (keep)")
	case p.Scheduler != "":
		w("on exit: shutdown_request, then the kernel stopped and the job cancelled (and confirmed gone); remove all files")
	default:
		w("on exit: shutdown_request, then TERM/KILL to the kernel's process group; remove all files")
	}
	return b.String(), nil
}

// DescribeHops writes each hop of the profile's chain with its resolved
// ssh settings (user, address, port, identity files, known_hosts and where
// they came from), as --dry-run does, without connecting.
func DescribeHops(ctx context.Context, o Options) (string, error) {
	hops, err := resolveHops(ctx, o, reporter{w: io.Discard, quiet: true})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	planHops(func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }, hops)
	return b.String(), nil
}

// planHops describes each hop with its resolved settings.
func planHops(w func(string, ...any), hops []profiles.SSHSettings) {
	for i, h := range hops {
		role := "host"
		if i < len(hops)-1 {
			role = fmt.Sprintf("jump %d", i+1)
		}
		how := "TCP from here"
		if i > 0 {
			how = "through " + hops[i-1].Alias
		}
		w("%-7s %s", role+":", h.Alias)
		w("    user %s, address %s, port %d (%s, from %s)", h.User, h.HostName, h.Port, how, h.Source)
		w("    identity files: %s", listOrNone(sshx.Existing(h.IdentityFiles), h.IdentityFiles))
		w("    known_hosts:    %s (StrictHostKeyChecking %s)", listOrNone(sshx.Existing(h.KnownHostsFiles()), h.KnownHostsFiles()), h.StrictHostKeyChecking)
		for _, n := range sshx.HopNotes(h) {
			w("    %s", n)
		}
	}
}

// planRemote shows the remote command and the start script it sends,
// rendered by the function that sends it, env: values hidden.
func planRemote(w func(string, ...any), p profiles.Profile, host string) {
	spec := newKernelSpec(p, "<uuid>")
	rt := p.RuntimeDir
	if rt == "" {
		rt = "$(jupyter --runtime-dir), else ~/.local/share/jupyter/runtime"
	}
	w("remote command on %s: %s, with this program on its stdin (nothing on a command line):", host, remote.Command)
	what := "the kernel's start script, RUNTIME/kernel-kq-<uuid>.cmd (mode 0600; the kernel runs in its own process group, under the login umask)"
	if p.Scheduler != "" {
		spec.Job = &remote.JobSpec{}
		what = "the kernel's start script, RUNTIME/kernel-kq-<uuid>.kcmd (mode 0600), which the batch job runs on the node"
	}
	w("    %s:", what)
	shown := spec // env: values may be secrets: never printed
	shown.Env = map[string]string{}
	for k := range spec.Env {
		shown.Env[k] = "<value from env:>"
	}
	for _, l := range strings.Split(shown.KernelScript(), "\n") {
		w("      %s", l)
	}
	w("    with $1 = RUNTIME/kernel-kq-<uuid>.json")
	w("    RUNTIME: %s", rt)
}

// planFrontend is the frontend's argv as the session will run it.
func planFrontend(o Options) string {
	p := o.Profile
	front := strings.Join(p.FrontendArgv("<local connection file>"), " ")
	if p.OwnsKernel() && !o.Detach {
		front = strings.Join(p.ManagedFrontendArgv("<transient kernelspec>"), " ") +
			"   (owns the kernel: its kernel manager runs kq kernel " + p.Name + " on ports it chooses)"
	}
	if _, err := findFrontend(p); err != nil {
		front += "   (not found here!)"
	}
	return front
}

func listOrNone(found, all []string) string {
	if len(found) > 0 {
		return strings.Join(found, " ")
	}
	if len(all) == 0 {
		return "none"
	}
	return "none found (looked for " + strings.Join(all, " ") + ")"
}
