package sshx

// Kerberos login (SSH's gssapi-with-mic, RFC 4462) with a GSS-API
// initiator written on gokrb5, so that kq stays pure Go (CGO_ENABLED=0):
// the user's FILE: credential cache and krb5.conf are read directly, a
// service ticket for host/HOSTNAME is asked from the KDC, and the tokens
// are framed as RFC 4121 says (AP-REQ with mutual authentication, then a
// MIC over the SSH session). Delegation (a forwarded TGT in the
// authenticator) is not implemented: gokrb5 cannot build a KRB-CRED.

import (
	"context"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jcmturner/gokrb5/v8/asn1tools"
	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/credentials"
	"github.com/jcmturner/gokrb5/v8/crypto"
	"github.com/jcmturner/gokrb5/v8/gssapi"
	"github.com/jcmturner/gokrb5/v8/iana/chksumtype"
	"github.com/jcmturner/gokrb5/v8/iana/flags"
	"github.com/jcmturner/gokrb5/v8/iana/keyusage"
	"github.com/jcmturner/gokrb5/v8/iana/nametype"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/spnego"
	"github.com/jcmturner/gokrb5/v8/types"
	"github.com/kq-dev/kq/profiles"
	"golang.org/x/crypto/ssh"
)

// krbError is a Kerberos failure on kq's side of the login: no ticket, a
// cache kq cannot read, a KDC that refuses. hint says what the user can do.
type krbError struct {
	msg  string
	hint string
	err  error
}

func (e *krbError) Error() string {
	if e.err == nil {
		return "kerberos: " + e.msg
	}
	return "kerberos: " + e.msg + ": " + e.err.Error()
}

func (e *krbError) Unwrap() error { return e.err }

// kinitHint is how to get a ticket kq can read.
const kinitHint = "get a ticket with kinit (klist shows it); kq reads FILE: caches: KRB5CCNAME=FILE:/tmp/krb5cc_$(id -u) kinit"

// dnsTimeout bounds each host name lookup made for the service principal.
const dnsTimeout = 5 * time.Second

// gssapiMethod is the gssapi-with-mic method for hop s. The target is the
// hop's HostName, as OpenSSH uses it (GSSAPITrustDns no).
func (a *Authenticator) gssapiMethod(s profiles.SSHSettings) ssh.AuthMethod {
	if s.GSSAPIDelegateCredentials {
		a.verbose("%s: GSSAPIDelegateCredentials is set, but kq cannot delegate Kerberos credentials; logging in without delegation", s.HostName)
	}
	return ssh.GSSAPIWithMICAuthMethod(&krbInitiator{trustDNS: s.GSSAPITrustDNS}, s.HostName)
}

// krbInitiator is one GSS-API security context, initiator side, for the
// Kerberos mechanism. It implements ssh.GSSAPIClient.
type krbInitiator struct {
	trustDNS bool
	// ticketKey is the service ticket's session key; auth the
	// authenticator sent in the AP-REQ (its time proves the AP-REP fresh,
	// its sequence number starts ours).
	ticketKey types.EncryptionKey
	auth      types.Authenticator
	// micKey signs MICs: the acceptor's subkey from the AP-REP when it
	// sent one (micFlags then says so), else the ticket's session key.
	micKey   types.EncryptionKey
	micFlags byte
	done     bool
}

// InitSecContext returns the AP-REQ on the first call and checks the
// server's AP-REP on the second.
func (k *krbInitiator) InitSecContext(target string, token []byte, _ bool) ([]byte, bool, error) {
	if token == nil {
		out, err := k.apReq(target)
		return out, err == nil, err
	}
	if err := k.readAPRep(token); err != nil {
		return nil, false, err
	}
	k.done = true
	return nil, false, nil
}

// GetMIC signs the SSH session's MIC field with the context's key.
func (k *krbInitiator) GetMIC(micField []byte) ([]byte, error) {
	if !k.done {
		return nil, &krbError{msg: "security context not established"}
	}
	return micToken(micField, k.micKey, k.micFlags, uint64(k.auth.SeqNumber))
}

// DeleteSecContext forgets the keys.
func (k *krbInitiator) DeleteSecContext() error {
	*k = krbInitiator{trustDNS: k.trustDNS}
	return nil
}

