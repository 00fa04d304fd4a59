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
	// KindNumber is an int of at least 0.
	KindNumber
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
	case KindNumber:
		return "number"
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
	// Doc explains the setting in "kq help config" and docs/config.md:
	// what it does, its default, how it combines. Every setting has one
	// (a test fails otherwise); backquotes mark literal text.
	Doc string
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
		Doc:   "The machine the kernel runs on: an ssh config `Host` alias or `[user@]host[:port]`. Its user, port, keys and known_hosts come from the ssh config as `ssh -G` shows them. Every profile needs one.",
		field: pointer(func(l *Layer) **string { return &l.Host }, func(p *Profile) *string { return &p.Host })}
	// SettingJump is the ProxyJump-style chain of jump hosts.
	SettingJump = &Setting{Key: "jump", Env: "KQ_JUMP", Flag: "jump", Kind: KindString,
		Usage: `jump hosts "HOST[,HOST]" like ssh -J ("none": ignore ssh config's ProxyJump)`,
		Doc:   "Jump hosts to reach `host` through, `HOST[,HOST]` as `ssh -J` takes them, all over one TCP connection; `none` ignores the ssh config's `ProxyJump`. Empty: the ssh config decides.",
		field: pointer(func(l *Layer) **string { return &l.Jump }, func(p *Profile) *string { return &p.Jump })}
	// SettingSSHConfig is the ssh_config file used instead of the user's.
	SettingSSHConfig = &Setting{Key: "ssh_config", Env: "KQ_SSH_CONFIG", Flag: "ssh-config", Shorthand: "F",
		Kind: KindString, Usage: "ssh config file to use instead of ~/.ssh/config (like ssh -F)",
		Doc:   "An ssh config file read instead of `~/.ssh/config` and `/etc/ssh/ssh_config`, as `ssh -F FILE` would; `~` is your home directory.",
		field: pointer(func(l *Layer) **string { return &l.SSHConfig }, func(p *Profile) *string { return &p.SSHConfig })}
	// SettingRuntimeDir is the remote directory of the connection file.
	SettingRuntimeDir = &Setting{Key: "runtime_dir", Env: "KQ_RUNTIME_DIR", Kind: KindString,
		Doc:   "The remote directory of the kernel's connection file and kq's files beside it; it must be yours and writable by nobody else. Empty: the server's `jupyter --runtime-dir`, else `~/.local/share/jupyter/runtime`.",
		field: pointer(func(l *Layer) **string { return &l.RuntimeDir }, func(p *Profile) *string { return &p.RuntimeDir })}
	// SettingKernel is the remote command that starts a kernel.
	SettingKernel = &Setting{Key: "kernel", Env: "KQ_KERNEL", Flag: "kernel", Kind: KindString,
		Usage: "remote kernel command for this run (kq appends -f FILE)",
		Doc:   "The remote command that starts the kernel; kq appends `-f FILE`. Read as a shell reads it (`VAR=1 python3 -m ipykernel_launcher` works); a trailing comment, `;`, `&` or `|` is refused. Default: `python3 -m ipykernel_launcher`.",
		field: pointer(func(l *Layer) **string { return &l.Kernel }, func(p *Profile) *string { return &p.Kernel })}
	// SettingKernelIP is where the kernel listens, as seen from the host.
	SettingKernelIP = &Setting{Key: "kernel_ip", Env: "KQ_KERNEL_IP", Kind: KindString,
		Doc:   "Where the kernel listens, as seen from `host`. Empty: 127.0.0.1 on `host` itself. An address (a compute node's): kq adds `--ip=ADDR` to the kernel command and forwards to it. `auto`: the address the kernel writes in its connection file.",
		field: pointer(func(l *Layer) **string { return &l.KernelIP }, func(p *Profile) *string { return &p.KernelIP })}
	// SettingWorkdir is the kernel's remote working directory.
	SettingWorkdir = &Setting{Key: "workdir", Env: "KQ_WORKDIR", Kind: KindString,
		Doc:   "The kernel's remote working directory, a directory name (never shell code). Empty: where the login starts, normally your home directory.",
		field: pointer(func(l *Layer) **string { return &l.Workdir }, func(p *Profile) *string { return &p.Workdir })}
	// SettingEnv is added to the kernel's environment, merged name by name
	// across layers.
	SettingEnv = &Setting{Key: "env", Kind: KindVars,
		Doc:   "Variables added to the kernel's environment, a mapping `NAME: value` whose names keep their case; `defaults:` and the profile merge name by name. Values travel on the SSH channel, never on a command line. No `KQ_*` variable or flag.",
		field: varsField{}}
	// SettingLinger is how long the kernel outlives a vanished kq.
	SettingLinger = &Setting{Key: "linger", Env: "KQ_LINGER", Kind: KindDuration,
		Doc:   "How long the remote kernel outlives a kq that vanished (killed, laptop gone, a link that never came back) before the server's watchdog stops it and removes its files. Default: 5m.",
		field: pointer(func(l *Layer) **time.Duration { return &l.Linger }, func(p *Profile) *time.Duration { return &p.Linger })}
	// SettingFrontend is the local frontend's argv.
	SettingFrontend = &Setting{Key: "frontend", Env: "KQ_FRONTEND", Flag: "frontend", Kind: KindCommand,
		Usage: `frontend for this run: qtconsole, console, or a command split like a shell would ("{connection_file}" is replaced)`,
		Doc:   "The local frontend's argv: a YAML list, or one string split as a shell would. `{kernel}` makes the frontend own the kernel (a transient kernelspec that runs `kq kernel`); `{connection_file}` gives it the local connection file instead. Words after `--` on the command line are appended. Shortcuts: `qtconsole` and `console` alone mean `jupyter qtconsole --kernel {kernel}` and `jupyter console --kernel {kernel}`. Default: `jupyter qtconsole --kernel {kernel}`.",
		field: frontendWords}
	// SettingKeep leaves the kernel running when the session ends.
	SettingKeep = &Setting{Key: "keep", Env: "KQ_KEEP", Flag: "keep", Kind: KindBool,
		Usage: "leave the kernel running when the session ends and print its connection file",
		Doc:   "Leave the remote kernel running when the session ends, until `kq stop`, and print its connection file. Default: false.",
		field: pointer(func(l *Layer) **bool { return &l.Keep }, func(p *Profile) *bool { return &p.Keep })}
	// SettingKeepalive is the interval of keepalive requests.
	SettingKeepalive = &Setting{Key: "keepalive", Env: "KQ_KEEPALIVE", Kind: KindInterval,
		Doc:   "The interval of SSH keepalive requests on every hop; a link that misses `keepalive_count` of them in a row counts as dead and kq reconnects. Unset or 0: the ssh config's `ServerAliveInterval`, else 5s.",
		field: pointer(func(l *Layer) **time.Duration { return &l.Keepalive }, func(p *Profile) *time.Duration { return &p.Keepalive })}
	// SettingKeepaliveCount is how many keepalives may go unanswered.
	SettingKeepaliveCount = &Setting{Key: "keepalive_count", Env: "KQ_KEEPALIVE_COUNT", Kind: KindCount,
		Doc:   "How many keepalives in a row may go unanswered before the link counts as dead. Unset: the ssh config's `ServerAliveCountMax`, else 3.",
		field: pointer(func(l *Layer) **int { return &l.KeepaliveCount }, func(p *Profile) *int { return &p.KeepaliveCount })}
	// SettingWarm is how many spare kernels kq keeps started on the host.
	SettingWarm = &Setting{Key: "warm", Env: "KQ_WARM", Kind: KindNumber,
		Doc: "Spare kernels kept started on the host, 0 or 1. With 1, a session takes the spare (no kernel start to wait for) and a new one starts behind it; " +
			"kq remembers that one on this machine (0600, in ~/.cache/kq/spares), so the next session claims it through its own ports before it runs anything on the host. " +
			"A spare no session takes is stopped after `linger`. For frontends given a connection file; a frontend that owns its kernel ({kernel}) brings its own key, so it gets a fresh kernel.",
		field: pointer(func(l *Layer) **int { return &l.Warm }, func(p *Profile) *int { return &p.Warm })}
	// SettingWarmCode is Python run in each kernel of a warm profile
	// before a session gets it.
	SettingWarmCode = &Setting{Key: "warm_code", Env: "KQ_WARM_CODE", Kind: KindString,
		Doc: "Python the kernels of this profile run as they start (`import torch, numpy`), one statement per line, so a spare is handed out with its imports done. " +
			"Needs ipykernel (it is passed as `--IPKernelApp.exec_lines`).",
		field: pointer(func(l *Layer) **string { return &l.WarmCode }, func(p *Profile) *string { return &p.WarmCode })}
	// SettingScheduler runs the kernel in a batch job ("slurm").
	SettingScheduler = &Setting{Key: "scheduler", Env: "KQ_SCHEDULER", Kind: KindString, Check: CheckScheduler,
		Doc:   "`slurm` runs the kernel in a batch job on a compute node, submitted with `sbatch` on the host (the login node) and cancelled on every exit; the `slurm:` block says what the job asks for. Unset: the kernel runs on the host itself.",
		field: pointer(func(l *Layer) **string { return &l.Scheduler }, func(p *Profile) *string { return &p.Scheduler })}
	// SettingQueueTimeout gives up on a job that is still queued.
	SettingQueueTimeout = &Setting{Key: "queue_timeout", Env: "KQ_QUEUE_TIMEOUT", Flag: "queue-timeout", Kind: KindDuration,
		Doc:   "Give up on a batch job that is still queued after this long, and cancel it. Unset: wait as long as kq runs.",
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
		Doc:   "Any other `sbatch` options, one word each (`[--exclusive, --mail-type=END]`).",
		field: words(func(l *Layer) *[]string { return &l.SlurmExtra }, func(p *Profile) *[]string { return &p.SlurmExtra })}
)

