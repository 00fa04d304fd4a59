package profiles

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	sshconfig "github.com/kevinburke/ssh_config"
)

// SSHSettings are the OpenSSH client settings of one host, as `ssh -G` prints
// them. kq dials with these so that a host works in kq exactly when it works
// with ssh.
type SSHSettings struct {
	// Alias is the name the user wrote (profile host or ssh_config Host).
	Alias string
	// HostName is the address actually dialled.
	HostName string
	// User is the login name on the host.
	User string
	// Port is the TCP port dialled.
	Port int
	// IdentityFiles are tried in order; missing files are skipped.
	IdentityFiles []string
	// IdentitiesOnly limits agent keys to the configured identity files.
	IdentitiesOnly bool
	// IdentityAgent is the agent socket ("" means SSH_AUTH_SOCK, "none" off).
	IdentityAgent string
	// UserKnownHostsFiles and GlobalKnownHostsFiles are read for host keys;
	// new keys would go to the first user file.
	UserKnownHostsFiles   []string
	GlobalKnownHostsFiles []string
	// StrictHostKeyChecking is "yes", "ask", "accept-new" or "no".
	StrictHostKeyChecking string
	// ConnectTimeout bounds TCP connect and handshake; 0 means kq's default.
	ConnectTimeout time.Duration
	// ProxyJump is the configured jump chain ("none" or empty for none).
	ProxyJump string
	// Issue 11, points 1 and 3.
	// ProxyCommand, when set, is run by the shell and its stdin and stdout
	// are the hop's connection; its tokens are expanded already. "" (or
	// ssh_config's "none") means none. Of ProxyJump and ProxyCommand the
	// one ssh_config gives first wins, as in OpenSSH.
	ProxyCommand string
	// HostKeyAlias, when set, is the name the host key is looked up and
	// recorded under in known_hosts instead of HostName and Port.
	HostKeyAlias string
	// BatchMode forbids prompts.
	BatchMode bool
	// PasswordAuthentication and KbdInteractiveAuthentication allow those
	// methods (OpenSSH's default: both yes).
	PasswordAuthentication       bool
	KbdInteractiveAuthentication bool
	// NumberOfPasswordPrompts is how often a password or passphrase is asked.
	NumberOfPasswordPrompts int
	// HashKnownHosts says new known_hosts lines get hashed host names.
	HashKnownHosts bool
	// ServerAliveInterval (0: off) and ServerAliveCountMax, as in ssh.
	ServerAliveInterval time.Duration
	ServerAliveCountMax int
	// Source says where these came from ("ssh -G" or "ssh_config parser").
	Source string
}

// Address is "hostname:port", the key known_hosts entries are matched on.
func (s SSHSettings) Address() string {
	host := s.HostName
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(s.Port)
}

// KnownHostsFiles lists every known_hosts file to consult, user files first.
func (s SSHSettings) KnownHostsFiles() []string {
	return append(append([]string(nil), s.UserKnownHostsFiles...), s.GlobalKnownHostsFiles...)
}

// SSHResolver turns a profile's host into SSH settings.
type SSHResolver struct {
	// SSHPath is the OpenSSH client; empty means look up "ssh" on PATH, and
	// "none" forces the Go parser (used where ssh is not installed).
	SSHPath string
	// Home expands "~"; empty means the current user's home directory.
	Home string
	// CurrentUser is the default login name; empty means the current user.
	CurrentUser string
}

// Resolve returns the settings for host ("[user@]host[:port]" or an alias),
// reading configFile instead of the user's ssh config when it is set.
func (r SSHResolver) Resolve(ctx context.Context, host, configFile string) (SSHSettings, error) {
	spec, err := ParseHost(host)
	if err != nil {
		return SSHSettings{}, fmt.Errorf("%w: host: %w", ErrInvalid, err)
	}
	configFile = r.expand(configFile)
	if configFile != "" {
		if _, err := os.Stat(configFile); err != nil {
			return SSHSettings{}, fmt.Errorf("%w: ssh config: %w", ErrInvalid, err)
		}
	}
	sshPath := r.SSHPath
	if sshPath == "" {
		sshPath, _ = exec.LookPath("ssh")
	}
	var s SSHSettings
	parser := sshPath == "" || sshPath == "none"
	if !parser {
		s, err = r.fromSSHG(ctx, sshPath, spec, configFile)
	} else {
		s, err = r.fromParser(spec, configFile)
	}
	if err != nil {
		return SSHSettings{}, err
	}
	s.Alias = spec.Host
	if err := r.expandTokens(&s, spec.Host, parser); err != nil {
		return SSHSettings{}, fmt.Errorf("%w: ssh config of %s: %w", ErrInvalid, spec.Host, err)
	}
	return s, nil
}

