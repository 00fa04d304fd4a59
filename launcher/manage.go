package launcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kq-dev/kq/launcher/connfile"
	"github.com/kq-dev/kq/launcher/forward"
	"github.com/kq-dev/kq/launcher/remote"
	"github.com/kq-dev/kq/launcher/sshx"
	"github.com/kq-dev/kq/launcher/wire"
	"golang.org/x/crypto/ssh"
)

// KernelEntry is one kernel connection file in a host's runtime dir, as
// kq ls shows it; Alive is filled in for kernels kq did not start by
// probing their heartbeat port.
type KernelEntry = remote.Entry

// manager is a connection to a profile's host for the kernel-management
// commands (ls, stop, interrupt, restart): a watched chain and the remote
// ops, no session.
type manager struct {
	o     Options
	log   reporter
	host  string
	ch    *sshx.Chain
	watch *sshx.LinkWatch
	close func()
}

func openManager(ctx context.Context, o Options) (*manager, error) {
	log := newReporter(o)
	d, err := dialProfile(ctx, o, log)
	if err != nil {
		return nil, err
	}
	host := d.hops[len(d.hops)-1]
	m := &manager{o: o, log: log, host: host.Alias, ch: d.ch, watch: watchChain(o.Profile, d.hops, d.ch)}
	m.close = func() {
		m.watch.Stop()
		m.ch.Close()
		d.closeTerminal()
	}
	return m, nil
}

// orDeadLink is err, or the dead link's error when the link died under
// the op that returned it.
func (m *manager) orDeadLink(err error) error {
	if lerr := diedError(m.watch, m.host); lerr != nil {
		return lerr
	}
	return err
}

// List returns the kernels in the profile's runtime dir on its host.
func List(ctx context.Context, o Options) ([]KernelEntry, error) {
	m, err := openManager(ctx, o)
	if err != nil {
		return nil, err
	}
	defer m.close()
	return m.list(ctx)
}

func (m *manager) list(ctx context.Context) ([]KernelEntry, error) {
	out, err := listKernels(ctx, m.ch, m.o.Profile.RuntimeDir)
	if err == nil {
		out, err = m.addJobs(ctx, out)
	}
	return out, m.orDeadLink(err)
}

func (m *manager) runner() remote.Runner { return remote.SSH{Client: m.ch.Host()} }

// listKernels lists the kernels in runtime dir rt over ch, and finds out
// which of the kernels kq did not start are alive.
func listKernels(ctx context.Context, ch *sshx.Chain, rt string) ([]KernelEntry, error) {
	out, err := remote.List(ctx, remote.SSH{Client: ch.Host()}, rt)
	if err != nil {
		return nil, fmt.Errorf("list kernels: %w", err)
	}
	probeForeign(ch.Host(), out)
	return out, nil
}

// probeParallel bounds how many heartbeat probes run at once: a crowded
// runtime dir of kernels that silently drop packets costs seconds, not
// minutes.
const probeParallel = 16

// probeForeign marks kernels kq did not start alive if their heartbeat
// port accepts a connection, probing several at once.
func probeForeign(c *ssh.Client, entries []KernelEntry) {
	sem := make(chan struct{}, probeParallel)
	var wg sync.WaitGroup
	for i := range entries {
		e := &entries[i]
		info, err := connfile.Parse(e.JSON)
		if e.KQ || err != nil {
			continue
		}
		addr := net.JoinHostPort(forwardHost("auto", info.IP), strconv.Itoa(info.HBPort))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if c, err := dialTimeout(c, addr, 5*time.Second); err == nil {
				c.Close()
				e.Alive = true
			}
		}()
	}
	wg.Wait()
}

// dialTimeout opens a forward through c, giving up after d.
func dialTimeout(c *ssh.Client, addr string, d time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return forward.SSH{Client: c}.DialContext(ctx, "tcp", addr)
}

// attachTarget is a resolved kq attach target.
type attachTarget struct {
	kqID, rt string // a kq kernel: held through remote.sh
	path     string // another kernel's connection file on the host
	json     []byte // its content
}

