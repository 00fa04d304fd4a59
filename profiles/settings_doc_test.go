package profiles

import (
	"strings"
	"testing"
)

// TestSettingsDocumented: every row of the settings table explains itself,
// since "kq help config" and docs/config.md are built from Doc alone.
func TestSettingsDocumented(t *testing.T) {
	for _, s := range Settings {
		doc := strings.TrimSpace(s.Doc)
		switch {
		case doc == "":
			t.Errorf("setting %s has no Doc text", s.Key)
		case !strings.HasSuffix(doc, "."):
			t.Errorf("setting %s: Doc should be sentences ending in '.': %q", s.Key, doc)
		case strings.Count(doc, "`")%2 != 0:
			t.Errorf("setting %s: Doc has an unpaired backquote: %q", s.Key, doc)
		}
		if s.Flag != "" && strings.TrimSpace(s.Usage) == "" {
			t.Errorf("setting %s has flag --%s but no Usage", s.Key, s.Flag)
		}
	}
}