func (r SSHResolver) fromSSHG(ctx context.Context, sshPath string, spec HostSpec, configFile string) (SSHSettings, error) {
	args := []string{"-G"}
	if configFile != "" {
		args = append(args, "-F", configFile)
	}
	if spec.Port != 0 {
		args = append(args, "-p", strconv.Itoa(spec.Port))
	}
	if spec.User != "" {
		args = append(args, "-l", spec.User)
	}
	args = append(args, "--", spec.Host)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshPath, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return SSHSettings{}, fmt.Errorf("%w: ssh -G %s: %s", ErrInvalid, spec.Host, firstLine(msg))
	}
	return r.parseSSHG(out)
}

// parseSSHG reads `ssh -G` output: one "key value" per line, keys lowercase.
func (r SSHResolver) parseSSHG(out []byte) (SSHSettings, error) {
	s := SSHSettings{Source: "ssh -G", PasswordAuthentication: true, KbdInteractiveAuthentication: true, NumberOfPasswordPrompts: 3}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), " ")
		switch key {
		case "hostname":
			s.HostName = val
		case "user":
			s.User = val
		case "port":
			p, err := strconv.Atoi(val)
			if err != nil {
				return s, fmt.Errorf("ssh -G: port %q: %w", val, err)
			}
			s.Port = p
		case "identityfile": // raw: expandTokens expands its tokens
			s.IdentityFiles = append(s.IdentityFiles, r.expand(val))
		case "identitiesonly":
			s.IdentitiesOnly = val == "yes"
		case "identityagent":
			s.IdentityAgent = r.expand(val)
		case "userknownhostsfile": // expanded by ssh, blanks not quoted
			s.UserKnownHostsFiles = r.expandAll(dropNone(splitPrinted(val)))
		case "globalknownhostsfile":
			s.GlobalKnownHostsFiles = r.expandAll(dropNone(splitPrinted(val)))
		case "stricthostkeychecking":
			s.StrictHostKeyChecking = normalizeStrict(val)
		case "connecttimeout":
			if n, err := strconv.Atoi(val); err == nil {
				s.ConnectTimeout = time.Duration(n) * time.Second
			}
		case "proxyjump":
			s.ProxyJump = val
		case "batchmode":
			s.BatchMode = val == "yes"
		case "passwordauthentication":
			s.PasswordAuthentication = val == "yes"
		case "kbdinteractiveauthentication":
			s.KbdInteractiveAuthentication = val == "yes"
		case "numberofpasswordprompts":
			if n, err := strconv.Atoi(val); err == nil {
				s.NumberOfPasswordPrompts = n
			}
		case "hashknownhosts":
			s.HashKnownHosts = val == "yes"
		case "serveraliveinterval":
			if n, err := strconv.Atoi(val); err == nil {
				s.ServerAliveInterval = time.Duration(n) * time.Second
			}
		case "serveralivecountmax":
			if n, err := strconv.Atoi(val); err == nil {
				s.ServerAliveCountMax = n
			}
		}
		parseSSHGProxy(&s, key, val)
	}
	return s, sc.Err()
}

// parseSSHGProxy reads the keys of issue 11, points 1, 3 and 4: ssh -G
// prints ProxyCommand raw (expandTokens expands it) and only the one of
// ProxyJump and ProxyCommand that wins.
func parseSSHGProxy(s *SSHSettings, key, val string) {
	switch key {
	case "proxycommand":
		s.ProxyCommand = val
	case "hostkeyalias":
		s.HostKeyAlias = val
	}
}

// fromParser is Resolve without ssh installed: the Go ssh_config parser,
// with OpenSSH's defaults filled in where the file says nothing.
func (r SSHResolver) fromParser(spec HostSpec, configFile string) (SSHSettings, error) {
	l, err := newSSHLookup(spec.Host, configFile, r.home())
	if err != nil {
		return SSHSettings{}, err
	}
	s := SSHSettings{Source: "ssh_config parser"}
	if err := r.parserAddress(&s, spec, l); err != nil {
		return s, err
	}
	r.parserFiles(&s, l)
	parserOptions(&s, l)
	if err := errors.Join(l.errs...); err != nil {
		return s, fmt.Errorf("%w: ssh config: %w", ErrInvalid, err)
	}
	return s, nil
}

// sshLookup answers ssh_config questions about one host and collects the
// parser's errors, so that one bad line is reported with the others.
type sshLookup struct {
	host    string
	configs []*sshconfig.Config // for values with their quotes (rawAll)
	get     func(key string) (string, error)
	getAll  func(key string) ([]string, error)
	errs    []error
}

