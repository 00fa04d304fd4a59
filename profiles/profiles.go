// Package profiles holds kq's pure data: what a profile says, how layers of
// settings (defaults, profile, environment, flags) combine into the one
// profile a session runs with, and how a profile's host is resolved into the
// SSH settings OpenSSH itself would use. It never touches the network, so
// everything here is testable with tables.
package profiles

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/shlex"
)

// ErrInvalid marks a profile that cannot be used as written; the command
// layer maps it to the usage/config exit code.
var ErrInvalid = errors.New("invalid profile")

// DefaultKernel is the remote command that starts a kernel when neither the
// profile nor the defaults name one; kq appends "-f FILE".
const DefaultKernel = "python3 -m ipykernel_launcher"

// DefaultFrontend is qtconsole owning its kernel: kq gives it a transient
// kernelspec (KernelPlaceholder) that runs kq kernel, so its interrupt and
// restart reach the remote kernel.
var DefaultFrontend = []string{"jupyter", "qtconsole", "--kernel", KernelPlaceholder}

// DefaultLinger is how long a remote kernel outlives a vanished kq.
const DefaultLinger = 5 * time.Minute

// ConnectionFilePlaceholder is replaced in the frontend argv by the path of
// the local connection file.
const ConnectionFilePlaceholder = "{connection_file}"

// KernelPlaceholder is replaced in the frontend argv by the name of a
// transient kernelspec that runs kq kernel for the profile: the frontend
// then starts, interrupts, restarts and stops the kernel itself.
const KernelPlaceholder = "{kernel}"

// Layer is one source of settings. A nil field is "not set here", so a later
// layer only overrides what it actually names; that is what makes
// defaults ← profile ← environment ← flags precedence a simple fold. Each
// field belongs to one row of Settings, which is how config fills it.
type Layer struct {
	// Host is SettingHost; see Profile for what each setting means.
	Host *string
	// Jump is SettingJump.
	Jump *string
	// SSHConfig is SettingSSHConfig.
	SSHConfig *string
	// RuntimeDir is SettingRuntimeDir.
	RuntimeDir *string
	// Kernel is SettingKernel.
	Kernel *string
	// KernelIP is SettingKernelIP.
	KernelIP *string
	// Workdir is SettingWorkdir.
	Workdir *string
	// Env is SettingEnv; its names merge across layers.
	Env map[string]string
	// Linger is SettingLinger.
	Linger *time.Duration
	// Frontend is SettingFrontend; nil is "not set here".
	Frontend []string
	// Keep is SettingKeep.
	Keep *bool
	// Keepalive is SettingKeepalive.
	Keepalive *time.Duration
	// KeepaliveCount is SettingKeepaliveCount.
	KeepaliveCount *int
	// Warm is SettingWarm.
	Warm *int
	// WarmCode is SettingWarmCode.
	WarmCode *string
	// Scheduler is SettingScheduler.
	Scheduler *string
	// QueueTimeout is SettingQueueTimeout.
	QueueTimeout *time.Duration
	// SlurmPartition and the other Slurm* fields are the slurm: block's
	// settings (SettingSlurmPartition, ...).
	SlurmPartition, SlurmGres, SlurmGPUs, SlurmTime, SlurmCPUs, SlurmMem *string
	// SlurmAccount, SlurmQOS, SlurmConstraint: see SlurmPartition.
	SlurmAccount, SlurmQOS, SlurmConstraint *string
	// SlurmExtra is SettingSlurmExtra; nil is "not set here".
	SlurmExtra []string
}

// Profile is the fully resolved description of one session.
type Profile struct {
	// Name is the profile's name as the user wrote it (case preserved).
	Name string
	// Host is "[user@]host[:port]" or an ssh_config alias.
	Host string
	// Jump is a ProxyJump-style chain "a,b"; empty means ssh_config decides.
	Jump string
	// SSHConfig is an ssh_config file used instead of the user's (ssh -F).
	SSHConfig string
	// RuntimeDir is the remote directory for the kernel's connection file;
	// empty asks the server.
	RuntimeDir string
	// Kernel is the remote command that starts a kernel; kq appends -f FILE.
	Kernel string
	// KernelIP is where the kernel listens as seen from the host.
	KernelIP string
	// Workdir is the remote working directory of the kernel.
	Workdir string
	// Env is added to the kernel's environment.
	Env map[string]string
	// Linger is how long the kernel outlives a vanished kq.
	Linger time.Duration
	// Frontend is the local argv; ConnectionFilePlaceholder is substituted.
	Frontend []string
	// Keep leaves the kernel running when the session ends.
	Keep bool
	// Keepalive is the interval of keepalive requests and KeepaliveCount
	// how many may go unanswered before the link counts as dead; 0 means
	// ssh config's ServerAliveInterval/CountMax, else the defaults.
	Keepalive time.Duration
	// KeepaliveCount: see Keepalive.
	KeepaliveCount int
	// Warm is how many spare kernels kq keeps started on the host (0 or 1).
	Warm int
	// WarmCode is run by the kernel as it starts (ipykernel's exec_lines).
	WarmCode string
	// Scheduler runs the kernel in a batch job of this scheduler ("slurm")
	// on a compute node; empty runs it on the host itself.
	Scheduler string
	// QueueTimeout gives up on a job still queued after it; 0 waits as long
	// as kq runs.
	QueueTimeout time.Duration
	// SlurmPartition, SlurmGres ("gpu:1"), SlurmGPUs, SlurmTime (the time
	// limit, required with scheduler: slurm), SlurmCPUs, SlurmMem,
	// SlurmAccount, SlurmQOS, SlurmConstraint are the job's requests;
	// SlurmExtra any other sbatch options.
	SlurmPartition, SlurmGres, SlurmGPUs, SlurmTime, SlurmCPUs, SlurmMem string
	// SlurmAccount, SlurmQOS, SlurmConstraint: see SlurmPartition.
	SlurmAccount, SlurmQOS, SlurmConstraint string
	// SlurmExtra: see SlurmPartition.
	SlurmExtra []string
}