// apReq loads the user's ticket, gets one for target ("host@HOSTNAME")
// and returns the framed AP-REQ.
func (k *krbInitiator) apReq(target string) ([]byte, error) {
	cl, err := loadKrbClient()
	if err != nil {
		return nil, err
	}
	service, host, _ := strings.Cut(target, "@")
	spn := service + "/" + serviceHost(host, k.trustDNS, cl.Config)
	tkt, key, err := cl.GetServiceTicket(spn)
	if err != nil {
		return nil, &krbError{msg: "service ticket for " + spn, err: err,
			hint: "the KDC has no principal " + spn + "? It must match the host's keytab (see GSSAPITrustDns and krb5.conf's dns_canonicalize_hostname); an expired ticket needs kinit"}
	}
	auth, err := types.NewAuthenticator(cl.Credentials.Domain(), cl.Credentials.CName())
	if err != nil {
		return nil, &krbError{msg: "authenticator", err: err}
	}
	auth.Cksum = types.Checksum{CksumType: chksumtype.GSSAPI,
		Checksum: gssChecksum(gssapi.ContextFlagMutual | gssapi.ContextFlagInteg)}
	req, err := messages.NewAPReq(tkt, key, auth)
	if err != nil {
		return nil, &krbError{msg: "AP-REQ for " + spn, err: err}
	}
	types.SetFlag(&req.APOptions, flags.APOptionMutualRequired)
	k.ticketKey, k.auth = key, auth
	return frameAPReq(req)
}

// gssChecksum is the authenticator checksum of RFC 4121 4.1.1: no
// channel bindings (sshd passes none), the context flags, no delegation.
func gssChecksum(contextFlags uint32) []byte {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint32(b[:4], 16)
	binary.LittleEndian.PutUint32(b[20:24], contextFlags)
	return b
}

// frameAPReq wraps an AP-REQ in the GSS-API framing of RFC 2743 3.1 and
// RFC 4121 4.1: [APPLICATION 0] { OID 1.2.840.113554.1.2.2, 01 00, AP-REQ }.
func frameAPReq(req messages.APReq) ([]byte, error) {
	inner, err := req.Marshal()
	if err != nil {
		return nil, &krbError{msg: "marshal AP-REQ", err: err}
	}
	oid, err := asn1.Marshal(asn1.ObjectIdentifier(gssapi.OIDKRB5.OID()))
	if err != nil {
		return nil, &krbError{msg: "marshal OID", err: err}
	}
	b := append(oid, 0x01, 0x00)
	return asn1tools.AddASNAppTag(append(b, inner...), 0), nil
}

// readAPRep checks the server's answer: a KRB-ERROR is a refusal; an
// AP-REP must echo our authenticator's time (mutual authentication) and
// may carry the acceptor's subkey, which then signs the MIC.
func (k *krbInitiator) readAPRep(token []byte) error {
	var tok spnego.KRB5Token
	if err := tok.Unmarshal(token); err != nil {
		return &krbError{msg: "server's GSS-API token", err: err}
	}
	if tok.IsKRBError() {
		return &krbError{msg: "server refused the ticket", err: tok.KRBError}
	}
	if !tok.IsAPRep() {
		return &krbError{msg: "server's GSS-API token is not an AP-REP"}
	}
	b, err := crypto.DecryptEncPart(tok.APRep.EncPart, k.ticketKey, keyusage.AP_REP_ENCPART)
	if err != nil {
		return &krbError{msg: "decrypt AP-REP", err: err}
	}
	var part messages.EncAPRepPart
	if err := part.Unmarshal(b); err != nil {
		return &krbError{msg: "AP-REP", err: err}
	}
	if part.CTime.Unix() != k.auth.CTime.Unix() || part.Cusec != k.auth.Cusec {
		return &krbError{msg: "mutual authentication failed: the AP-REP does not match the authenticator"}
	}
	k.micKey, k.micFlags = k.ticketKey, 0
	if part.Subkey.KeyType != 0 {
		k.micKey, k.micFlags = part.Subkey, gssapi.MICTokenFlagAcceptorSubkey
	}
	return nil
}

// micToken is an RFC 4121 MIC token from the initiator over payload.
func micToken(payload []byte, key types.EncryptionKey, tokenFlags byte, seq uint64) ([]byte, error) {
	mt := gssapi.MICToken{Flags: tokenFlags, SndSeqNum: seq, Payload: payload}
	if err := mt.SetChecksum(key, keyusage.GSSAPI_INITIATOR_SIGN); err != nil {
		return nil, &krbError{msg: "MIC", err: err}
	}
	b, err := mt.Marshal()
	if err != nil {
		return nil, &krbError{msg: "MIC", err: err}
	}
	return b, nil
}

// loadKrbClient reads krb5.conf and the credential cache and checks that
// the cache holds an unexpired TGT.
func loadKrbClient() (*client.Client, error) {
	name, path, err := ccachePath(os.Getenv("KRB5CCNAME"), os.Getuid())
	if err != nil {
		return nil, err
	}
	cc, err := credentials.LoadCCache(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &krbError{msg: "no Kerberos ticket (no credential cache " + name + ")", hint: kinitHint, err: err}
	}
	if err != nil {
		return nil, &krbError{msg: "credential cache " + name, hint: kinitHint, err: err}
	}
	tgt, ok := cc.GetEntry(types.PrincipalName{NameType: nametype.KRB_NT_SRV_INST,
		NameString: []string{"krbtgt", cc.DefaultPrincipal.Realm}})
	if !ok {
		return nil, &krbError{msg: "no Kerberos ticket in " + name, hint: kinitHint}
	}
	if !tgt.EndTime.IsZero() && time.Now().After(tgt.EndTime) {
		return nil, &krbError{msg: "the Kerberos ticket in " + name + " expired at " + tgt.EndTime.Format(time.RFC3339), hint: kinitHint}
	}
	cfg, err := loadKrb5Conf(os.Getenv("KRB5_CONFIG"))
	if err != nil {
		return nil, err
	}
	cl, err := client.NewFromCCache(cc, cfg, client.DisablePAFXFAST(true))
	if err != nil {
		return nil, &krbError{msg: "credential cache " + name, hint: kinitHint, err: err}
	}
	return cl, nil
}

// ccachePath turns KRB5CCNAME (empty: MIT's default FILE:/tmp/krb5cc_UID)
// into a file to read; caches of other kinds are refused in one line.
func ccachePath(env string, uid int) (name, path string, err error) {
	name = env
	if name == "" {
		name = "FILE:/tmp/krb5cc_" + strconv.Itoa(uid)
	}
	kind, rest, found := strings.Cut(name, ":")
	if !found || len(kind) == 1 || strings.HasPrefix(name, "/") { // a plain path (or C:\...)
		return name, name, nil
	}
	if !strings.EqualFold(kind, "FILE") {
		return name, "", &krbError{msg: "credential cache " + name + " is of kind " + strings.ToUpper(kind) +
			", which kq cannot read (only FILE:); run: KRB5CCNAME=FILE:/tmp/krb5cc_$(id -u) kinit"}
	}
	return name, rest, nil
}

// loadKrb5Conf reads the first existing file of KRB5_CONFIG (a path
// list; empty: /etc/krb5.conf). Directives gokrb5 does not know are fine.
func loadKrb5Conf(env string) (*config.Config, error) {
	files := filepath.SplitList(env)
	if len(files) == 0 {
		files = []string{"/etc/krb5.conf"}
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			continue
		}
		cfg, err := config.Load(f)
		var ud config.UnsupportedDirective
		if err != nil && !errors.As(err, &ud) {
			return nil, &krbError{msg: "krb5.conf " + f, err: err}
		}
		return cfg, nil
	}
	return nil, &krbError{msg: "no krb5.conf (looked for " + strings.Join(files, ", ") + ")",
		hint: "kq reads KRB5_CONFIG, else /etc/krb5.conf, for the realm and its KDCs"}
}

// serviceHost is the host part of the service principal, as MIT's
// krb5_sname_to_principal makes it: the name as given unless krb5.conf's
// dns_canonicalize_hostname (default true) asks DNS for the canonical
// name and, with rdns (default true), the address's reverse name.
// GSSAPITrustDns yes forces the reverse lookup, as ssh then uses the
// peer's reverse name. Lookup failures keep the name; it is lowercased.
func serviceHost(host string, trustDNS bool, cfg *config.Config) string {
	canon := host
	ctx, cancel := context.WithTimeout(context.Background(), 2*dnsTimeout)
	defer cancel()
	r := net.DefaultResolver
	if cfg.LibDefaults.DNSCanonicalizeHostname && net.ParseIP(host) == nil {
		if c, err := r.LookupCNAME(ctx, host); err == nil && c != "" {
			canon = strings.TrimSuffix(c, ".")
		}
	}
	if trustDNS || (cfg.LibDefaults.DNSCanonicalizeHostname && cfg.LibDefaults.RDNS) {
		if addrs, err := r.LookupHost(ctx, canon); err == nil && len(addrs) > 0 {
			if names, err := r.LookupAddr(ctx, addrs[0]); err == nil && len(names) > 0 {
				canon = strings.TrimSuffix(names[0], ".")
			}
		}
	}
	return strings.ToLower(canon)
}
