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
	// CertificateFiles are user certificates (CertificateFile), offered
	// before the identities; when there are none, each IdentityFile's
	// "-cert.pub" is offered after its key, as ssh does.
	CertificateFiles []string
	// UserKnownHostsFiles and GlobalKnownHostsFiles are read for host keys;
	// new keys would go to the first user file.
	UserKnownHostsFiles   []string
	GlobalKnownHostsFiles []string
	// StrictHostKeyChecking is "yes", "ask", "accept-new" or "no".
	StrictHostKeyChecking string
	// RevokedHostKeys is a file of revoked host keys ("" or "none": none).
	RevokedHostKeys string
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
	// GSSAPIAuthentication allows Kerberos login (gssapi-with-mic);
	// GSSAPIDelegateCredentials asks to forward the ticket (kq cannot, and
	// says so with -v); GSSAPITrustDNS takes the service principal's host
	// from reverse DNS, as ssh's GSSAPITrustDns does.
	GSSAPIAuthentication      bool
	GSSAPIDelegateCredentials bool
	GSSAPITrustDNS            bool
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
	// Issue 11 points 5, 6, 8 (algorithm policy, methods and their order,
	// what kq cannot do). Algorithm lists are OpenSSH's, already resolved
	// from "+", "-" and "^"; nil means x/crypto's defaults.
	KexAlgorithms, Ciphers, MACs, HostKeyAlgorithms, PubkeyAcceptedAlgorithms []string
	// NoPubkeyAuthentication is "PubkeyAuthentication no" (negated so that
	// the zero value is OpenSSH's default).
	NoPubkeyAuthentication bool
	// PreferredAuthentications is the order methods are tried in; nil
	// means OpenSSH's order. A method not listed is not used.
	PreferredAuthentications []string
	// ConnectionAttempts is how often the TCP connect is tried (1 a second).
	ConnectionAttempts int
	// AddressFamily is "any", "inet" or "inet6".
	AddressFamily string
	// BindAddress is the local address of the TCP connection ("" any).
	BindAddress string
	// NoTCPKeepAlive is "TCPKeepAlive no".
	NoTCPKeepAlive bool
	// PKCS11Provider is the configured provider ("" or "none": none);
	// kq cannot load one and says so.
	PKCS11Provider string
	// Unhonoured lists the options set for this host that kq does not
	// act on, each with what that means (see profiles/unsupported.go).
	Unhonoured []Unhonoured
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
	applyPolicyDefaults(&s)
	seen := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), " ")
		seen[key] = append(seen[key], val)
		// Issue 11 points 5 and 6 (algorithms, methods, TCP): policy.go.
		if parsePolicyOption(&s, key, val) {
			continue
		}
		if err := r.parseSSHGLine(&s, key, val); err != nil {
			return s, err
		}
		parseSSHGProxy(&s, key, val)
	}
	s.Unhonoured = FindUnhonoured(func(key string) []string { return seen[key] })
	return s, sc.Err()
}

