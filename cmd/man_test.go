package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A release's pages carry its version and its build date, not the day
// they were made; SOURCE_DATE_EPOCH, the packagers' convention, wins.
func TestManPagesBuildDate(t *testing.T) {
	oldV, oldD := Version, Date
	t.Cleanup(func() { Version, Date = oldV, oldD })
	Version, Date = "9.8.7", "2024-02-03T04:05:06Z"
	for _, tc := range []struct{ epoch, want string }{
		{"", `.TH "KQ-LS" "1" "Feb 2024" "kq 9.8.7" "kq manual"`},
		{"1262304000", `.TH "KQ-LS" "1" "Jan 2010" "kq 9.8.7" "kq manual"`}, // 2010-01-01
	} {
		t.Setenv("SOURCE_DATE_EPOCH", tc.epoch)
		dir := filepath.Join(t.TempDir(), "man1")
		f, errBuf := testFactory()
		if err := runCmd(t, NewCmdRoot(f), "man", dir); err != nil {
			t.Fatal(err)
		}
		page, err := os.ReadFile(filepath.Join(dir, "kq-ls.1"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(page), tc.want+"\n") {
			t.Errorf("SOURCE_DATE_EPOCH=%q: kq-ls.1 lacks %s:\n%s", tc.epoch, tc.want, page)
		}
		if !strings.HasPrefix(errBuf.String(), "kq: wrote ") {
			t.Errorf("stderr %q", errBuf)
		}
	}
}
