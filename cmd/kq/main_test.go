package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestSetMemoryLimit: kq sets its soft memory limit only when the user set
// neither GOMEMLIMIT nor GOGC.
func TestSetMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(math.MaxInt64)
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, true},
		{map[string]string{"GOGC": "200"}, false},
		{map[string]string{"GOMEMLIMIT": "1GiB"}, false},
	} {
		debug.SetMemoryLimit(math.MaxInt64)
		got := setMemoryLimit(func(k string) string { return tc.env[k] })
		limit := debug.SetMemoryLimit(-1)
		if got != tc.want || (limit == memoryLimit) != tc.want {
			t.Errorf("env %v: set %v, limit %d; want set %v", tc.env, got, limit, tc.want)
		}
	}
}