// slurm makes a row of the slurm: block: YAML slurm: {sub: ...}, variable
// KQ_SLURM_SUB, flag as given.
func slurm(sub, flag, usage string, layer func(*Layer) **string, profile func(*Profile) *string) *Setting {
	return &Setting{Key: "slurm_" + sub, Env: "KQ_SLURM_" + strings.ToUpper(sub), Flag: flag, Usage: usage,
		Doc: slurmDocs[sub], Kind: KindString, Block: "slurm", Sub: sub, field: pointer(layer, profile)}
}

// slurmDocs explain the slurm: block's settings, for kq help config.
var slurmDocs = map[string]string{
	"partition":  "The Slurm partition (`sbatch --partition`).",
	"gres":       "Generic resources for the job (`sbatch --gres`), such as `gpu:1`.",
	"gpus":       "GPUs for the job (`sbatch --gpus`), such as `1` or `a100:2`.",
	"time":       "The job's time limit (`sbatch --time`: `90`, `2:00:00`, `1-00:00:00`); required with `scheduler: slurm`, commonly set in `defaults:`. kq warns 10, 5 and 1 minutes before it.",
	"cpus":       "CPUs per task (`sbatch --cpus-per-task`).",
	"mem":        "Memory for the job (`sbatch --mem`), such as `32G`.",
	"account":    "The account the job is charged to (`sbatch --account`).",
	"qos":        "The job's quality of service (`sbatch --qos`).",
	"constraint": "Node features the job needs (`sbatch --constraint`).",
}

