package cmd

import (
	"bytes"
	"context"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kq-dev/kq/config"
	"github.com/kq-dev/kq/profiles"
	"github.com/spf13/cobra"
)

var updateDocs = flag.Bool("update", false, "rewrite docs/ from the command tree and the settings table")

// docsDir is the committed docs, seen from this package.
const docsDir = "../docs"

func newDocsRoot() *cobra.Command {
	return NewCmdRoot(&Factory{Ctx: context.Background(), IO: IO{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}})
}

// TestDocs: the committed docs/cli pages and topic pages are exactly what
// the code generates, so a new command, flag or setting that is not
// regenerated fails here. -update rewrites them.
func TestDocs(t *testing.T) {
	if *updateDocs {
		if err := writeDocs(newDocsRoot(), docsDir); err != nil {
			t.Fatal(err)
		}
		return
	}
	fresh := t.TempDir()
	if err := writeDocs(newDocsRoot(), fresh); err != nil {
		t.Fatal(err)
	}
	const hint = "regenerate with: go test ./cmd -run TestDocs -update"
	want := map[string]bool{}
	err := filepath.WalkDir(fresh, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(fresh, p)
		want[rel] = true
		gen, _ := os.ReadFile(p)
		have, err := os.ReadFile(filepath.Join(docsDir, rel))
		switch {
		case err != nil:
			t.Errorf("docs/%s is missing; %s", rel, hint)
		case !bytes.Equal(gen, have):
			t.Errorf("docs/%s is stale; %s", rel, hint)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pages, _ := filepath.Glob(filepath.Join(docsDir, "cli", "*.md"))
	for _, p := range pages {
		if rel, _ := filepath.Rel(docsDir, p); !want[rel] {
			t.Errorf("docs/%s documents no command; %s", rel, hint)
		}
	}
	if len(want) < 10 {
		t.Errorf("only %d pages generated", len(want))
	}
}

// TestExitCodesDocumented: every Exit constant in root.go is in
// exitCodeDocs with its value, and so in kq help exit-codes.
func TestExitCodesDocumented(t *testing.T) {
	consts := exitConstants(t)
	if len(consts) < 8 {
		t.Fatalf("found only %d Exit constants in root.go: %v", len(consts), consts)
	}
	documented := map[string]int{}
	for _, e := range exitCodeDocs {
		documented[e.name] = e.code
		if strings.TrimSpace(e.meaning) == "" {
			t.Errorf("%s has no meaning", e.name)
		}
	}
	help := exitCodesHelp().plain()
	for name, val := range consts {
		code, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("exit code %s (%d) is not documented in exitCodeDocs (cmd/exitcodes.go)", name, val)
		case code != val:
			t.Errorf("exitCodeDocs says %s is %d, root.go says %d", name, code, val)
		}
		if !strings.Contains(help, "\n  "+strconv.Itoa(val)+" ") {
			t.Errorf("kq help exit-codes does not list %d", val)
		}
	}
	for name := range documented {
		if _, ok := consts[name]; !ok {
			t.Errorf("exitCodeDocs documents %s, which root.go does not define", name)
		}
	}
}

// exitConstants reads the Exit* constants and their values from root.go.
func exitConstants(t *testing.T) map[string]int {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "root.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, id := range vs.Names {
			if !strings.HasPrefix(id.Name, "Exit") || i >= len(vs.Values) {
				continue
			}
			lit, ok := vs.Values[i].(*ast.BasicLit)
			if !ok {
				t.Errorf("%s is not a literal; this test reads literals", id.Name)
				continue
			}
			v, _ := strconv.Atoi(lit.Value)
			out[id.Name] = v
		}
		return true
	})
	return out
}

// TestHelpConfig: kq help config names every setting with its type,
// variable and flag, explains every kind the table uses, and its example
// is a config kq accepts.
func TestHelpConfig(t *testing.T) {
	text := configHelp().plain()
	for _, s := range profiles.Settings {
		term := "\n  " + s.Key + " (" + s.Kind.String()
		if !strings.Contains(text, term) {
			t.Errorf("kq help config has no entry %q", term)
		}
		for _, w := range []string{s.Env, s.Flag} {
			if w != "" && !strings.Contains(text, w) {
				t.Errorf("kq help config does not name %s of %s", w, s.Key)
			}
		}
		if kindDocs[s.Kind] == "" {
			t.Errorf("kind %s of %s has no entry in kindDocs", s.Kind, s.Key)
		}
		if !strings.Contains(text, "  - "+s.Kind.String()+": ") {
			t.Errorf("kq help config does not explain the type %s", s.Kind)
		}
	}
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(exampleConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file, true)
	if err != nil {
		t.Fatalf("the example config does not load: %v", err)
	}
	if len(cfg.Names()) != 2 {
		t.Errorf("example profiles: %q", cfg.Names())
	}
	for _, name := range cfg.Names() {
		if _, err := config.Resolve(cfg, name, nil); err != nil {
			t.Errorf("example profile %s: %v", name, err)
		}
	}
	if !strings.Contains(text, "    "+strings.Split(exampleConfig, "\n")[0]) {
		t.Error("the example is not in the help text")
	}
}

// TestHelpTopicJoinsCommand: where a command has a topic's name (kq
// config init/path), the topic becomes part of that command's help
// instead of a second "config".
func TestHelpTopicJoinsCommand(t *testing.T) {
	root := &cobra.Command{Use: "kq"}
	cfg := &cobra.Command{Use: "config", Short: "Write or find the config file"}
	cfg.AddCommand(&cobra.Command{Use: "path", Run: func(*cobra.Command, []string) {}})
	root.AddCommand(cfg)
	addHelpTopics(root)
	n := 0
	for _, c := range root.Commands() {
		if c.Name() == "config" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d commands named config", n)
	}
	if !strings.HasPrefix(cfg.Long, "Write or find the config file\n\n") || !strings.Contains(cfg.Long, "Where kq looks:") {
		t.Errorf("config's long help:\n%s", cfg.Long)
	}
	if c, _, _ := root.Find([]string{"profiles"}); c == root || c.Runnable() || !strings.Contains(c.Long, "{connection_file}") {
		t.Error("no profiles help topic")
	}
}

// TestHelpDocRender: the two renderings of one text, on the parts that
// are easy to get wrong.
func TestHelpDocRender(t *testing.T) {
	d := helpDoc{
		{heading: "Title"},
		{para: "A `literal` word and " + strings.Repeat("long ", 20) + "text."},
		{table: &docTable{head: []string{"a", "b"}, rows: [][]string{{"`x|y`", "pipe"}}}},
	}
	plain := d.plain()
	if !strings.HasPrefix(plain, "Title:\nA literal word") {
		t.Errorf("plain:\n%s", plain)
	}
	for _, l := range strings.Split(plain, "\n") {
		if len(l) > plainWidth {
			t.Errorf("line longer than %d: %q", plainWidth, l)
		}
	}
	md := d.markdown("T", "note")
	for _, want := range []string{"# T\n\nnote\n", "## Title\n", "A `literal` word", "| `x\\|y` | pipe |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
