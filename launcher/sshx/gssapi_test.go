package sshx

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goasn1 "github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/asn1tools"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/crypto"
	"github.com/jcmturner/gokrb5/v8/gssapi"
	"github.com/jcmturner/gokrb5/v8/iana/asnAppTag"
	"github.com/jcmturner/gokrb5/v8/iana/chksumtype"
	"github.com/jcmturner/gokrb5/v8/iana/flags"
	"github.com/jcmturner/gokrb5/v8/iana/keyusage"
	"github.com/jcmturner/gokrb5/v8/iana/msgtype"
	"github.com/jcmturner/gokrb5/v8/iana/nametype"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/spnego"
	"github.com/jcmturner/gokrb5/v8/types"
)

// testKey is the aes128-cts-hmac-sha1-96 key of gokrb5's own RFC 4121
// token vectors (gssapi/wrapToken_test.go).
func testKey(t *testing.T) types.EncryptionKey {
	t.Helper()
	k, err := hex.DecodeString("14f9bde6b50ec508201a97f74c4e5bd3")
	if err != nil {
		t.Fatal(err)
	}
	return types.EncryptionKey{KeyType: 17, KeyValue: k}
}

// TestMICTokenVector: an initiator's MIC over "deadbeef" with sequence
// number 0 is gokrb5's reference token, byte for byte.
func TestMICTokenVector(t *testing.T) {
	payload, _ := hex.DecodeString("deadbeef")
	got, err := micToken(payload, testKey(t), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	const want = "040400ffffffffff00000000000000009649ca09d2f1bc51ff6e5ca3"
	if hex.EncodeToString(got) != want {
		t.Fatalf("MIC token\n got %x\nwant %s", got, want)
	}
}

// TestMICTokenAcceptorSubkey: with the acceptor's subkey the token says
// so (flag 0x04), carries our sequence number and verifies.
func TestMICTokenAcceptorSubkey(t *testing.T) {
	payload := []byte("ssh session mic field")
	got, err := micToken(payload, testKey(t), gssapi.MICTokenFlagAcceptorSubkey, 0x1234)
	if err != nil {
		t.Fatal(err)
	}
	var mt gssapi.MICToken
	if err := mt.Unmarshal(got, false); err != nil {
		t.Fatal(err)
	}
	mt.Payload = payload
	ok, err := mt.Verify(testKey(t), keyusage.GSSAPI_INITIATOR_SIGN)
	if !ok || err != nil {
		t.Fatalf("verify: %v %v", ok, err)
	}
	if mt.Flags != gssapi.MICTokenFlagAcceptorSubkey || mt.SndSeqNum != 0x1234 {
		t.Fatalf("flags %#x seq %#x", mt.Flags, mt.SndSeqNum)
	}
}

// testAPReq is an AP-REQ for a made-up ticket, as apReq builds it.
func testAPReq(t *testing.T) (messages.APReq, types.Authenticator) {
	t.Helper()
	tkt := messages.Ticket{TktVNO: 5, Realm: "KQ.TEST",
		SName:   types.NewPrincipalName(nametype.KRB_NT_SRV_HST, "host/10.0.0.2"),
		EncPart: types.EncryptedData{EType: 17, Cipher: []byte("opaque")}}
	auth, err := types.NewAuthenticator("KQ.TEST", types.NewPrincipalName(nametype.KRB_NT_PRINCIPAL, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	auth.Cksum = types.Checksum{CksumType: chksumtype.GSSAPI,
		Checksum: gssChecksum(gssapi.ContextFlagMutual | gssapi.ContextFlagInteg)}
	req, err := messages.NewAPReq(tkt, testKey(t), auth)
	if err != nil {
		t.Fatal(err)
	}
	types.SetFlag(&req.APOptions, flags.APOptionMutualRequired)
	return req, auth
}

// TestFrameAPReq: the initial token is [APPLICATION 0] with the Kerberos
// OID and TOK_ID 01 00, gokrb5's acceptor-side parser reads it, and the
// authenticator carries the GSS checksum with mutual and integrity flags.
func TestFrameAPReq(t *testing.T) {
	req, _ := testAPReq(t)
	b, err := frameAPReq(req)
	if err != nil {
		t.Fatal(err)
	}
	header, _ := hex.DecodeString("06092a864886f71201020201" + "00")
	if b[0] != 0x60 || !bytes.Contains(b[:20], header) {
		t.Fatalf("framing: % x", b[:20])
	}
	var tok spnego.KRB5Token
	if err := tok.Unmarshal(b); err != nil || !tok.IsAPReq() {
		t.Fatalf("unmarshal: %v (AP-REQ %v)", err, tok.IsAPReq())
	}
	if !types.IsFlagSet(&tok.APReq.APOptions, flags.APOptionMutualRequired) {
		t.Error("mutual-required not set")
	}
	if err := tok.APReq.DecryptAuthenticator(testKey(t)); err != nil {
		t.Fatal(err)
	}
	ck := tok.APReq.Authenticator.Cksum
	want := []byte{16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 34, 0, 0, 0}
	if ck.CksumType != chksumtype.GSSAPI || !bytes.Equal(ck.Checksum, want) {
		t.Fatalf("checksum type %#x % x", ck.CksumType, ck.Checksum)
	}
}

// apRepToken is what an acceptor answers: a framed AP-REP whose
// encrypted part echoes ctime/cusec and carries subkey.
func apRepToken(t *testing.T, ctime time.Time, cusec int, subkey types.EncryptionKey) []byte {
	t.Helper()
	part, err := goasn1.Marshal(messages.EncAPRepPart{CTime: ctime, Cusec: cusec, Subkey: subkey, SequenceNumber: 7})
	if err != nil {
		t.Fatal(err)
	}
	ed, err := crypto.GetEncryptedData(asn1tools.AddASNAppTag(part, asnAppTag.EncAPRepPart), testKey(t), keyusage.AP_REP_ENCPART, 0)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := goasn1.Marshal(messages.APRep{PVNO: 5, MsgType: msgtype.KRB_AP_REP, EncPart: ed})
	if err != nil {
		t.Fatal(err)
	}
	oid, _ := hex.DecodeString("06092a864886f712010202" + "0200")
	return asn1tools.AddASNAppTag(append(oid, asn1tools.AddASNAppTag(rep, asnAppTag.APREP)...), 0)
}

// TestReadAPRep: a matching AP-REP with a subkey makes that subkey sign
// MICs; one that does not echo the authenticator fails mutual auth.
func TestReadAPRep(t *testing.T) {
	_, auth := testAPReq(t)
	sub := types.EncryptionKey{KeyType: 17, KeyValue: bytes.Repeat([]byte{7}, 16)}
	k := &krbInitiator{ticketKey: testKey(t), auth: auth}
	if _, more, err := k.InitSecContext("host@x", apRepToken(t, auth.CTime, auth.Cusec, sub), false); err != nil || more {
		t.Fatalf("AP-REP: %v (continue %v)", err, more)
	}
	if !bytes.Equal(k.micKey.KeyValue, sub.KeyValue) || k.micFlags != gssapi.MICTokenFlagAcceptorSubkey {
		t.Fatalf("MIC key %x flags %#x", k.micKey.KeyValue, k.micFlags)
	}
	if _, err := k.GetMIC([]byte("x")); err != nil {
		t.Fatal(err)
	}
	k = &krbInitiator{ticketKey: testKey(t), auth: auth}
	_, _, err := k.InitSecContext("host@x", apRepToken(t, auth.CTime.Add(time.Minute), auth.Cusec, sub), false)
	var ke *krbError
	if !errors.As(err, &ke) || !strings.Contains(err.Error(), "mutual authentication") {
		t.Fatalf("stale AP-REP: %v", err)
	}
}

// TestCCachePath: FILE: caches and plain paths are read; other kinds are
// refused in one line naming the cache and the kinit that fixes it.
func TestCCachePath(t *testing.T) {
	for _, c := range []struct{ env, path string }{
		{"", "/tmp/krb5cc_1000"},
		{"FILE:/tmp/krb5cc_x", "/tmp/krb5cc_x"},
		{"file:/tmp/y", "/tmp/y"},
		{"/tmp/plain", "/tmp/plain"},
	} {
		_, path, err := ccachePath(c.env, 1000)
		if err != nil || path != c.path {
			t.Errorf("%q: %q %v, want %q", c.env, path, err, c.path)
		}
	}
	for _, env := range []string{"KEYRING:persistent:1000", "KCM:1000", "API:x", "DIR:/run/user/1000/krb5cc", "MEMORY:x"} {
		_, _, err := ccachePath(env, 1000)
		var ke *krbError
		if !errors.As(err, &ke) {
			t.Fatalf("%s: %v", env, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, env) || !strings.Contains(msg, "KRB5CCNAME=FILE:/tmp/krb5cc_$(id -u) kinit") || strings.Contains(msg, "\n") {
			t.Errorf("%s: %q", env, msg)
		}
	}
}

// TestNoTicket: no cache file means "no Kerberos ticket" with kinit as
// the hint, before krb5.conf or the network are touched.
func TestNoTicket(t *testing.T) {
	t.Setenv("KRB5CCNAME", "FILE:"+filepath.Join(t.TempDir(), "none"))
	t.Setenv("KRB5_CONFIG", "/nonexistent")
	_, err := loadKrbClient()
	var ke *krbError
	if !errors.As(err, &ke) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "no Kerberos ticket") || !strings.Contains(ke.hint, "kinit") {
		t.Fatalf("got %v (hint %q)", err, ke.hint)
	}
}

// TestServiceHostNoCanonicalize: with dns_canonicalize_hostname = false
// the name is used as given (lowercased), without DNS.
func TestServiceHostNoCanonicalize(t *testing.T) {
	cfg, err := config.NewFromString("[libdefaults]\n dns_canonicalize_hostname = false\n rdns = false\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := serviceHost("Login.Example.ORG", false, cfg); got != "login.example.org" {
		t.Fatalf("got %q", got)
	}
}
