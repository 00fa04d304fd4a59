package sshx

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kq-dev/kq/launcher/kinds"
	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

// Issue 11 point 5: the ssh config's algorithm policy (KexAlgorithms,
// Ciphers, MACs, HostKeyAlgorithms, PubkeyAcceptedAlgorithms) is handed
// to x/crypto, cut down to what x/crypto implements, so that kq refuses
// where ssh refuses; what cannot be agreed on is named.

// implemented is every algorithm x/crypto can use, secure or not: a
// policy that enables an insecure one on purpose ("Ciphers +aes128-cbc")
// gets it, as with ssh.
func implemented() ssh.Algorithms {
	s, i := ssh.SupportedAlgorithms(), ssh.InsecureAlgorithms()
	return ssh.Algorithms{
		// x/crypto speaks the libssh name of curve25519 too (it adds it
		// beside curve25519-sha256) without listing it.
		KeyExchanges:   slices.Concat(s.KeyExchanges, i.KeyExchanges, []string{"curve25519-sha256@libssh.org"}),
		Ciphers:        slices.Concat(s.Ciphers, i.Ciphers),
		MACs:           slices.Concat(s.MACs, i.MACs),
		HostKeys:       slices.Concat(s.HostKeys, i.HostKeys),
		PublicKeyAuths: slices.Concat(s.PublicKeyAuths, i.PublicKeyAuths),
	}
}

// intersect keeps the names of want that have contains, in want's order.
func intersect(want, have []string) []string {
	var out []string
	for _, w := range want {
		if slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

// ErrNoAlgorithm marks a policy that leaves nothing kq can use, and a
// server that agrees on nothing with it.
var ErrNoAlgorithm = errors.New("no common algorithm")

// policyError is an ssh config list with nothing x/crypto implements.
type policyError struct {
	option     string   // "Ciphers"
	configured []string // the hop's list
	usable     []string // what x/crypto implements
}

func (e *policyError) Error() string {
	return fmt.Sprintf("%s %s: kq's SSH library (x/crypto) implements none of these (it has: %s)",
		e.option, strings.Join(e.configured, ","), strings.Join(e.usable, ","))
}

func (e *policyError) Unwrap() error { return ErrNoAlgorithm }

// applyAlgorithms sets cfg's algorithms from s's policy; known are the
// host key algorithms known_hosts holds for the host (see
// hostKeyCallback), preferred within the policy so that the server shows
// a key kq can check. A nil list leaves x/crypto's defaults.
func applyAlgorithms(cfg *ssh.ClientConfig, s profiles.SSHSettings, known []string) error {
	impl := implemented()
	var errs []error
	pick := func(option string, configured, have []string) []string {
		if configured == nil {
			return nil
		}
		out := intersect(configured, have)
		if len(out) == 0 { // x/crypto would take an empty list as "defaults"
			errs = append(errs, &policyError{option, configured, have})
		}
		return out
	}
	cfg.KeyExchanges = pick("KexAlgorithms", s.KexAlgorithms, impl.KeyExchanges)
	cfg.Ciphers = pick("Ciphers", cipherPreference(s.Ciphers, hasAESHardware()), impl.Ciphers)
	cfg.MACs = pick("MACs", s.MACs, impl.MACs)
	cfg.HostKeyAlgorithms = known
	if policy := pick("HostKeyAlgorithms", s.HostKeyAlgorithms, impl.HostKeys); policy != nil {
		cfg.HostKeyAlgorithms = policy
		if k := intersect(policy, known); len(k) > 0 {
			cfg.HostKeyAlgorithms = k
		}
	}
	if err := errors.Join(errs...); err != nil {
		return kinds.With(kinds.Usage, "change the list in ssh config for this host, or use ssh", err)
	}
	return nil
}

// negotiationOption names the ssh_config option behind one of x/crypto's
// AlgorithmNegotiationError.What values.
func negotiationOption(what string) string {
	switch {
	case strings.Contains(what, "key exchange"):
		return "KexAlgorithms"
	case strings.Contains(what, "host key"):
		return "HostKeyAlgorithms"
	case strings.Contains(what, "cipher"):
		return "Ciphers"
	case strings.Contains(what, "MAC"):
		return "MACs"
	}
	return what
}

// negotiationFailed explains a handshake that found no common algorithm:
// what each side offered, and whether the server wants something that
// x/crypto lacks or that the policy leaves out.
func negotiationFailed(where string, ne *ssh.AlgorithmNegotiationError) error {
	option := negotiationOption(ne.What)
	impl := implemented()
	have := map[string][]string{"KexAlgorithms": impl.KeyExchanges, "HostKeyAlgorithms": impl.HostKeys,
		"Ciphers": impl.Ciphers, "MACs": impl.MACs}[option]
	var lacking, leftOut []string
	for _, a := range ne.RequestedAlgorithms {
		if !slices.Contains(have, a) {
			lacking = append(lacking, a)
		} else {
			leftOut = append(leftOut, a)
		}
	}
	err := fmt.Errorf("%s: %w for %s (%s): kq offered %s; the server offered %s", where, ErrNoAlgorithm, ne.What, option,
		strings.Join(ne.SupportedAlgorithms, ","), strings.Join(ne.RequestedAlgorithms, ","))
	var hint string
	switch {
	case len(leftOut) == 0:
		hint = fmt.Sprintf("the server only offers algorithms that kq's SSH library (x/crypto) does not implement (%s); use ssh, or ask the host's admin to enable one of %s",
			strings.Join(lacking, ","), strings.Join(have, ","))
	case option == "HostKeyAlgorithms":
		hint = "HostKeyAlgorithms in ssh config (and the key types known_hosts holds for this host) exclude every host key the server has; ssh refuses too"
	default:
		hint = fmt.Sprintf("kq's list (%s in ssh config for this host, or the defaults) excludes all of them; ssh refuses too. To allow one: %s +%s",
			option, option, leftOut[0])
	}
	return kinds.With(kinds.Connect, hint, err)
}

// rsaAlgorithms are the signature algorithms of an RSA key, and of an RSA
// certificate (x/crypto names those by the underlying algorithm).
var rsaAlgorithms = map[string][]string{
	ssh.KeyAlgoRSA:     {ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSA},
	ssh.CertAlgoRSAv01: {ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSAv01},
}

// certUnderlying maps an RSA certificate's signature algorithms to the
// names x/crypto's signers take.
var certUnderlying = map[string]string{
	ssh.CertAlgoRSASHA256v01: ssh.KeyAlgoRSASHA256, ssh.CertAlgoRSASHA512v01: ssh.KeyAlgoRSASHA512, ssh.CertAlgoRSAv01: ssh.KeyAlgoRSA,
}

// restrictSigners applies PubkeyAcceptedAlgorithms: a key none of whose
// signature algorithms is accepted is not offered, and an RSA key some of
// whose are is limited to those (ssh.NewSignerWithAlgorithms). nil
// accepted means no limit. dropped names the keys left out, for -v.
func restrictSigners(signers []ssh.Signer, accepted []string) (kept []ssh.Signer, dropped []string) {
	if accepted == nil {
		return signers, nil
	}
	for _, sg := range signers {
		t := sg.PublicKey().Type()
		algos, ok := rsaAlgorithms[t]
		if !ok {
			algos = []string{t}
		}
		allowed := intersect(algos, accepted)
		switch {
		case len(allowed) == len(algos):
			kept = append(kept, sg)
			continue
		case len(allowed) == 0:
			dropped = append(dropped, t+" "+ssh.FingerprintSHA256(sg.PublicKey()))
			continue
		}
		as, isAlgo := sg.(ssh.AlgorithmSigner)
		if !isAlgo {
			dropped = append(dropped, t+" "+ssh.FingerprintSHA256(sg.PublicKey()))
			continue
		}
		for i, a := range allowed {
			if u, ok := certUnderlying[a]; ok {
				allowed[i] = u
			}
		}
		if ms, err := ssh.NewSignerWithAlgorithms(as, allowed); err == nil {
			kept = append(kept, ms)
		} else {
			dropped = append(dropped, t+" "+ssh.FingerprintSHA256(sg.PublicKey()))
		}
	}
	return kept, dropped
}
