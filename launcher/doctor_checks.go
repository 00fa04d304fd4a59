package launcher

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kq-dev/kq/launcher/kernelspec"
	"github.com/kq-dev/kq/launcher/remote"
	"github.com/kq-dev/kq/launcher/sshx"
	"github.com/kq-dev/kq/profiles"
)

// errHint is the hint an error carries, or "".
func errHint(err error) string {
	var h interface{ Hint() string }
	if errors.As(err, &h) {
		return h.Hint()
	}
	return ""
}

// hopCheckName is a hop's check: "jump NAME" or "host NAME".
func hopCheckName(hops []profiles.SSHSettings, i int) string {
	if i < len(hops)-1 {
		return "jump " + hops[i].Alias
	}
	return "host " + hops[i].Alias
}

// doctorConnect resolves the hops and dials them as a session does, with
// no prompts and known_hosts only read: one line per hop, the first that
// fails saying why, the ones after it skipped.
func (s *session) doctorConnect(ctx context.Context, r *DoctorReport) bool {
	t0 := time.Now()
	hops, err := resolveHops(ctx, s.o, s.log)
	if err != nil {
		r.Add(Check{Name: "hosts", Status: CheckFail, Took: since(t0), Text: err.Error(), Hint: errHint(err)})
		return false
	}
	for i, h := range hops {
		r.note("%s, from %s", sshx.HopName(h, i, len(hops)), h.Source)
	}
	d := newDialed(s.o, s.log, hops)
	s.push("close terminal", func() error { d.closeTerminal(); return nil })
	d.auth.NeverRecord = true
	d.auth.Verbose = r.note
	lap, next := time.Now(), 0
	d.auth.Dialed = func(i int) {
		h := hops[i]
		r.Add(Check{Name: hopCheckName(hops, i), Status: CheckPass, Took: since(lap),
			Text: fmt.Sprintf("%s@%s: connected, host key known, authenticated", h.User, h.Address())})
		lap, next = time.Now(), i+1
	}
	ch, err := sshx.Dial(ctx, d.auth, hops)
	if err != nil {
		r.Add(Check{Name: hopCheckName(hops, next), Status: CheckFail, Took: since(lap), Text: err.Error(),
			Hint: hopHint(s.o.Profile, hops, next, err)})
		for j := next + 1; j < len(hops); j++ {
			r.Add(Check{Name: hopCheckName(hops, j), Status: CheckSkip, Text: "needs " + hopCheckName(hops, next)})
		}
		return false
	}
	s.hops, s.auth = hops, d.auth
	s.setChain(ch, nil)
	s.push("close ssh connections", s.closeChain)
	return true
}

// hopHint is the hint for hop i's failure; an unknown host key gets how to
// record it, since kq doctor never does.
func hopHint(p profiles.Profile, hops []profiles.SSHSettings, i int, err error) string {
	if !errors.Is(err, sshx.ErrUnknownHostKey) {
		return errHint(err)
	}
	h := hops[i]
	ssh := "ssh"
	if p.SSHConfig != "" {
		ssh += " -F " + p.SSHConfig
	}
	if i > 0 {
		var jumps []string
		for _, j := range hops[:i] {
			jumps = append(jumps, j.Alias)
		}
		ssh += " -J " + strings.Join(jumps, ",")
	}
	hint := fmt.Sprintf("kq doctor never records host keys: connect once with '%s %s true', check the fingerprint it shows with the host's admin and answer yes", ssh, h.Alias)
	if i == 0 && h.ProxyCommand == "" && h.HostKeyAlias == "" && len(h.UserKnownHostsFiles) > 0 {
		hint += fmt.Sprintf(", or add it with 'ssh-keyscan -p %d %s >> %s' after checking it", h.Port, h.HostName, h.UserKnownHostsFiles[0])
	}
	return hint
}