// parseSSHGLine applies one `ssh -G` line of the options before issue 11.
func (r SSHResolver) parseSSHGLine(s *SSHSettings, key, val string) error {
	switch key {
	case "hostname":
		s.HostName = val
	case "user":
		s.User = val
	case "port":
		p, err := strconv.Atoi(val)
		if err != nil {
			return fmt.Errorf("ssh -G: port %q: %w", val, err)
		}
		s.Port = p
	case "identityfile":
		s.IdentityFiles = append(s.IdentityFiles, r.expand(val))
	case "identitiesonly":
		s.IdentitiesOnly = val == "yes"
	case "identityagent":
		s.IdentityAgent = r.expand(val)
	case "certificatefile": // issue 11, point 2: user certificates
		s.CertificateFiles = append(s.CertificateFiles, r.expand(val))
	case "userknownhostsfile": // expanded by ssh, blanks not quoted
		s.UserKnownHostsFiles = r.expandAll(dropNone(splitPrinted(val)))
	case "globalknownhostsfile":
		s.GlobalKnownHostsFiles = r.expandAll(dropNone(splitPrinted(val)))
	case "stricthostkeychecking":
		s.StrictHostKeyChecking = normalizeStrict(val)
	case "revokedhostkeys":
		s.RevokedHostKeys = r.expand(val)
	case "connecttimeout":
		if n, err := strconv.Atoi(val); err == nil {
			s.ConnectTimeout = time.Duration(n) * time.Second
		}
	case "proxyjump":
		s.ProxyJump = val
	case "batchmode":
		s.BatchMode = val == "yes"
	case "gssapiauthentication", "gssapidelegatecredentials", "gssapitrustdns":
		parseGSSAPIOption(s, key, val)
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
	return nil
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
	l, err := r.newSSHLookup(spec, configFile)
	if err != nil {
		return SSHSettings{}, err
	}
	s := SSHSettings{Source: "ssh_config parser"}
	if err := r.parserAddress(&s, spec, l); err != nil {
		return s, err
	}
	r.parserFiles(&s, l)
	parserOptions(&s, l)
	parserPolicy(&s, l)
	if err := errors.Join(l.errs...); err != nil {
		return s, fmt.Errorf("%w: ssh config: %w", ErrInvalid, err)
	}
	return s, nil
}

// sshLookup answers ssh_config questions about one host and collects the
// parser's errors, so that one bad line is reported with the others.
type sshLookup struct {
	raw     func(key string) (string, error) // without the parser's defaults
	host    string
	configs []*sshconfig.Config // for values with their quotes (rawAll)
	get     func(key string) (string, error)
	getAll  func(key string) ([]string, error)
	errs    []error
}

// newSSHLookup reads configFile, or the user's and the system's ssh config
// when it is "", with Include inlined and Match evaluated (match.go).
func (r SSHResolver) newSSHLookup(spec HostSpec, configFile string) (*sshLookup, error) {
	files := []configSource{{r.expand("~/.ssh/config"), r.expand("~/.ssh")}, {"/etc/ssh/ssh_config", "/etc/ssh"}}
	if configFile != "" {
		files = []configSource{{configFile, r.expand("~/.ssh")}}
	}
	mc := &matchContext{originalHost: spec.Host, host: spec.Host, user: spec.User, userSet: spec.User != "",
		localUser: r.currentUser()}
	if mc.user == "" {
		mc.user = r.currentUser()
	}
	cfg, err := r.decodeConfigs(files, mc)
	if err != nil {
		return nil, err
	}
	host := spec.Host
	return &sshLookup{
		host:    host,
		configs: []*sshconfig.Config{cfg},
		raw:     func(key string) (string, error) { return cfg.Get(host, key) },
		get: func(key string) (string, error) {
			v, err := cfg.Get(host, key)
			if v == "" && err == nil {
				v = sshconfig.Default(key)
			}
			return v, err
		},
		getAll: func(key string) ([]string, error) { return cfg.GetAll(host, key) },
	}, nil
}

// decodeConfigs flattens and parses files for mc.
func (r SSHResolver) decodeConfigs(files []configSource, mc *matchContext) (*sshconfig.Config, error) {
	data, err := flattenConfigs(files, mc)
	if err != nil {
		return nil, fmt.Errorf("%w: ssh config: %w", ErrInvalid, err)
	}
	cfg, err := decodeFlat(data)
	if err != nil {
		return nil, fmt.Errorf("%w: ssh config %s: %w", ErrInvalid, files[0].path, err)
	}
	return cfg, nil
}

func (l *sshLookup) str(key string) string {
	v, err := l.get(key)
	l.errs = append(l.errs, err)
	return v
}

// rawStr is the value the files set, "" when none: the parser's own
// defaults are older than OpenSSH's (CBC ciphers, ssh-rsa).
func (l *sshLookup) rawStr(key string) string {
	v, err := l.raw(key)
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
	// Issue 11, point 2: user certificates.
	for _, c := range l.all("CertificateFile") {
		s.CertificateFiles = append(s.CertificateFiles, r.expand(c))
	}
	s.IdentitiesOnly = l.yes("IdentitiesOnly")
	if v := l.rawFirst("IdentityAgent"); v != "" {
		s.IdentityAgent = l.firstArg(v)
	}
	if v := l.str("RevokedHostKeys"); v != "" && v != "none" {
		s.RevokedHostKeys = r.expand(v)
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
	// Kerberos (GSSAPI) login; OpenSSH's defaults are all no.
	s.GSSAPIAuthentication = l.yes("GSSAPIAuthentication")
	s.GSSAPIDelegateCredentials = l.yes("GSSAPIDelegateCredentials")
	s.GSSAPITrustDNS = l.yes("GSSAPITrustDns")
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

// parseGSSAPIOption reads the Kerberos (GSSAPI) login settings.
func parseGSSAPIOption(s *SSHSettings, key, val string) {
	switch key {
	case "gssapiauthentication":
		s.GSSAPIAuthentication = val == "yes"
	case "gssapidelegatecredentials":
		s.GSSAPIDelegateCredentials = val == "yes"
	case "gssapitrustdns":
		s.GSSAPITrustDNS = val == "yes"
	}
}