// resolveAttach finds the kernel a attach names.
func resolveAttach(ctx context.Context, ch *sshx.Chain, rt string, a *AttachTarget) (attachTarget, error) {
	if a.JSON != nil {
		data, err := extractJSON(a.JSON)
		if err != nil {
			return attachTarget{}, withKind(ErrUsage, "paste the JSON that %connect_info prints", err)
		}
		return attachTarget{json: data}, nil
	}
	entries, err := listKernels(ctx, ch, rt)
	if err != nil {
		return attachTarget{}, err
	}
	e, err := findKernel(entries, a.Ref)
	if err == nil {
		if e.KQ {
			if !e.Alive {
				return attachTarget{}, withKind(ErrKernel, "", fmt.Errorf("kernel %s is not running (%s)", e.ID, e.File))
			}
			return attachTarget{kqID: e.ID, rt: path.Dir(e.File)}, nil
		}
		return attachTarget{path: e.File, json: e.JSON}, nil
	}
	if !strings.Contains(a.Ref, "/") {
		return attachTarget{}, err
	}
	data, err := remote.Cat(ctx, remote.SSH{Client: ch.Host()}, a.Ref)
	if err != nil {
		return attachTarget{}, err
	}
	// A kq kernel given by path is held like one given by id.
	base := path.Base(a.Ref)
	if strings.HasPrefix(base, "kernel-kq-") && strings.HasSuffix(base, ".json") {
		id := strings.TrimSuffix(strings.TrimPrefix(base, "kernel-kq-"), ".json")
		return attachTarget{kqID: id, rt: path.Dir(a.Ref)}, nil
	}
	return attachTarget{path: a.Ref, json: data}, nil
}

// findKernel matches ref against entries: a kq id or a unique prefix of
// it, a file name (with or without .json), or a path.
func findKernel(entries []KernelEntry, ref string) (KernelEntry, error) {
	var matches []KernelEntry
	for _, e := range entries {
		base := path.Base(e.File)
		switch ref {
		case e.File, base, strings.TrimSuffix(base, ".json"), e.ID:
			return e, nil
		}
		if len(ref) >= 4 && strings.HasPrefix(e.ID, ref) {
			matches = append(matches, e)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return KernelEntry{}, withKind(ErrUsage, "kq ls PROFILE lists the kernels there",
			fmt.Errorf("no kernel %q in the runtime dir", ref))
	}
	var ids []string
	for _, m := range matches {
		ids = append(ids, m.ID)
	}
	return KernelEntry{}, withKind(ErrUsage, "", fmt.Errorf("%q matches several kernels: %s", ref, strings.Join(ids, ", ")))
}

// extractJSON takes the first JSON object out of text such as
// %connect_info's output, which adds instructions after it.
func extractJSON(text []byte) ([]byte, error) {
	i := bytes.IndexByte(text, '{')
	if i < 0 {
		return nil, errors.New("no JSON object in the input")
	}
	var raw json.RawMessage
	if err := json.NewDecoder(bytes.NewReader(text[i:])).Decode(&raw); err != nil {
		return nil, fmt.Errorf("read connection JSON: %w", err)
	}
	return raw, nil
}

// Stop shuts kernels down (shutdown_request, then signals for kq's) and
// removes their files. refs name kernels as attach does; allKQ adds every
// kernel kq started there.
func Stop(ctx context.Context, o Options, refs []string, allKQ bool) error {
	m, err := openManager(ctx, o)
	if err != nil {
		return err
	}
	defer m.close()
	entries, err := m.list(ctx)
	if err != nil {
		return err
	}
	var targets []KernelEntry
	for _, ref := range refs {
		e, err := findKernel(entries, ref)
		if err != nil {
			return err
		}
		targets = append(targets, e)
	}
	if allKQ {
		for _, e := range entries {
			if e.KQ {
				targets = append(targets, e)
			}
		}
	}
	var errs []error
	for _, e := range targets {
		if err := m.stop(ctx, e); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", e.ID, err))
			continue
		}
		m.log.always("stopped kernel %s (%s)", e.ID, e.File)
	}
	return errors.Join(errs...)
}

