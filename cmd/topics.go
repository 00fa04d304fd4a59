package cmd

import (
	"strings"

	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/cobra"
)

// Help topics (issue 12 point 6): "kq help config", "kq help profiles",
// "kq help exit-codes". The config topic is built from the settings table,
// so a new setting is documented by its row's Doc alone.

// helpTopic is one "kq help NAME" page, also written to docs/FILE.
type helpTopic struct {
	name, short string
	title, file string // the Markdown page's title and file under docs/
	doc         func() helpDoc
}

// helpTopics lists the topics in the order kq --help shows them.
func helpTopics() []helpTopic {
	return []helpTopic{
		{"config", "The config file: where kq looks, precedence, every setting", "Configuration", "config.md", configHelp},
		{"profiles", "Profiles: a host and how to reach it, a kernel, a frontend", "Profiles", "profiles.md", profilesHelp},
		{"exit-codes", "What kq's exit codes mean", "Exit codes", "exit-codes.md", exitCodesHelp},
	}
}

// addHelpTopics makes each topic a help-only command of root. Where a
// command of that name exists ("kq config ..."), the topic becomes the
// rest of its long help instead, so "kq help NAME" shows both.
func addHelpTopics(root *cobra.Command) {
	for _, t := range helpTopics() {
		text := t.doc().plain()
		if c, _, err := root.Find([]string{t.name}); err == nil && c != root {
			long := c.Long
			if long == "" {
				long = c.Short
			}
			c.Long = strings.TrimRight(long, "\n") + "\n\n" + text
			continue
		}
		root.AddCommand(&cobra.Command{Use: t.name, Short: t.short, Long: text})
	}
}

// kindDocs says how to write a value of each kind; every kind the table
// uses needs one (TestHelpConfig).
var kindDocs = map[profiles.Kind]string{
	profiles.KindString:   "text",
	profiles.KindDuration: "a duration: `30s`, `5m`, `1h30m`",
	profiles.KindInterval: "a duration greater than zero (in YAML, 0 means: as the ssh config says)",
	profiles.KindBool:     "`true` or `false` (in `KQ_*`: also 1/0, yes/no, on/off)",
	profiles.KindCount:    "a whole number, at least 1",
	profiles.KindNumber:   "a whole number, at least 0",
	profiles.KindCommand:  "a YAML list of words, or one string split as a shell would split it",
	profiles.KindVars:     "a YAML mapping of variable names to strings",
}

// configHelp is "kq help config".
func configHelp() helpDoc {
	settings := &docTable{head: []string{"key", "type", "environment", "flag", "meaning"}, defs: true}
	var flags []string
	used := map[profiles.Kind]bool{}
	for _, s := range profiles.Settings {
		flag := ""
		if s.Flag != "" {
			flag = "`--" + s.Flag + "`"
			if s.Shorthand != "" {
				flag = "`-" + s.Shorthand + "/--" + s.Flag + "`"
			}
			flags = append(flags, flag)
		}
		env := ""
		if s.Env != "" {
			env = "`" + s.Env + "`"
		}
		settings.rows = append(settings.rows, []string{"`" + s.Key + "`", s.Kind.String(), env, flag, s.Doc})
		used[s.Kind] = true
	}
	var kinds []string
	for k := profiles.Kind(1); len(kinds) < len(used) && k < 64; k++ {
		if used[k] {
			kinds = append(kinds, "`"+k.String()+"`: "+kindDocs[k])
		}
	}
	return helpDoc{
		{para: "kq reads one YAML file with two mappings: `defaults:`, settings for every profile, and `profiles:`, settings by profile name (see `kq help profiles`)."},
		{heading: "Where kq looks"},
		{steps: []string{"`--config FILE`", "`$KQ_CONFIG`", "`$XDG_CONFIG_HOME/kq/config.yaml`", "`~/.config/kq/config.yaml`"}},
		{para: "The first one set is read. A file named by `--config` or `KQ_CONFIG` must exist; the default file may be absent, which is an empty config. Keep the file mode 0600: `env:` may hold secrets, and kq warns when others can read it."},
		{heading: "Precedence"},
		{para: "Each setting comes from the first of these that sets it:"},
		{steps: []string{"a flag on the command line: " + strings.Join(flags, ", "),
			"an environment variable: `KQ_HOST`, `KQ_KERNEL`, ... (the table below)",
			"the profile's own key",
			"`defaults:`",
			"kq's built-in default"}},
		{para: "`env:` is the exception: its variables merge name by name, so `defaults:` can set one and a profile another."},
		{heading: "Settings"},
		{table: settings},
		{heading: "Types"},
		{items: kinds},
		{heading: "Errors"},
		{para: "An unknown key, a value of the wrong type or an unknown profile is an error (exit code 2) naming the file, the line and the key; profile names and keys are case-sensitive."},
		{heading: "Example"},
		{code: exampleConfig, lang: "yaml"},
	}
}