// doctorPython asks the kernel command's interpreter for its version and
// ipykernel's, and whether the -m module imports. A command whose
// interpreter cannot be told is skipped: the kernel check runs it anyway.
func (s *session) doctorPython(ctx context.Context, r *DoctorReport) CheckStatus {
	t0 := time.Now()
	k := s.o.Profile.Kernel
	info, err := remote.ProbePython(ctx, s.runner(), newKernelSpec(s.o.Profile, ""))
	c := Check{Name: "python", Took: since(t0), Detail: info.Log}
	host := s.hostAlias()
	prefix, _, _ := remote.SplitPython(k)
	if info.Command != "" {
		c.Detail = append([]string{"ran: " + prefix + " -c <kq's probe>, with the profile's workdir and env:"}, c.Detail...)
	}
	switch {
	case errors.Is(err, remote.ErrNoInterpreter):
		c.Status, c.Text = CheckSkip, fmt.Sprintf("kernel command %q names no Python that kq can ask; the kernel check runs it", k)
	case err != nil:
		c.Status, c.Text = CheckFail, fmt.Sprintf("the kernel command's interpreter on %s: %v", host, err)
		c.Hint = fmt.Sprintf("check the kernel command (kernel: %s): is %s installed on %s?", k, prefix, host)
	case len(info.Missing) > 0:
		c.Status = CheckFail
		c.Text = fmt.Sprintf("%s (Python %s%s) on %s cannot import %s", prefix, info.Version, atExecutable(info, prefix), host,
			strings.Join(missingShown(info.Missing), ", "))
		c.Hint = missingModuleHint(info, prefix)
	default:
		c.Text = fmt.Sprintf("%s: Python %s, ipykernel %s", info.Executable, info.Version, info.IPyKernel)
		if info.Module != "" {
			c.Text += ", runs -m " + info.Module
		}
	}
	return r.Add(c)
}

// atExecutable names the interpreter's sys.executable when the command
// names it otherwise (a wrapper, a bare "python3", a symlink).
func atExecutable(info remote.PythonInfo, prefix string) string {
	if info.Executable == "" || strings.HasSuffix(prefix, " "+info.Executable) || prefix == info.Executable {
		return ""
	}
	return " at " + info.Executable
}

// missingShown leaves out ipykernel_launcher when ipykernel itself is
// missing: it is part of ipykernel.
func missingShown(missing []string) []string {
	if !slices.Contains(missing, "ipykernel") {
		return missing
	}
	return slices.DeleteFunc(slices.Clone(missing), func(m string) bool { return m == "ipykernel_launcher" })
}

// missingModuleHint says how to get what the interpreter cannot import.
func missingModuleHint(info remote.PythonInfo, prefix string) string {
	m := info.Missing[0]
	if m == "ipykernel" || m == "ipykernel_launcher" {
		return fmt.Sprintf("install ipykernel for that interpreter ('%s -m pip install ipykernel'; Debian's python3: apt install python3-ipykernel), or set kernel: to a Python that has it", prefix)
	}
	if m == info.Module {
		return fmt.Sprintf("the kernel command runs '-m %s', which that Python does not have: check kernel: in the profile", m)
	}
	return fmt.Sprintf("ipykernel needs %s: install it for that interpreter ('%s -m pip install ...'), or use a Python whose ipykernel works", m, prefix)
}

// doctorRuntimeDir checks the remote runtime dir as the kernel's start
// will use it.
func (s *session) doctorRuntimeDir(ctx context.Context, r *DoctorReport) CheckStatus {
	t0 := time.Now()
	info, err := remote.CheckRuntimeDir(ctx, s.runner(), s.o.Profile.RuntimeDir)
	c := Check{Name: "runtime dir", Took: since(t0)}
	switch {
	case err != nil:
		c.Status, c.Text = CheckFail, fmt.Sprintf("%v (on %s)", err, s.hostAlias())
		c.Hint = "kernels need a runtime dir that is yours and that only you can write to: fix its owner and mode " +
			"(chmod 700), or set runtime_dir: in the profile to such a directory"
	case info.Exists:
		c.Text = info.Path + ": yours, writable by nobody else, takes new files"
	default:
		c.Text = fmt.Sprintf("%s: not there yet; kq creates it (%s takes new files)", info.Path, info.CreateIn)
	}
	return r.Add(c)
}