func (m *manager) stop(ctx context.Context, e KernelEntry) error {
	acked := false
	if info, err := connfile.Parse(e.JSON); err == nil && e.Alive {
		acked = m.withForward(info, info.ControlPort, func(endpoint string) error {
			sctx, cancel := context.WithTimeout(ctx, shutdownTimeout)
			defer cancel()
			return wire.Shutdown(sctx, endpoint, []byte(info.Key))
		}) == nil
	}
	if e.KQ {
		grace := time.Duration(0)
		if acked {
			grace = 3 * time.Second
		}
		if err := remote.StopKernel(ctx, m.runner(), path.Dir(e.File), e.ID, grace); err != nil {
			return m.orDeadLink(err)
		}
		return m.orDeadLink(m.cancelJob(ctx, e))
	}
	if e.Alive && !acked {
		return withKind(ErrKernel, "kq can only signal kernels it started", errors.New("the kernel did not answer shutdown_request"))
	}
	return m.orDeadLink(remote.Remove(ctx, m.runner(), e.File))
}

// withForward runs fn with a temporary local forward to one kernel port.
func (m *manager) withForward(info *connfile.Info, port int, fn func(endpoint string) error) error {
	fw, err := forward.Listen(forward.SSH{Client: m.ch.Host()}, []forward.Target{{Name: "port", Host: forwardHost("auto", info.IP), Port: port}})
	if err != nil {
		return err
	}
	defer fw.Close()
	return fn(fmt.Sprintf("tcp://127.0.0.1:%d", fw.Forwards()[0].Local.Port))
}

// Interrupt sends SIGINT to a kernel kq started, for frontends that cannot
// interrupt a remote kernel themselves.
func Interrupt(ctx context.Context, o Options, ref string) error {
	return kqOp(ctx, o, ref, func(m *manager, e KernelEntry) error {
		err := m.orDeadLink(remote.Interrupt(ctx, m.runner(), path.Dir(e.File), e.ID))
		if errors.Is(err, remote.ErrGone) {
			return withKind(ErrKernel, "", fmt.Errorf("kernel %s is not running", e.ID))
		}
		if err == nil {
			m.log.always("interrupted kernel %s (pid %d)", e.ID, e.PID)
		}
		return err
	})
}

// Restart replaces a kq kernel's process. The new process reads the same
// connection file, so the key and the ports stay and an open session keeps
// its local ports; kq waits until the new kernel answers.
func Restart(ctx context.Context, o Options, ref string) error {
	return kqOp(ctx, o, ref, func(m *manager, e KernelEntry) error {
		pid, err := remote.Restart(ctx, m.runner(), path.Dir(e.File), e.ID)
		if err = m.orDeadLink(err); errors.Is(err, remote.ErrGone) {
			return withKind(ErrKernel, "", fmt.Errorf("kernel %s is not running", e.ID))
		}
		if err != nil {
			return err
		}
		info, err := connfile.Parse(e.JSON)
		if err != nil {
			return withKind(ErrKernel, "", err)
		}
		err = m.withForward(info, info.ShellPort, func(endpoint string) error {
			rctx, cancel := context.WithTimeout(ctx, readyTimeout)
			defer cancel()
			_, err := wire.KernelInfo(rctx, endpoint, []byte(info.Key))
			return err
		})
		if err != nil {
			return withKind(ErrKernel, "", fmt.Errorf("restarted kernel %s does not answer: %w", e.ID, err))
		}
		m.log.always("restarted kernel %s (pid %d)", e.ID, pid)
		return nil
	})
}

// kqOp finds the kq kernel ref names and hands it to then.
func kqOp(ctx context.Context, o Options, ref string, then func(*manager, KernelEntry) error) error {
	m, err := openManager(ctx, o)
	if err != nil {
		return err
	}
	defer m.close()
	e, err := m.kqKernel(ctx, ref)
	if err != nil {
		return err
	}
	return then(m, e)
}

func (m *manager) kqKernel(ctx context.Context, ref string) (KernelEntry, error) {
	entries, err := m.list(ctx)
	if err != nil {
		return KernelEntry{}, err
	}
	e, err := findKernel(entries, ref)
	if err != nil {
		return e, err
	}
	if !e.KQ {
		return e, withKind(ErrUsage, "kq knows the process only of kernels it started", fmt.Errorf("%s was not started by kq", e.ID))
	}
	return e, nil
}