// exampleConfig is the example of "kq help config"; TestHelpConfig loads
// it and resolves each of its profiles.
const exampleConfig = `defaults:
  linger: 10m
  env: {PYTHONUNBUFFERED: "1"}
profiles:
  gpu:
    host: gpu-server             # an ssh config alias, or [user@]host[:port]
    workdir: ~/project
    kernel: ~/venv/bin/python -m ipykernel_launcher
    env: {CUDA_VISIBLE_DEVICES: "0"}
  lab:
    host: alice@node7.lab.example.org:2222
    jump: login.lab.example.org
    frontend: jupyter console --existing {connection_file}
`

// profilesHelp is "kq help profiles".
func profilesHelp() helpDoc {
	return helpDoc{
		{para: "A profile names one way of getting a kernel: the machine and how to reach it (`host`, `jump`, `ssh_config`), what to start there (`kernel`, `workdir`, `env`, `runtime_dir`, `kernel_ip`) and what to run here (`frontend`). `kq NAME` starts a session with it, and every command that takes a PROFILE takes the same names; Tab completes them. Profiles live under `profiles:` in the config file (`kq help config`); names keep their case and may contain dots and dashes (`gpu.example.org`). A profile named like a kq command runs with `kq run NAME`."},
		{heading: "A host instead of a profile"},
		{para: "Where a PROFILE goes, a name that is no profile in the config is taken as a host: an ssh config alias or `[user@]host[:port]`, with `defaults:` and kq's built-in defaults. So `kq myserver` needs no config file at all when `ssh myserver` works."},
		{heading: "The ssh config"},
		{para: "kq reaches hosts as `ssh` does. `host` may be a `Host` alias of your ssh config, and its HostName, User, Port, IdentityFile, ProxyJump, known_hosts files and the rest come from `ssh -G HOST` (which applies Include and Match), or from kq's own reading of the same files where `ssh` is not installed. `ssh_config` (or `-F`) reads another file instead, as `ssh -F` does, and `jump` replaces the ssh config's ProxyJump. So a host that `ssh HOST` reaches is a complete profile with `host: HOST` alone. kq never writes your ssh config, and adds to known_hosts only what `StrictHostKeyChecking` allows."},
		{heading: "Frontends: {kernel} or {connection_file}"},
		{para: "`frontend` is the local program of a session, with one of two placeholders:"},
		{items: []string{
			"`{kernel}`: the frontend owns the kernel. kq writes a transient kernelspec that runs `kq kernel PROFILE`, and the frontend's own kernel manager starts, interrupts, restarts and stops the remote kernel as if it were local. The default is `jupyter qtconsole --kernel {kernel}`; `jupyter console --kernel {kernel}` works the same way.",
			"`{connection_file}`: kq starts the kernel and gives the frontend a local connection file whose ports it forwards, as in `jupyter console --existing {connection_file}`. The frontend does not own the kernel: Ctrl-C at kq's terminal or `kq interrupt` interrupts it, `kq restart` restarts it.",
		}},
		{para: "`kq attach` always hands over a connection file (a `{kernel}` frontend runs in its `--existing` form). `--frontend` replaces the frontend for one run; words after `--` are appended to it."},
		{heading: "Example"},
		{code: `kq gpu                                  # the profile gpu
kq gpu -- --style=monokai               # with extra frontend arguments
kq run --frontend "jupyter console --existing {connection_file}" gpu
kq alice@10.0.0.7:2222                  # a host, no profile
kq kernelspec install gpu               # gpu in JupyterLab's and VS Code's pickers`, lang: "sh"},
	}
}