// newSSHLookup reads configFile, or the user's ssh config when it is ""
// (home/.ssh/config, then /etc/ssh/ssh_config).
func newSSHLookup(host, configFile, home string) (*sshLookup, error) {
	l := &sshLookup{
		host:   host,
		get:    func(key string) (string, error) { return sshconfig.GetStrict(host, key) },
		getAll: func(key string) ([]string, error) { return sshconfig.GetAllStrict(host, key) },
	}
	if configFile == "" {
		l.configs = defaultConfigs(home)
		return l, nil
	}
	f, err := os.Open(configFile)
	if err != nil {
		return nil, fmt.Errorf("%w: ssh config: %w", ErrInvalid, err)
	}
	cfg, err := sshconfig.Decode(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: ssh config %s: %w", ErrInvalid, configFile, err)
	}
	l.get = func(key string) (string, error) {
		v, err := cfg.Get(host, key)
		if v == "" && err == nil {
			v = sshconfig.Default(key)
		}
		return v, err
	}
	l.getAll = func(key string) ([]string, error) { return cfg.GetAll(host, key) }
	l.configs = []*sshconfig.Config{cfg}
	return l, nil
}

func (l *sshLookup) str(key string) string {
	v, err := l.get(key)
	l.errs = append(l.errs, err)
	return v
}

func (l *sshLookup) all(key string) []string {
	v, err := l.getAll(key)
	l.errs = append(l.errs, err)
	return v
}

func (l *sshLookup) yes(key string) bool { return strings.EqualFold(l.str(key), "yes") }

// parserAddress fills host name, user and port; what the profile's host
// says wins over ssh_config, as on ssh's command line.
func (r SSHResolver) parserAddress(s *SSHSettings, spec HostSpec, l *sshLookup) error {
	s.HostName = l.str("HostName")
	if s.HostName == "" {
		s.HostName = spec.Host
	}
	s.HostName = strings.ReplaceAll(s.HostName, "%h", spec.Host)
	s.User = spec.User
	if u := l.str("User"); s.User == "" {
		s.User = u
	}
	if s.User == "" {
		s.User = r.currentUser()
	}
	s.Port = spec.Port
	if s.Port != 0 {
		return nil
	}
	s.Port = 22
	if p := l.str("Port"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("%w: ssh config: Port %q: %w", ErrInvalid, p, err)
		}
		s.Port = n
	}
	return nil
}

// parserFiles fills identity and known_hosts files, with OpenSSH's
// defaults. Values are split as OpenSSH splits them (quotes keep blanks)
// and left with their tokens, which expandTokens expands.
func (r SSHResolver) parserFiles(s *SSHSettings, l *sshLookup) {
	for _, id := range l.rawAll("IdentityFile") {
		s.IdentityFiles = append(s.IdentityFiles, l.firstArg(id))
	}
	if len(s.IdentityFiles) == 0 {
		for _, n := range []string{"id_rsa", "id_ecdsa", "id_ed25519"} {
			s.IdentityFiles = append(s.IdentityFiles, "~/.ssh/"+n)
		}
	}
	s.IdentitiesOnly = l.yes("IdentitiesOnly")
	if v := l.rawFirst("IdentityAgent"); v != "" {
		s.IdentityAgent = l.firstArg(v)
	}
	s.UserKnownHostsFiles = dropNone(l.args(l.rawFirst("UserKnownHostsFile")))
	if len(s.UserKnownHostsFiles) == 0 {
		s.UserKnownHostsFiles = []string{"~/.ssh/known_hosts", "~/.ssh/known_hosts2"}
	}
	s.GlobalKnownHostsFiles = r.expandAll(dropNone(l.args(l.rawFirst("GlobalKnownHostsFile"))))
	if len(s.GlobalKnownHostsFiles) == 0 && runtime.GOOS != "windows" {
		s.GlobalKnownHostsFiles = []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}
	}
	s.ProxyJump, s.ProxyCommand = l.proxy()
	s.HostKeyAlias = l.str("HostKeyAlias")
}

// parserOptions fills the remaining options, with OpenSSH's defaults.
func parserOptions(s *SSHSettings, l *sshLookup) {
	s.StrictHostKeyChecking = normalizeStrict(l.str("StrictHostKeyChecking"))
	if n, err := strconv.Atoi(l.str("ConnectTimeout")); err == nil {
		s.ConnectTimeout = time.Duration(n) * time.Second
	}
	s.BatchMode = l.yes("BatchMode")
	s.PasswordAuthentication = !strings.EqualFold(l.str("PasswordAuthentication"), "no")
	s.KbdInteractiveAuthentication = !strings.EqualFold(l.str("KbdInteractiveAuthentication"), "no")
	s.NumberOfPasswordPrompts = 3
	if n, err := strconv.Atoi(l.str("NumberOfPasswordPrompts")); err == nil {
		s.NumberOfPasswordPrompts = n
	}
	s.HashKnownHosts = l.yes("HashKnownHosts")
	if n, err := strconv.Atoi(l.str("ServerAliveInterval")); err == nil {
		s.ServerAliveInterval = time.Duration(n) * time.Second
	}
	if n, err := strconv.Atoi(l.str("ServerAliveCountMax")); err == nil {
		s.ServerAliveCountMax = n
	}
}