// doctorKernel runs the session's own steps: forwarding probe, kernel
// start, forwards, kernel_info through them; then stops the kernel and
// closes the forwards (the connection stays for what comes after).
func (s *session) doctorKernel(ctx context.Context, r *DoctorReport) {
	t0 := time.Now()
	mark := len(s.teardown)
	host := s.hops[len(s.hops)-1]
	err := s.probe(ctx, host)
	if err == nil {
		err = s.startKernel(ctx, host)
	}
	pid := 0
	if h := s.now().hold; h != nil {
		pid = h.PID
		r.note("kernel pid %d, connection file %s on %s", h.PID, h.Path, host.Alias)
	}
	if err == nil {
		err = s.forwardPorts(ctx)
	}
	if err == nil {
		err = s.readyCheck(ctx, host.Alias, "")
	}
	c := Check{Name: "kernel", Took: since(t0)}
	stopErr := s.unwindTo(mark) // the kernel and forwards; the connection stays
	c.Took = since(t0)
	switch {
	case err != nil:
		c.Status, c.Text, c.Hint = CheckFail, err.Error(), errHint(err)
	case stopErr != nil:
		c.Status, c.Text = CheckFail, fmt.Sprintf("kernel (pid %d) answered, but stopping it failed: %v", pid, stopErr)
	default:
		c.Text = fmt.Sprintf("started (pid %d), answered kernel_info_request through the tunnel, stopped; its files removed", pid)
	}
	r.Add(c)
}

// doctorFrontend checks the local frontend as the session does.
func doctorFrontend(p profiles.Profile, r *DoctorReport) {
	t0 := time.Now()
	prog, err := findFrontend(p)
	c := Check{Name: "frontend", Took: since(t0)}
	if err != nil {
		c.Status, c.Text, c.Hint = CheckFail, err.Error(), errHint(err)
	} else {
		c.Text = fmt.Sprintf("%s: %s", strings.Join(p.Frontend, " "), prog)
	}
	r.Add(c)
}

// DoctorKernelspecs checks that each of kq's kernelspecs that Jupyter uses
// runs a kq that exists.
func DoctorKernelspecs(ctx context.Context, r *DoctorReport) {
	t0 := time.Now()
	dirs, err := kernelspec.SearchPath(ctx)
	c := Check{Name: "kernelspecs"}
	if err != nil {
		c.Status, c.Took, c.Text = CheckFail, since(t0), err.Error()
		r.Add(c)
		return
	}
	var good, bad []string
	for _, e := range kernelspec.List(dirs) {
		if !e.KQ || e.Shadowed || e.Err != "" {
			continue
		}
		prog := ""
		if len(e.Argv) > 0 {
			prog = e.Argv[0]
		}
		line := fmt.Sprintf("%s (profile %s, %s) runs %s", e.Name, e.Profile, e.Dir, prog)
		if path, err := exec.LookPath(prog); err != nil || !isExecutable(path) {
			bad = append(bad, line+", which does not exist")
		} else {
			good = append(good, line)
		}
	}
	c.Took, c.Detail = since(t0), append([]string{"search path: " + strings.Join(dirs, string(filepath.ListSeparator))}, good...)
	switch {
	case len(bad) > 0:
		c.Status, c.Text = CheckFail, strings.Join(bad, "; ")
		c.Hint = "reinstall it with 'kq kernelspec install PROFILE --force' from the kq you use now, or remove it with 'kq kernelspec remove NAME'"
	case len(good) == 0:
		c.Text = "none of kq's installed"
	default:
		c.Text = fmt.Sprintf("%d of kq's, each runs an existing kq", len(good))
	}
	r.Add(c)
}
