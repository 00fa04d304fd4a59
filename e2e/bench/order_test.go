package main

import "testing"

// TestRunOrder: every repetition runs every method once; over reps, no
// method always comes first, and none always runs right after the same one.
func TestRunOrder(t *testing.T) {
	const n, reps = 7, 6
	first := map[int]bool{}
	after := map[int]map[int]bool{} // method -> the methods run right before it
	for rep := range reps {
		o := runOrder(rep, n)
		seen := map[int]bool{}
		for k, i := range o {
			if i < 0 || i >= n || seen[i] {
				t.Fatalf("rep %d: %v is not a permutation of %d methods", rep, o, n)
			}
			seen[i] = true
			if k > 0 {
				if after[i] == nil {
					after[i] = map[int]bool{}
				}
				after[i][o[k-1]] = true
			}
		}
		first[o[0]] = true
	}
	if len(first) < 2 {
		t.Errorf("the same method runs first in every repetition")
	}
	for i, before := range after {
		if len(before) < 2 {
			t.Errorf("method %d always runs right after method %v", i, before)
		}
	}
}
