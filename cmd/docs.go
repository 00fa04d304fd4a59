package cmd

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// Issue 12 point 6: docs/ holds a page per command (docs/cli, cobra/doc's
// Markdown) and a page per help topic (config, profiles, exit codes), all
// generated from the command tree and the settings table. TestDocs fails
// when the committed pages differ from what the code says; regenerate with
//
//	go test ./cmd -run TestDocs -update

// docsNote heads every topic page.
const docsNote = "This page is `kq help %s`. It is generated from kq's source " +
	"(`go test ./cmd -run TestDocs -update`): edit the source, not this page."

// writeDocs writes the reference pages of root's tree into dir, replacing
// every page of docs/cli, so a removed command leaves no page behind.
func writeDocs(root *cobra.Command, dir string) error {
	cli := filepath.Join(dir, "cli")
	old, err := filepath.Glob(filepath.Join(cli, "*.md"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(cli, 0o755); err != nil {
		return err
	}
	noDateTag(root)
	if err := doc.GenMarkdownTree(root, cli); err != nil {
		return fmt.Errorf("command pages: %w", err)
	}
	for _, t := range helpTopics() {
		page := t.doc().markdown(t.title, fmt.Sprintf(docsNote, t.name))
		if err := os.WriteFile(filepath.Join(dir, t.file), []byte(page), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// noDateTag leaves out cobra's "Auto generated ... on DATE" line, which
// would make every regeneration differ.
func noDateTag(c *cobra.Command) {
	c.DisableAutoGenTag = true
	for _, sub := range c.Commands() {
		noDateTag(sub)
	}
}