// Settings is the table: every setting a profile, defaults:, the
// environment or a flag may hold.
var Settings = []*Setting{
	SettingHost, SettingJump, SettingSSHConfig, SettingRuntimeDir, SettingKernel, SettingKernelIP,
	SettingWorkdir, SettingEnv, SettingLinger, SettingFrontend, SettingKeep, SettingKeepalive,
	SettingKeepaliveCount, SettingWarm, SettingWarmCode, SettingScheduler, SettingQueueTimeout,
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
// nobody edits a layer through it. With expand, a shortcut word
// (ExpandFrontend) is stored as the argv it stands for.
type wordsField struct {
	layer   func(*Layer) *[]string
	profile func(*Profile) *[]string
	expand  bool
}

// frontendWords is the frontend's field: words, shortcuts expanded.
var frontendWords = wordsField{layer: func(l *Layer) *[]string { return &l.Frontend },
	profile: func(p *Profile) *[]string { return &p.Frontend }, expand: true}

func words(layer func(*Layer) *[]string, profile func(*Profile) *[]string) wordsField {
	return wordsField{layer: layer, profile: profile}
}

func (f wordsField) set(l *Layer, v any) bool {
	w, ok := v.([]string)
	if ok {
		*f.layer(l) = append([]string(nil), w...)
		if f.expand {
			*f.layer(l) = ExpandFrontend(*f.layer(l))
		}
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
