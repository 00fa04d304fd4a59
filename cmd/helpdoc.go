package cmd

import (
	"fmt"
	"strings"
)

// A help text is written once, as blocks, and rendered twice: as plain
// text for "kq help TOPIC" and as Markdown for docs/. In both, text in
// backquotes is literal; plain text drops the backquotes.

// helpDoc is one help text.
type helpDoc []helpBlock

// helpBlock is one part of a help text; exactly one field is set.
type helpBlock struct {
	heading string    // a section title
	para    string    // a paragraph
	items   []string  // a bulleted list
	steps   []string  // a numbered list
	code    string    // literal lines, shown as they are
	lang    string    // the code's language, for Markdown
	table   *docTable // rows of columns
}

// docTable is a table; in plain text, a table with defs set shows each row
// as a term (its first column, the others in brackets) over its last
// column, for tables whose last column is long prose.
type docTable struct {
	head []string
	rows [][]string
	defs bool
}

// plainWidth is where plain paragraphs wrap.
const plainWidth = 78

// plain renders d for a terminal.
func (d helpDoc) plain() string {
	var b strings.Builder
	for i, bl := range d {
		if i > 0 && d[i-1].heading == "" { // a heading sits on its block
			b.WriteString("\n")
		}
		switch {
		case bl.heading != "":
			b.WriteString(unquoteDoc(bl.heading) + ":\n")
		case bl.para != "":
			b.WriteString(wrap(unquoteDoc(bl.para), "", "", plainWidth))
		case bl.items != nil:
			for _, it := range bl.items {
				b.WriteString(wrap(unquoteDoc(it), "  - ", "    ", plainWidth))
			}
		case bl.steps != nil:
			for n, it := range bl.steps {
				b.WriteString(wrap(unquoteDoc(it), fmt.Sprintf("  %d. ", n+1), "     ", plainWidth))
			}
		case bl.code != "":
			for _, l := range strings.Split(strings.TrimRight(bl.code, "\n"), "\n") {
				b.WriteString(strings.TrimRight("    "+l, " ") + "\n")
			}
		case bl.table != nil:
			b.WriteString(bl.table.plain())
		}
	}
	return b.String()
}

func (t *docTable) plain() string {
	var b strings.Builder
	if t.defs {
		for _, r := range t.rows {
			term := unquoteDoc(r[0])
			var extra []string
			for _, c := range r[1 : len(r)-1] {
				if c != "" {
					extra = append(extra, unquoteDoc(c))
				}
			}
			if len(extra) > 0 {
				term += " (" + strings.Join(extra, ", ") + ")"
			}
			b.WriteString("  " + term + "\n")
			b.WriteString(wrap(unquoteDoc(r[len(r)-1]), "      ", "      ", plainWidth))
		}
		return b.String()
	}
	widths := make([]int, len(t.head))
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r[:len(r)-1] {
			widths[i] = max(widths[i], len(unquoteDoc(c)))
		}
	}
	for _, r := range append([][]string{t.head}, t.rows...) {
		var lead strings.Builder
		lead.WriteString("  ")
		for i, c := range r[:len(r)-1] {
			fmt.Fprintf(&lead, "%-*s  ", widths[i], unquoteDoc(c))
		}
		b.WriteString(wrap(unquoteDoc(r[len(r)-1]), lead.String(), strings.Repeat(" ", lead.Len()), plainWidth))
	}
	return b.String()
}

// markdown renders d as a Markdown page titled title.
func (d helpDoc) markdown(title, note string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n%s\n", title, note)
	for _, bl := range d {
		b.WriteString("\n")
		switch {
		case bl.heading != "":
			b.WriteString("## " + bl.heading + "\n")
		case bl.para != "":
			b.WriteString(bl.para + "\n")
		case bl.items != nil:
			for _, it := range bl.items {
				b.WriteString("- " + it + "\n")
			}
		case bl.steps != nil:
			for n, it := range bl.steps {
				fmt.Fprintf(&b, "%d. %s\n", n+1, it)
			}
		case bl.code != "":
			b.WriteString("```" + bl.lang + "\n" + strings.TrimRight(bl.code, "\n") + "\n```\n")
		case bl.table != nil:
			b.WriteString(bl.table.markdown())
		}
	}
	return b.String()
}

func (t *docTable) markdown() string {
	var b strings.Builder
	row := func(cells []string) {
		esc := make([]string, len(cells))
		for i, c := range cells {
			esc[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		b.WriteString("| " + strings.Join(esc, " | ") + " |\n")
	}
	row(t.head)
	sep := make([]string, len(t.head))
	for i := range sep {
		sep[i] = "---"
	}
	row(sep)
	for _, r := range t.rows {
		row(r)
	}
	return b.String()
}

// unquoteDoc drops the backquotes that mark literal text.
func unquoteDoc(s string) string { return strings.ReplaceAll(s, "`", "") }

// wrap fills s into lines of at most width columns (longer words stand
// alone), the first starting with first and the others with rest.
func wrap(s, first, rest string, width int) string {
	var b strings.Builder
	line := first
	empty := true
	for _, w := range strings.Fields(s) {
		if !empty && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line, empty = rest, true
		}
		if !empty {
			line += " "
		}
		line += w
		empty = false
	}
	b.WriteString(line + "\n")
	return b.String()
}
