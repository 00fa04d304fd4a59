package remote

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestClaimExpressions: the kernel evaluates the hold before the claim
// (their names sort so, and JSON keeps that order), the paths are Python
// literals, and only two successes make a won claim.
func TestClaimExpressions(t *testing.T) {
	e := ClaimExpressions(Spare{RT: `/r t/"x"`, ID: "id1"})
	data, _ := json.Marshal(e)
	s := string(data)
	if strings.Index(s, "kq1_hold") > strings.Index(s, "kq2_claim") {
		t.Errorf("claim before hold: %s", s)
	}
	if !strings.Contains(e["kq2_claim"].(string), `remove("/r t/\"x\"/kernel-kq-id1.spare")`) {
		t.Errorf("claim expression: %s", e["kq2_claim"])
	}
	ok := map[string]any{"status": "ok"}
	if err := ClaimWon(map[string]any{"kq1_hold": ok, "kq2_claim": ok}); err != nil {
		t.Errorf("won claim: %v", err)
	}
	lost := map[string]any{"status": "error", "ename": "FileNotFoundError"}
	if err := ClaimWon(map[string]any{"kq1_hold": ok, "kq2_claim": lost}); err == nil || !strings.Contains(err.Error(), "FileNotFoundError") {
		t.Errorf("lost claim: %v", err)
	}
	if err := ClaimWon(nil); err == nil {
		t.Error("a reply without user_expressions won")
	}
}