// Resolve folds layers in order (later wins) over the built-in defaults,
// setting by setting as the table says.
func Resolve(name string, layers ...Layer) (Profile, error) {
	p := Profile{
		Name:     name,
		Kernel:   DefaultKernel,
		Linger:   DefaultLinger,
		Frontend: append([]string(nil), DefaultFrontend...),
		Env:      map[string]string{},
	}
	for _, l := range layers {
		for _, s := range Settings {
			s.field.apply(&p, l)
		}
	}
	return p, p.Validate()
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports the first setting that cannot work, naming it.
func (p Profile) Validate() error {
	if strings.TrimSpace(p.Host) == "" {
		return fmt.Errorf("%w %q: no host (set host: in the profile or KQ_HOST)", ErrInvalid, p.Name)
	}
	if _, err := ParseHost(p.Host); err != nil {
		return fmt.Errorf("%w %q: host: %w", ErrInvalid, p.Name, err)
	}
	if _, err := SplitJump(p.Jump); err != nil {
		return fmt.Errorf("%w %q: %w", ErrInvalid, p.Name, err)
	}
	if strings.TrimSpace(p.Kernel) == "" {
		return fmt.Errorf("%w %q: kernel: empty command", ErrInvalid, p.Name)
	}
	if err := CheckKernelCommand(p.Kernel); err != nil {
		return fmt.Errorf("%w %q: kernel: %w", ErrInvalid, p.Name, err)
	}
	if len(p.Frontend) == 0 || p.Frontend[0] == "" {
		return fmt.Errorf("%w %q: frontend: empty command", ErrInvalid, p.Name)
	}
	if p.Linger < 0 {
		return fmt.Errorf("%w %q: linger: negative duration %s", ErrInvalid, p.Name, p.Linger)
	}
	if p.Warm < 0 || p.Warm > 1 {
		return fmt.Errorf("%w %q: warm is %d; kq keeps 0 or 1 spare kernels", ErrInvalid, p.Name, p.Warm)
	}
	if p.Keepalive < 0 || p.KeepaliveCount < 0 {
		return fmt.Errorf("%w %q: keepalive: negative value", ErrInvalid, p.Name)
	}
	if p.KernelIP != "" && p.KernelIP != "auto" && net.ParseIP(p.KernelIP) == nil {
		return fmt.Errorf("%w %q: kernel_ip: %q is not an IP address or \"auto\"", ErrInvalid, p.Name, p.KernelIP)
	}
	if err := p.validateScheduler(); err != nil {
		return fmt.Errorf("%w %q: %w", ErrInvalid, p.Name, err)
	}
	for _, k := range slices.Sorted(maps.Keys(p.Env)) {
		if !envName.MatchString(k) {
			return fmt.Errorf("%w %q: env: %q is not a valid variable name", ErrInvalid, p.Name, k)
		}
	}
	return nil
}

// FrontendArgv returns the frontend argv with the connection file filled
// in. A frontend that names KernelPlaceholder is turned into its
// --existing form, for the sessions that hand it a connection file (kq
// attach, a frontend that cannot own the kernel).
func (p Profile) FrontendArgv(connectionFile string) []string {
	var out []string
	for i := 0; i < len(p.Frontend); i++ {
		a := p.Frontend[i]
		switch {
		case a == "--kernel" && i+1 < len(p.Frontend) && p.Frontend[i+1] == KernelPlaceholder:
			out = append(out, "--existing", connectionFile)
			i++
		case a == "--kernel="+KernelPlaceholder:
			out = append(out, "--existing="+connectionFile)
		default:
			out = append(out, strings.ReplaceAll(a, ConnectionFilePlaceholder, connectionFile))
		}
	}
	return out
}

// OwnsKernel says the frontend starts its own kernel from a kernelspec
// (it names KernelPlaceholder), so kq runs it with a transient one.
func (p Profile) OwnsKernel() bool {
	for _, a := range p.Frontend {
		if strings.Contains(a, KernelPlaceholder) {
			return true
		}
	}
	return false
}

// ManagedFrontendArgv is the frontend argv with the kernelspec name filled in.
func (p Profile) ManagedFrontendArgv(kernelName string) []string {
	out := make([]string, len(p.Frontend))
	for i, a := range p.Frontend {
		out[i] = strings.ReplaceAll(a, KernelPlaceholder, kernelName)
	}
	return out
}

// SplitCommand splits a command line the way a POSIX shell splits words, so a
// frontend given as one string ("jupyter console --existing {connection_file}")
// means what it would mean typed at a prompt.
func SplitCommand(s string) ([]string, error) {
	words, err := shlex.Split(s)
	if err != nil {
		return nil, fmt.Errorf("split %q: %w", s, err)
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("split %q: empty command", s)
	}
	return words, nil
}

// JoinCommand is SplitCommand's inverse: words joined by spaces, each
// quoted for a POSIX shell when it needs it.
func JoinCommand(argv []string) string {
	out := make([]string, len(argv))
	for i, w := range argv {
		out[i] = shellWord(w)
	}
	return strings.Join(out, " ")
}

// shellWord quotes w for a POSIX shell unless it is made only of
// characters no shell treats specially.
func shellWord(w string) string {
	if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,@%+{}") == "" {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

// HostSpec is the "[user@]host[:port]" form of a profile's host.
type HostSpec struct {
	// User is the login name, or "" for ssh_config's.
	User string
	// Host is a host name, an address or an ssh_config alias.
	Host string
	// Port is 0 when not given, so ssh_config may supply it.
	Port int
}

// ParseHost parses "[user@]host[:port]"; IPv6 literals take brackets
// ("[::1]:2222").
func ParseHost(s string) (HostSpec, error) {
	var h HostSpec
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "@"); i >= 0 {
		h.User, s = s[:i], s[i+1:]
		if h.User == "" {
			return h, fmt.Errorf("%q: empty user name", s)
		}
	}
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return h, fmt.Errorf("%q: missing ']'", s)
		}
		h.Host, s = s[1:end], s[end+1:]
		if s != "" {
			if !strings.HasPrefix(s, ":") {
				return h, fmt.Errorf("%q: unexpected text after ']'", s)
			}
			s = s[1:]
			p, err := parsePort(s)
			if err != nil {
				return h, err
			}
			h.Port = p
		}
	} else if i := strings.LastIndex(s, ":"); i >= 0 && strings.Count(s, ":") == 1 {
		p, err := parsePort(s[i+1:])
		if err != nil {
			return h, err
		}
		h.Host, h.Port = s[:i], p
	} else {
		h.Host = s
	}
	if h.Host == "" {
		return h, errors.New("empty host name")
	}
	if strings.ContainsAny(h.Host, " \t\n'\"`$;&|<>") {
		return h, fmt.Errorf("%q: invalid character in host name", h.Host)
	}
	return h, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q: want a number from 1 to 65535", s)
	}
	return p, nil
}

