package sshx

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kq-dev/kq/launcher/kinds"
	"github.com/kq-dev/kq/profiles"
)

// TestNeverRecord: an Authenticator that never records (kq doctor) refuses
// a host known_hosts does not know even under accept-new, as
// ErrUnknownHostKey, and leaves known_hosts alone; Dialed hears of each
// hop that got through. A known host passes.
func TestNeverRecord(t *testing.T) {
	addr, kh := kbdServer(t)
	for _, strict := range []string{"accept-new", "no", "ask", "yes"} {
		fresh := filepath.Join(t.TempDir(), "known_hosts")
		s := settingsFor(addr, "pw", fresh)
		s.KbdInteractiveAuthentication, s.StrictHostKeyChecking = false, strict
		a := NewAuthenticator(&scripted{answers: []string{"yes", "s3cret"}})
		a.NeverRecord = true
		var dialed []int
		a.Dialed = func(i int) { dialed = append(dialed, i) }
		_, err := Dial(context.Background(), a, []profiles.SSHSettings{s})
		if !errors.Is(err, ErrUnknownHostKey) || !errors.Is(err, kinds.HostKey) {
			t.Fatalf("%s: %v, want ErrUnknownHostKey", strict, err)
		}
		if _, serr := os.Stat(fresh); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("%s: known_hosts written", strict)
		}
		if len(dialed) != 0 {
			t.Errorf("%s: Dialed %v for a hop that failed", strict, dialed)
		}
	}
	s := settingsFor(addr, "pw", kh)
	s.KbdInteractiveAuthentication, s.StrictHostKeyChecking = false, "yes"
	a := NewAuthenticator(&scripted{answers: []string{"s3cret"}})
	a.NeverRecord = true
	var dialed []int
	a.Dialed = func(i int) { dialed = append(dialed, i) }
	c, err := Dial(context.Background(), a, []profiles.SSHSettings{s})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if len(dialed) != 1 || dialed[0] != 0 {
		t.Errorf("Dialed %v, want [0]", dialed)
	}
}

// TestUnknownHostKeyIs: only an unknown key is ErrUnknownHostKey, not a
// changed, revoked or declined one.
func TestUnknownHostKeyIs(t *testing.T) {
	for _, tt := range []struct {
		he   *hostKeyError
		want bool
	}{
		{&hostKeyError{}, true},
		{&hostKeyError{changed: true}, false},
		{&hostKeyError{revoked: true}, false},
		{&hostKeyError{declined: true}, false},
		{&hostKeyError{certProblem: "expired"}, false},
	} {
		if got := errors.Is(tt.he, ErrUnknownHostKey); got != tt.want {
			t.Errorf("%+v: Is(ErrUnknownHostKey) = %v", tt.he, got)
		}
	}
}
