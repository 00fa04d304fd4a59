package profiles

import (
	"fmt"
	"strings"
)

// Unhonoured is one ssh_config option set for a host that kq does not act
// on. kq says so (in --dry-run and with -v) instead of silently doing
// something other than ssh would.
type Unhonoured struct {
	// Option is the option's name as ssh_config spells it.
	Option string
	// Value is what the config set.
	Value string
	// Why says what kq does instead and whether that matters.
	Why string
}

// String is "Option Value: why".
func (u Unhonoured) String() string {
	return fmt.Sprintf("%s %s: %s", u.Option, u.Value, u.Why)
}

// unhonouredOption is one row of the table below: an option, the values
// that mean "not in use" (OpenSSH's defaults as ssh -G prints them, and
// their synonyms), and what kq does instead.
type unhonouredOption struct {
	name  string
	unset []string // values that mean kq is doing what ssh would; nil: any value is "set"
	why   string
}

// unhonouredOptions are the options kq does not honour. Options that only
// matter together with one of these (ExitOnForwardFailure, GatewayPorts,
// ControlPersist, ForwardX11Trusted...), options of ssh's command line
// (StdinNull, ForkAfterAuthentication, SessionType, EscapeChar) and ones
// that change only ssh's own output (LogLevel, VisualHostKey) are left out:
// they change nothing kq does. UpdateHostKeys is left out too: ssh -G
// prints OpenSSH's default "true" whether or not it was set, and kq's
// never learning new host keys only means ssh may later do it instead.
var unhonouredOptions = []unhonouredOption{
	{"ForwardAgent", []string{"no", "false"}, "kq never forwards the agent; nothing on the host can use your keys"},
	{"LocalForward", nil, "kq forwards only the kernel's ports; make other tunnels with ssh"},
	{"RemoteForward", nil, "kq forwards only the kernel's ports; make other tunnels with ssh"},
	{"DynamicForward", nil, "kq forwards only the kernel's ports; make other tunnels with ssh"},
	{"ControlMaster", []string{"no", "false"}, "kq makes its own connection, never a shared one (it authenticates once more)"},
	{"ControlPath", []string{"none"}, "kq makes its own connection, never a shared one (it authenticates once more)"},
	{"RequestTTY", []string{"auto", "no", "false"}, "kq runs its own command, without a terminal"},
	{"RemoteCommand", []string{"none"}, "kq runs its own command instead"},
	{"SendEnv", nil, "not sent; give the kernel's environment with the profile's env: setting"},
	{"SetEnv", nil, "not sent; give the kernel's environment with the profile's env: setting"},
	{"Compression", []string{"no", "false"}, "x/crypto has no compression: traffic goes uncompressed"},
	{"CanonicalizeHostname", []string{"no", "false"}, "kq dials HostName as resolved (ssh -G's canonical name; the Go parser does not canonicalize)"},
	{"VerifyHostKeyDNS", []string{"no", "false"}, "host keys are checked against known_hosts only, never SSHFP records"},
	{"KnownHostsCommand", []string{"none"}, "not run: only the known_hosts files are read, so a host known only through it is unknown to kq"},
	{"CheckHostIP", []string{"no", "false"}, "the host's IP address is not checked against known_hosts (its name and port are)"},
	{"NoHostAuthenticationForLocalhost", []string{"no", "false"}, "kq checks localhost's host key like any other"},
	{"HostbasedAuthentication", []string{"no", "false"}, "not offered: x/crypto has no host-based authentication"},
	{"AddKeysToAgent", []string{"no", "false"}, "kq never adds keys to the agent"},
	{"SecurityKeyProvider", []string{"internal"}, "kq uses FIDO keys only through ssh-agent"},
	{"ForwardX11", []string{"no", "false"}, "no X11 forwarding"},
	{"Tunnel", []string{"no", "false"}, "no tun/tap forwarding"},
	{"LocalCommand", []string{"none"}, "not run"},
	{"BindInterface", []string{"none"}, "not supported: set BindAddress instead"},
	{"RekeyLimit", []string{"0 0", "default none"}, "x/crypto rekeys at its own limits"},
	{"RequiredRSASize", []string{"1024"}, "x/crypto enforces its own minimum (1024 bits) on RSA keys"},
	{"FingerprintHash", []string{"sha256"}, "kq shows SHA256 fingerprints"},
	{"IPQoS", []string{"lowdelay throughput", "af21 cs1"}, "kq leaves the TOS/DSCP bits as the system sets them"},
}

// FindUnhonoured lists the options in the table that get (all values of a
// lowercase option name, as ssh -G prints them) reports in use.
func FindUnhonoured(get func(key string) []string) []Unhonoured {
	var out []Unhonoured
	for _, o := range unhonouredOptions {
		for _, v := range get(strings.ToLower(o.name)) {
			if v == "" || isUnset(o.unset, v) {
				continue
			}
			out = append(out, Unhonoured{Option: o.name, Value: v, Why: o.why})
		}
	}
	return out
}

func isUnset(unset []string, v string) bool {
	for _, u := range unset {
		if strings.EqualFold(u, v) {
			return true
		}
	}
	return false
}