// SafeName reduces a profile name to characters that are safe in a file name.
func SafeName(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteRune('_')
		}
	}
	if b.Len() == 0 {
		return "profile"
	}
	return b.String()
}

// Schedulers are the values scheduler: accepts.
var Schedulers = []string{"slurm"}

// CheckScheduler says whether name is a scheduler kq drives.
func CheckScheduler(name string) error {
	if name == "" || slices.Contains(Schedulers, name) {
		return nil
	}
	return fmt.Errorf("unknown scheduler %q (kq knows: %s)", name, strings.Join(Schedulers, ", "))
}

// validateScheduler: a scheduler profile needs a time limit, and its
// requests must be one line each (they become #SBATCH lines).
func (p Profile) validateScheduler() error {
	if err := CheckScheduler(p.Scheduler); err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	if p.QueueTimeout < 0 {
		return fmt.Errorf("queue_timeout: negative duration %s", p.QueueTimeout)
	}
	if p.Scheduler == "" {
		return nil
	}
	if strings.TrimSpace(p.SlurmTime) == "" {
		return errors.New("slurm: time: required with scheduler: slurm (the job's time limit, e.g. 2:00:00; set it in defaults: or pass --slurm-time)")
	}
	for _, v := range append([]string{p.SlurmPartition, p.SlurmGres, p.SlurmGPUs, p.SlurmTime, p.SlurmCPUs, p.SlurmMem,
		p.SlurmAccount, p.SlurmQOS, p.SlurmConstraint}, p.SlurmExtra...) {
		if strings.ContainsAny(v, "\n\r") {
			return fmt.Errorf("slurm: %q holds a line break", v)
		}
	}
	return nil
}
