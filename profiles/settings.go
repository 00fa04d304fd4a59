package profiles

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Kind is the type of a setting's value. It decides how config reads the
// setting from YAML and from a string (a KQ_* variable or a flag), and which
// Go type Setting.Set accepts.
type Kind int

// The kinds of settings, with the Go type of their values.
const (
	// KindString is a string.
	KindString Kind = iota + 1
	// KindDuration is a time.Duration ("5m", "30s").
	KindDuration
	// KindInterval is a time.Duration that must be positive when given as a
	// string; in YAML 0 is accepted and means "ssh config decides", as it
	// always has.
	KindInterval
	// KindBool is a bool.
	KindBool
	// KindCount is an int of at least 1.
	KindCount
	// KindCommand is a []string: a list of words, or one string split as a
	// shell would.
	KindCommand
	// KindVars is a map[string]string whose names keep their case; it has
	// no string form, so no KQ_* variable or flag.
	KindVars
)

// String names the kind, for messages.
func (k Kind) String() string {
	switch k {
	case KindString:
		return "string"
	case KindDuration:
		return "duration"
	case KindInterval:
		return "interval"
	case KindBool:
		return "bool"
	case KindCount:
		return "count"
	case KindCommand:
		return "command"
	case KindVars:
		return "vars"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Setting is one row of the settings table: everything kq knows about one
// setting, so that YAML decoding, the KQ_* and flag layer, profile
// resolution and the command-line flags are all derived from one place and
// cannot drift apart.
type Setting struct {
	// Key is the YAML key in a profile or in defaults:. It is lower case
	// and has no ".", so viper (case-insensitive, "." as key delimiter)
	// can carry it unchanged.
	Key string
	// Env is the environment variable that overrides it, or "".
	Env string
	// Flag is the command-line flag that overrides it, or "".
	Flag string
	// Shorthand is the flag's one-letter form, or "".
	Shorthand string
	// Usage is the flag's help text.
	Usage string
	// Kind is the type of its value.
	Kind Kind
	// Block, when set, is the YAML mapping the setting lives in, and Sub
	// its key there: slurm: {time: 2:00} is the setting slurm_time.
	Block, Sub string
	// Check, when set, vets a string value as it is read (file:line).
	Check func(string) error

	field field
}

// field reads and writes the Layer and Profile fields a setting stands for.
type field interface {
	set(l *Layer, v any) bool
	get(l Layer) (any, bool)
	apply(p *Profile, l Layer)
	resolved(p Profile) any
}

// Set stores v, which must have the Go type of s.Kind, in l.
func (s *Setting) Set(l *Layer, v any) error {
	if !s.field.set(l, v) {
		return fmt.Errorf("setting %s: a %s wants another type than %T", s.Key, s.Kind, v)
	}
	return nil
}

// Get returns s's value in l, and whether l sets it at all.
func (s *Setting) Get(l Layer) (any, bool) { return s.field.get(l) }

// Resolved returns s's value in a resolved profile.
func (s *Setting) Resolved(p Profile) any { return s.field.resolved(p) }

// The settings, in the order the README lists them.
var (
	// SettingHost is the host: "[user@]host[:port]" or an ssh_config alias.
	SettingHost = &Setting{Key: "host", Env: "KQ_HOST", Kind: KindString,
		field: pointer(func(l *Layer) **string { return &l.Host }, func(p *Profile) *string { return &p.Host })}
	// SettingJump is the ProxyJump-style chain of jump hosts.
	SettingJump = &Setting{Key: "jump", Env: "KQ_JUMP", Flag: "jump", Kind: KindString,
		Usage: `jump hosts "HOST[,HOST]" like ssh -J ("none": ignore ssh config's ProxyJump)`,
		field: pointer(func(l *Layer) **string { return &l.Jump }, func(p *Profile) *string { return &p.Jump })}
	// SettingSSHConfig is the ssh_config file used instead of the user's.
	SettingSSHConfig = &Setting{Key: "ssh_config", Env: "KQ_SSH_CONFIG", Flag: "ssh-config", Shorthand: "F",
		Kind: KindString, Usage: "ssh config file to use instead of ~/.ssh/config (like ssh -F)",
		field: pointer(func(l *Layer) **string { return &l.SSHConfig }, func(p *Profile) *string { return &p.SSHConfig })}
	// SettingRuntimeDir is the remote directory of the connection file.
	SettingRuntimeDir = &Setting{Key: "runtime_dir", Env: "KQ_RUNTIME_DIR", Kind: KindString,
		field: pointer(func(l *Layer) **string { return &l.RuntimeDir }, func(p *Profile) *string { return &p.RuntimeDir })}
	// SettingKernel is the remote command that starts a kernel.
	SettingKernel = &Setting{Key: "kernel", Env: "KQ_KERNEL", Flag: "kernel", Kind: KindString,
		Usage: "remote kernel command for this run (kq appends -f FILE)",
		field: pointer(func(l *Layer) **string { return &l.Kernel }, func(p *Profile) *string { return &p.Kernel })}
	// SettingKernelIP is where the kernel listens, as seen from the host.
	SettingKernelIP = &Setting{Key: "kernel_ip", Env: "KQ_KERNEL_IP", Kind: KindString,
		field: pointer(func(l *Layer) **string { return &l.KernelIP }, func(p *Profile) *string { return &p.KernelIP })}
	// SettingWorkdir is the kernel's remote working directory.
	SettingWorkdir = &Setting{Key: "workdir", Env: "KQ_WORKDIR", Kind: KindString,
		field: pointer(func(l *Layer) **string { return &l.Workdir }, func(p *Profile) *string { return &p.Workdir })}
	// SettingEnv is added to the kernel's environment, merged name by name
	// across layers.
	SettingEnv = &Setting{Key: "env", Kind: KindVars, field: varsField{}}
	// SettingLinger is how long the kernel outlives a vanished kq.
	SettingLinger = &Setting{Key: "linger", Env: "KQ_LINGER", Kind: KindDuration,
		field: pointer(func(l *Layer) **time.Duration { return &l.Linger }, func(p *Profile) *time.Duration { return &p.Linger })}
	// SettingFrontend is the local frontend's argv.
	SettingFrontend = &Setting{Key: "frontend", Env: "KQ_FRONTEND", Flag: "frontend", Kind: KindCommand,
		Usage: `frontend command for this run, split like a shell would ("{connection_file}" is replaced)`,
		field: words(func(l *Layer) *[]string { return &l.Frontend }, func(p *Profile) *[]string { return &p.Frontend })}
	// SettingKeep leaves the kernel running when the session ends.
	SettingKeep = &Setting{Key: "keep", Env: "KQ_KEEP", Flag: "keep", Kind: KindBool,
		Usage: "leave the kernel running when the session ends and print its connection file",
		field: pointer(func(l *Layer) **bool { return &l.Keep }, func(p *Profile) *bool { return &p.Keep })}
	// SettingKeepalive is the interval of keepalive requests.
	SettingKeepalive = &Setting{Key: "keepalive", Env: "KQ_KEEPALIVE", Kind: KindInterval,
		field: pointer(func(l *Layer) **time.Duration { return &l.Keepalive }, func(p *Profile) *time.Duration { return &p.Keepalive })}
	// SettingKeepaliveCount is how many keepalives may go unanswered.
	SettingKeepaliveCount = &Setting{Key: "keepalive_count", Env: "KQ_KEEPALIVE_COUNT", Kind: KindCount,
		field: pointer(func(l *Layer) **int { return &l.KeepaliveCount }, func(p *Profile) *int { return &p.KeepaliveCount })}
	// SettingScheduler runs the kernel in a batch job ("slurm").
	SettingScheduler = &Setting{Key: "scheduler", Env: "KQ_SCHEDULER", Kind: KindString, Check: CheckScheduler,
		field: pointer(func(l *Layer) **string { return &l.Scheduler }, func(p *Profile) *string { return &p.Scheduler })}
	// SettingQueueTimeout gives up on a job that is still queued.
	SettingQueueTimeout = &Setting{Key: "queue_timeout", Env: "KQ_QUEUE_TIMEOUT", Flag: "queue-timeout", Kind: KindDuration,
		Usage: "give up on a batch job still queued after this long (default: wait)",
		field: pointer(func(l *Layer) **time.Duration { return &l.QueueTimeout }, func(p *Profile) *time.Duration { return &p.QueueTimeout })}
	// SettingSlurmPartition and the rows after it are the slurm: block.
	SettingSlurmPartition = slurm("partition", "slurm-partition", "Slurm partition for this run",
		func(l *Layer) **string { return &l.SlurmPartition }, func(p *Profile) *string { return &p.SlurmPartition })
	// SettingSlurmGres is the job's --gres ("gpu:1").
	SettingSlurmGres = slurm("gres", "slurm-gres", `Slurm generic resources for this run ("gpu:2")`,
		func(l *Layer) **string { return &l.SlurmGres }, func(p *Profile) *string { return &p.SlurmGres })
	// SettingSlurmGPUs is the job's --gpus.
	SettingSlurmGPUs = slurm("gpus", "", "",
		func(l *Layer) **string { return &l.SlurmGPUs }, func(p *Profile) *string { return &p.SlurmGPUs })
	// SettingSlurmTime is the job's time limit.
	SettingSlurmTime = slurm("time", "slurm-time", `Slurm time limit for this run ("2:00:00", "90")`,
		func(l *Layer) **string { return &l.SlurmTime }, func(p *Profile) *string { return &p.SlurmTime })
	// SettingSlurmCPUs is the job's --cpus-per-task.
	SettingSlurmCPUs = slurm("cpus", "", "",
		func(l *Layer) **string { return &l.SlurmCPUs }, func(p *Profile) *string { return &p.SlurmCPUs })
	// SettingSlurmMem is the job's --mem.
	SettingSlurmMem = slurm("mem", "", "",
		func(l *Layer) **string { return &l.SlurmMem }, func(p *Profile) *string { return &p.SlurmMem })
	// SettingSlurmAccount is the job's --account.
	SettingSlurmAccount = slurm("account", "", "",
		func(l *Layer) **string { return &l.SlurmAccount }, func(p *Profile) *string { return &p.SlurmAccount })
	// SettingSlurmQOS is the job's --qos.
	SettingSlurmQOS = slurm("qos", "", "",
		func(l *Layer) **string { return &l.SlurmQOS }, func(p *Profile) *string { return &p.SlurmQOS })
	// SettingSlurmConstraint is the job's --constraint.
	SettingSlurmConstraint = slurm("constraint", "", "",
		func(l *Layer) **string { return &l.SlurmConstraint }, func(p *Profile) *string { return &p.SlurmConstraint })
	// SettingSlurmExtra holds any other sbatch options, one word each.
	SettingSlurmExtra = &Setting{Key: "slurm_extra", Env: "KQ_SLURM_EXTRA", Kind: KindCommand, Block: "slurm", Sub: "extra",
		field: words(func(l *Layer) *[]string { return &l.SlurmExtra }, func(p *Profile) *[]string { return &p.SlurmExtra })}
)

// slurm makes a row of the slurm: block: YAML slurm: {sub: ...}, variable
// KQ_SLURM_SUB, flag as given.
func slurm(sub, flag, usage string, layer func(*Layer) **string, profile func(*Profile) *string) *Setting {
	return &Setting{Key: "slurm_" + sub, Env: "KQ_SLURM_" + strings.ToUpper(sub), Flag: flag, Usage: usage,
		Kind: KindString, Block: "slurm", Sub: sub, field: pointer(layer, profile)}
}

// Settings is the table: every setting a profile, defaults:, the
// environment or a flag may hold.
var Settings = []*Setting{
	SettingHost, SettingJump, SettingSSHConfig, SettingRuntimeDir, SettingKernel, SettingKernelIP,
	SettingWorkdir, SettingEnv, SettingLinger, SettingFrontend, SettingKeep, SettingKeepalive,
	SettingKeepaliveCount, SettingScheduler, SettingQueueTimeout,
	SettingSlurmPartition, SettingSlurmGres, SettingSlurmGPUs, SettingSlurmTime, SettingSlurmCPUs, SettingSlurmMem,
	SettingSlurmAccount, SettingSlurmQOS, SettingSlurmConstraint, SettingSlurmExtra,
}

// Lookup returns the setting whose YAML key is key (case-sensitive, as YAML
// is), or nil; a block's settings are found by LookupSub.
func Lookup(key string) *Setting {
	for _, s := range Settings {
		if s.Key == key && s.Block == "" {
			return s
		}
	}
	return nil
}

// IsBlock says key is a block of settings (slurm:).
func IsBlock(key string) bool { return len(SubKeys(key)) > 0 }

// LookupSub returns the setting sub of block (slurm: time), or nil.
func LookupSub(block, sub string) *Setting {
	for _, s := range Settings {
		if s.Block == block && s.Sub == sub {
			return s
		}
	}
	return nil
}

// SubKeys lists a block's keys in table order.
func SubKeys(block string) []string {
	var keys []string
	for _, s := range Settings {
		if s.Block == block && block != "" {
			keys = append(keys, s.Sub)
		}
	}
	return keys
}

// Keys lists the YAML keys in table order, a block once by its name.
func Keys() []string {
	var keys []string
	for _, s := range Settings {
		switch {
		case s.Block == "":
			keys = append(keys, s.Key)
		case !slices.Contains(keys, s.Block):
			keys = append(keys, s.Block)
		}
	}
	return keys
}

// pointerField is a setting held as *T in a Layer and as T in a Profile:
// a later layer that sets it replaces it.
type pointerField[T any] struct {
	layer   func(*Layer) **T
	profile func(*Profile) *T
}

func pointer[T any](layer func(*Layer) **T, profile func(*Profile) *T) pointerField[T] {
	return pointerField[T]{layer: layer, profile: profile}
}

func (f pointerField[T]) set(l *Layer, v any) bool {
	t, ok := v.(T)
	if ok {
		*f.layer(l) = &t
	}
	return ok
}

func (f pointerField[T]) get(l Layer) (any, bool) {
	if p := *f.layer(&l); p != nil {
		return *p, true
	}
	return nil, false
}

func (f pointerField[T]) apply(p *Profile, l Layer) {
	if v := *f.layer(&l); v != nil {
		*f.profile(p) = *v
	}
}

func (f pointerField[T]) resolved(p Profile) any { return *f.profile(&p) }

// wordsField is a list of words (the frontend argv, sbatch options): a
// later layer replaces it as a whole, and the profile gets its own copy so
// nobody edits a layer through it.
type wordsField struct {
	layer   func(*Layer) *[]string
	profile func(*Profile) *[]string
}

func words(layer func(*Layer) *[]string, profile func(*Profile) *[]string) wordsField {
	return wordsField{layer: layer, profile: profile}
}

func (f wordsField) set(l *Layer, v any) bool {
	w, ok := v.([]string)
	if ok {
		*f.layer(l) = append([]string(nil), w...)
	}
	return ok
}

func (f wordsField) get(l Layer) (any, bool) { w := *f.layer(&l); return w, w != nil }

func (f wordsField) apply(p *Profile, l Layer) {
	if w := *f.layer(&l); w != nil {
		*f.profile(p) = append([]string(nil), w...)
	}
}

func (f wordsField) resolved(p Profile) any { return *f.profile(&p) }

// varsField is env: layers merge name by name, so defaults: can set one
// variable and a profile another.
type varsField struct{}

func (varsField) set(l *Layer, v any) bool {
	vars, ok := v.(map[string]string)
	if ok {
		l.Env = maps.Clone(vars)
	}
	return ok
}

func (varsField) get(l Layer) (any, bool) { return l.Env, l.Env != nil }

func (varsField) apply(p *Profile, l Layer) {
	if p.Env == nil {
		p.Env = map[string]string{}
	}
	maps.Copy(p.Env, l.Env)
}

func (varsField) resolved(p Profile) any { return p.Env }
