package profiles

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// writeFiles writes name -> content under dir, making directories.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHostAliases(t *testing.T) {
	for _, tc := range []struct {
		name   string
		files  map[string]string // under a fresh home; "etc/" is the system dir
		config string            // -F, relative to home ("" = user's + system's)
		want   []string
	}{
		{
			name: "patterns, negations and duplicates are left out",
			files: map[string]string{".ssh/config": `# comment
Host gpu login.example.org # trailing comment
  HostName 10.0.0.1
Host *.internal web? !bastion "quoted" "two words" a,b
host lower
Host=eq
Host	tab
Match host gpu
  User me
Host gpu
`},
			want: []string{"gpu", "login.example.org", "quoted", "lower", "eq", "tab"},
		},
		{
			name: "Include relative to ~/.ssh, globs in order, nested, ~/ and absolute",
			files: map[string]string{
				".ssh/config":           "Host first\nInclude config.d/*.conf ~/extra/one \"~/sp ace/c\"\nHost last\n",
				".ssh/config.d/b.conf":  "Host b1\nInclude nested/*\n",
				".ssh/config.d/a.conf":  "Host a1 a2\n",
				".ssh/config.d/skip":    "Host not-a-conf\n",
				".ssh/nested/deep":      "Host deep\n",
				"extra/one":             "Host extra\n",
				"sp ace/c":              "Host spaced\n",
				"etc/ssh_config":        "Host sys\nInclude /nonexistent/*.conf\n",
				"etc/ssh_config.d/x.cf": "Host never\n",
			},
			want: []string{"first", "a1", "a2", "b1", "deep", "extra", "spaced", "last", "sys"},
		},
		{
			name: "the system file's relative Includes are read from its own dir",
			files: map[string]string{
				"etc/ssh_config":          "Include ssh_config.d/*.conf\n",
				"etc/ssh_config.d/x.conf": "Host from-system-d\n",
			},
			want: []string{"from-system-d"},
		},
		{
			name: "-F replaces both files; its relative Includes are under ~/.ssh",
			files: map[string]string{
				".ssh/config":     "Host user-only\n",
				"etc/ssh_config":  "Host sys\n",
				"alt/config":      "Host alt\nInclude inc\n",
				".ssh/inc":        "Host included\n",
				"alt/inc":         "Host wrong-dir\n",
				".ssh/unrelated":  "Host unrelated\n",
				"etc/unreachable": "Host x\n",
			},
			config: "alt/config",
			want:   []string{"alt", "included"},
		},
		{
			name: "an Include loop and unreadable files end quietly",
			files: map[string]string{
				".ssh/config": "Host top\nInclude loop-a missing\n\x00\x01 garbage line\nHost after\n",
				".ssh/loop-a": "Host in-a\nInclude loop-b\n",
				".ssh/loop-b": "Host in-b\nInclude loop-a config\n",
			},
			want: []string{"top", "in-a", "in-b", "after"},
		},
		{
			name:  "no files at all: nothing",
			files: map[string]string{},
			want:  nil,
		},
		{
			name:   "a missing -F file: nothing",
			files:  map[string]string{".ssh/config": "Host user\n"},
			config: "nope",
			want:   nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			writeFiles(t, home, tc.files)
			old := systemSSHConfig
			systemSSHConfig = filepath.Join(home, "etc", "ssh_config")
			defer func() { systemSSHConfig = old }()
			cfg := tc.config
			if cfg != "" {
				cfg = filepath.Join(home, cfg)
			}
			got := SSHResolver{Home: home}.HostAliases(cfg)
			if !slices.Equal(got, tc.want) {
				t.Errorf("HostAliases = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestHostAliasesDepth: Include chains deeper than OpenSSH's limit stop
// there, and a file fanning out to many others is read a bounded number
// of times.
func TestHostAliasesDepth(t *testing.T) {
	home := t.TempDir()
	files := map[string]string{".ssh/config": "Include d" + itoa(0) + "\n"}
	for i := 0; i <= maxIncludeDepth+3; i++ {
		files[filepath.Join(".ssh", "d"+itoa(i))] = "Host h" + itoa(i) + "\nInclude d" + itoa(i+1) + "\n"
	}
	writeFiles(t, home, files)
	old := systemSSHConfig
	systemSSHConfig = filepath.Join(home, "none")
	defer func() { systemSSHConfig = old }()
	got := SSHResolver{Home: home}.HostAliases("")
	if len(got) != maxIncludeDepth || got[0] != "h"+itoa(0) || got[len(got)-1] != "h"+itoa(maxIncludeDepth-1) {
		t.Errorf("HostAliases = %q, want h0 .. h%d", got, maxIncludeDepth-1)
	}

	// Each fan file includes every other: without a bound this is
	// exponential in the depth.
	fan := t.TempDir()
	files = map[string]string{".ssh/config": "Include fan/*\n"}
	for i := 0; i < 8; i++ {
		files[filepath.Join(".ssh", "fan", "f"+itoa(i))] = "Host f" + itoa(i) + "\nInclude fan/*\n"
	}
	writeFiles(t, fan, files)
	a := &aliasReader{r: SSHResolver{Home: fan}, seen: map[string]bool{}, open: map[string]bool{}}
	a.file(filepath.Join(fan, ".ssh", "config"), filepath.Join(fan, ".ssh"), 0)
	if a.reads > maxAliasFiles || len(a.out) != 8 {
		t.Errorf("fan-out: %d reads, aliases %q; want at most %d reads and f0..f7", a.reads, a.out, maxAliasFiles)
	}
}

func itoa(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }
