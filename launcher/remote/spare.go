package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"time"
)

// spareWait bounds op_spare's wait for the spare behind a session's kernel
// to come up (under opTimeout, which bounds the op).
const spareWait = 40 * time.Second

// Spare is a warm spare kernel kq may claim in the kernel itself at the
// next session (warm: 1), without a command on the host first.
type Spare struct {
	// RT and ID locate the spare's files; Path is its connection file.
	RT, ID, Path string
	// JSON is its connection file's content (key included).
	JSON []byte
}

// NextSpare waits until a spare of k's flavor is up in k's runtime dir and
// returns it. ErrGone: none came within spareWait. The wait on the host
// ends as soon as this returns (ctx ending included).
func NextSpare(ctx context.Context, r Runner, k KernelSpec) (Spare, error) {
	ctx, cancel := context.WithTimeout(ctx, spareWait+answerTimeout)
	defer cancel()
	h, err := open(ctx, r, vars{rt: k.RuntimeDir, flavor: k.Flavor(), wait: spareWait}, "op_spare")
	if err != nil {
		return Spare{}, err
	}
	defer h.Close() // EOF on its stdin ends op_spare
	for h.p.final != tagDone && h.p.final != tagGone {
		line, ok, err := h.lines.next(ctx.Done())
		switch {
		case err != nil:
			return Spare{}, fmt.Errorf("op_spare: %w", context.Cause(ctx))
		case !ok:
			return Spare{}, fmt.Errorf("op_spare: %w", ErrCutShort)
		}
		h.p.feed(line)
	}
	if p := h.p; p.final == tagDone && p.file != "" && len(p.json) > 0 {
		return Spare{RT: path.Dir(p.file), ID: kernelIDOf(p.file), Path: p.file, JSON: p.json}, nil
	}
	return Spare{}, ErrGone
}

// kernelIDOf is the id in a kq connection file's name.
func kernelIDOf(file string) string {
	name := path.Base(file)
	const prefix, suffix = "kernel-kq-", ".json"
	if len(name) > len(prefix)+len(suffix) && name[:len(prefix)] == prefix && name[len(name)-len(suffix):] == suffix {
		return name[len(prefix) : len(name)-len(suffix)]
	}
	return ""
}

// ClaimExpressions are the user_expressions of the execute_request (with
// empty, silent code) by which a session takes spare s in the kernel
// itself: the first (the kernel evaluates them in the order of their
// names) creates the hold file, so that the watchdog sees the kernel held,
// the second removes the spare's marker, which only one claimant can do. An expression's error comes back in the reply, never
// as a traceback on iopub, so a claim that loses shows nothing to the
// session that won. ClaimWon reads the reply's user_expressions.
func ClaimExpressions(s Spare) map[string]any {
	base := path.Join(s.RT, "kernel-kq-"+s.ID)
	return map[string]any{
		"kq1_hold":  "open(" + pyString(base+".hold") + ", 'a').close()",
		"kq2_claim": "__import__('os').remove(" + pyString(base+".spare") + ")",
	}
}

// ClaimWon says whether the user_expressions of a claim's execute_reply
// show the claim won (both expressions ran without error).
func ClaimWon(userExpressions map[string]any) error {
	for _, name := range []string{"kq1_hold", "kq2_claim"} {
		r, _ := userExpressions[name].(map[string]any)
		if st, _ := r["status"].(string); st != "ok" {
			ename, _ := r["ename"].(string)
			if ename == "" {
				ename = "no result"
			}
			return errors.New("claim of the spare refused: " + name + ": " + ename)
		}
	}
	return nil
}

// pyString is s as a Python string literal (a JSON string is one).
func pyString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Claimed holds spare s, which this session has claimed in the kernel,
// like Attach, and starts the spare behind it (k's flavor). ErrGone: the
// spare died meanwhile.
func Claimed(ctx context.Context, r Runner, s Spare, k KernelSpec) (*Hold, error) {
	v := vars{rt: s.RT, id: s.ID, warm: true, flavor: k.Flavor(), start: k.StartScript(), linger: k.Linger}
	h, err := holdRunning(ctx, r, v, "op_claimed")
	if err != nil {
		return nil, err
	}
	h.Warm = true
	return h, nil
}