func normalizeStrict(v string) string {
	switch strings.ToLower(v) {
	case "yes", "true":
		return "yes"
	case "no", "false", "off":
		return "no"
	case "accept-new":
		return "accept-new"
	default:
		return "ask"
	}
}

func (r SSHResolver) home() string {
	if r.Home != "" {
		return r.Home
	}
	h, _ := os.UserHomeDir()
	return h
}

func (r SSHResolver) currentUser() string {
	if r.CurrentUser != "" {
		return r.CurrentUser
	}
	for _, k := range []string{"USER", "LOGNAME", "USERNAME"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "root"
}

// expand replaces a leading "~" with the home directory, as ssh does for
// file options.
func (r SSHResolver) expand(p string) string {
	if p == "~" {
		return r.home()
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(r.home(), p[2:])
	}
	return p
}

// expandAll expands a leading "~" in each path.
func (r SSHResolver) expandAll(paths []string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, r.expand(p))
	}
	return out
}

// dropNone drops OpenSSH's "none" from a file list.
func dropNone(paths []string) []string {
	var out []string
	for _, p := range paths {
		if p != "none" && p != "" {
			out = append(out, p)
		}
	}
	return out
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// maxJumpDepth bounds ProxyJump chains (and catches loops in ssh config).
const maxJumpDepth = 8

// ResolveChain returns the settings of every hop from the first jump host
// to host itself (last). jump is the profile's or the command line's chain
// ("a,b", each "[user@]host[:port]" or an alias); "" means the host's own
// ProxyJump from ssh config, and "none" means no jump at all. As with ssh,
// the first jump host's own ProxyJump is followed too, so a config that
// reaches login through bastion keeps working.
func (r SSHResolver) ResolveChain(ctx context.Context, host, jump, configFile string) ([]SSHSettings, error) {
	return r.resolveChain(ctx, host, jump, configFile, 0)
}

func (r SSHResolver) resolveChain(ctx context.Context, host, jump, configFile string, depth int) ([]SSHSettings, error) {
	if depth > maxJumpDepth {
		return nil, fmt.Errorf("%w: ProxyJump chain longer than %d hops (a loop in ssh config?)", ErrInvalid, maxJumpDepth)
	}
	target, err := r.Resolve(ctx, host, configFile)
	if err != nil {
		return nil, err
	}
	explicit := jump != ""
	if !explicit {
		jump = target.ProxyJump
	}
	hops, err := SplitJump(jump)
	if err != nil {
		return nil, err
	}
	if len(hops) == 0 {
		return []SSHSettings{target}, nil
	}
	// A hop reached through a jump host has no ProxyCommand: OpenSSH
	// reaches it with "ssh -J ... -W", and a -J on the command line wins
	// over the hop's own ProxyCommand. Only the chain's first hop runs one.
	target.ProxyCommand = ""
	// The first jump is reached by its own means (its ProxyJump, if any);
	// the later ones are reached through the earlier ones.
	chain, err := r.resolveChain(ctx, hops[0], "", configFile, depth+1)
	if err != nil {
		return nil, fmt.Errorf("jump host %s: %w", hops[0], err)
	}
	for _, h := range hops[1:] {
		s, err := r.Resolve(ctx, h, configFile)
		if err != nil {
			return nil, fmt.Errorf("jump host %s: %w", h, err)
		}
		s.ProxyCommand = ""
		chain = append(chain, s)
	}
	return append(chain, target), nil
}

// SplitJump parses a ProxyJump value: comma-separated hops, each
// "[user@]host[:port]" or "ssh://[user@]host[:port]"; "none" and "" mean no
// jump.
func SplitJump(jump string) ([]string, error) {
	jump = strings.TrimSpace(jump)
	if jump == "" || strings.EqualFold(jump, "none") {
		return nil, nil
	}
	var hops []string
	for _, h := range strings.Split(jump, ",") {
		h = strings.TrimPrefix(strings.TrimSpace(h), "ssh://")
		if _, err := ParseHost(h); err != nil {
			return nil, fmt.Errorf("%w: jump %q: %w", ErrInvalid, jump, err)
		}
		hops = append(hops, h)
	}
	return hops, nil
}
