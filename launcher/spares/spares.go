// Package spares remembers, on the client, the warm spare kernel a
// session left on a host (warm: 1), so that the next session can claim it
// in the kernel itself, through its ports, before any command runs on the
// host. An entry holds the spare's connection file, key included, so it is
// kept like a local connection file: mode 0600 in a 0700 directory. It is
// used once: Take removes it, and a claim that fails falls back to the
// usual start.
package spares

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Entry is one remembered spare.
type Entry struct {
	// RT and ID locate the spare's files on the host; Path is its
	// connection file there.
	RT   string `json:"rt"`
	ID   string `json:"id"`
	Path string `json:"path"`
	// JSON is the spare's connection file.
	JSON json.RawMessage `json:"json"`
}

// Key names the entry of one host (its hops, as user@host:port each), one
// runtime dir and one flavor of kernel.
func Key(hops []string, rt, flavor string) string {
	h := sha256.New()
	for _, s := range append(append([]string{}, hops...), "rt="+rt, "flavor="+flavor) {
		fmt.Fprintf(h, "%d:%s\n", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Dir is where entries are kept: kq/spares under the user's cache dir
// ($XDG_CACHE_HOME, else ~/.cache on Linux).
func Dir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("spare cache: %w", err)
	}
	return filepath.Join(d, "kq", "spares"), nil
}

// Save writes e as key's entry, replacing any (atomically, mode 0600).
func Save(key string, e Entry) error {
	dir, err := Dir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("spare cache: %w", err)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("spare cache: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".new-*")
	if err != nil {
		return fmt.Errorf("spare cache: %w", err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("spare cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, key+".json")); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("spare cache: %w", err)
	}
	return nil
}

// Take returns key's entry and removes it; ok is false when there is none
// (or it cannot be read, which is the same to a caller: start as usual).
func Take(key string) (e Entry, ok bool) {
	dir, err := Dir()
	if err != nil {
		return e, false
	}
	file := filepath.Join(dir, key+".json")
	data, err := os.ReadFile(file)
	if err != nil {
		return e, false
	}
	os.Remove(file)
	if json.Unmarshal(data, &e) != nil || e.ID == "" || len(e.JSON) == 0 {
		return e, false
	}
	return e, true
}

// Forget removes key's entry, if any.
func Forget(key string) {
	if dir, err := Dir(); err == nil {
		os.Remove(filepath.Join(dir, key+".json"))
	}
}
