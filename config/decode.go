package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/kq-dev/kq/profiles"
	yaml "go.yaml.in/yaml/v3"
)

// decoder decodes one file; lines records the line of every key it
// decoded ("defaults.linger", `profiles."p".kernel`), for profiles show.
type decoder struct {
	file  string
	lines map[string]int
}

func (d decoder) errf(n *yaml.Node, key, format string, args ...any) error {
	return d.wrapf(n, key, nil, format, args...)
}

// wrapf is errf that keeps err as the cause; an empty format says no more
// than err does.
func (d decoder) wrapf(n *yaml.Node, key string, err error, format string, args ...any) error {
	return &Error{File: d.file, Line: n.Line, Key: key, Msg: fmt.Sprintf(format, args...), Err: err}
}

// layer decodes one profile mapping; every key is checked by name and type
// so the error names the key instead of a decoder's internals.
func (d decoder) layer(n *yaml.Node, path string) (profiles.Layer, error) {
	var l profiles.Layer
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return l, nil
	}
	if n.Kind != yaml.MappingNode {
		return l, d.errf(n, path, "want a mapping of settings, got %s", kindName(n))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := path + "." + k.Value
		if seen[k.Value] {
			return l, d.errf(k, key, "set twice")
		}
		seen[k.Value] = true
		if d.lines != nil {
			d.lines[key] = k.Line
		}
		if profiles.IsBlock(k.Value) {
			if err := d.block(&l, k.Value, v, key); err != nil {
				return l, err
			}
			continue
		}
		s := profiles.Lookup(k.Value)
		if s == nil {
			return l, d.errf(k, key, "unknown key (known: %s)", strings.Join(profiles.Keys(), ", "))
		}
		if err := d.setting(&l, s, k, v, key); err != nil {
			return l, err
		}
	}
	return l, nil
}

// block decodes a mapping of settings such as slurm: {time: 2:00}.
func (d decoder) block(l *profiles.Layer, name string, n *yaml.Node, path string) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return d.errf(n, path, "want a mapping of %s settings, got %s", name, kindName(n))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := path + "." + k.Value
		if seen[k.Value] {
			return d.errf(k, key, "set twice")
		}
		seen[k.Value] = true
		if d.lines != nil {
			d.lines[key] = k.Line
		}
		s := profiles.LookupSub(name, k.Value)
		if s == nil {
			return d.errf(k, key, "unknown key (known: %s)", strings.Join(profiles.SubKeys(name), ", "))
		}
		if err := d.setting(l, s, k, v, key); err != nil {
			return err
		}
	}
	return nil
}

// setting decodes one value and stores it, after the setting's own check.
func (d decoder) setting(l *profiles.Layer, s *profiles.Setting, k, v *yaml.Node, key string) error {
	val, err := d.value(s.Kind, v, key)
	if err != nil {
		return err
	}
	if str, ok := val.(string); ok && s.Check != nil {
		if err := s.Check(str); err != nil {
			return d.wrapf(v, key, err, "")
		}
	}
	if err := s.Set(l, val); err != nil {
		return d.wrapf(k, key, err, "")
	}
	return nil
}

// value decodes n as a value of kind k.
func (d decoder) value(k profiles.Kind, n *yaml.Node, key string) (any, error) {
	switch k {
	case profiles.KindString:
		return d.str(n, key)
	case profiles.KindDuration, profiles.KindInterval:
		return d.duration(n, key)
	case profiles.KindBool:
		return d.boolean(n, key)
	case profiles.KindNumber:
		return d.number(n, key)
	case profiles.KindCount:
		return d.count(n, key)
	case profiles.KindCommand:
		return d.command(n, key)
	case profiles.KindVars:
		return d.env(n, key)
	}
	return nil, d.errf(n, key, "kq cannot decode a setting of kind %s", k)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "nothing"
	}
	return "a string"
}

func (d decoder) str(n *yaml.Node, key string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Tag == "!!bool" ||
		n.Tag == "!!map" || n.Tag == "!!seq" {
		return "", d.errf(n, key, "want a string, got %s", kindName(n))
	}
	return n.Value, nil
}

func (d decoder) env(n *yaml.Node, key string) (map[string]string, error) {
	if n.Kind != yaml.MappingNode {
		return nil, d.errf(n, key, "want a mapping of NAME: value, got %s", kindName(n))
	}
	m := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			return nil, d.errf(v, key+"."+k.Value, "want a scalar value, got %s", kindName(v))
		}
		m[k.Value] = v.Value
	}
	return m, nil
}

func (d decoder) duration(n *yaml.Node, key string) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return 0, d.errf(n, key, "want a duration like 5m or 30s, got %s", kindName(n))
	}
	t, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, d.wrapf(n, key, err, "want a duration like 5m or 30s, got %q", n.Value)
	}
	return t, nil
}

func (d decoder) boolean(n *yaml.Node, key string) (bool, error) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		return false, d.errf(n, key, "want true or false, got %s", kindName(n))
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		return false, d.wrapf(n, key, err, "want true or false: %v", err)
	}
	return b, nil
}

// command accepts a list of words or one string split as a shell would.
func (d decoder) command(n *yaml.Node, key string) ([]string, error) {
	switch n.Kind {
	case yaml.SequenceNode:
		var words []string
		for _, w := range n.Content {
			if w.Kind != yaml.ScalarNode || w.Tag == "!!null" {
				return nil, d.errf(w, key, "list items must be strings, got %s", kindName(w))
			}
			words = append(words, w.Value)
		}
		if len(words) == 0 {
			return nil, d.errf(n, key, "empty command")
		}
		return words, nil
	case yaml.ScalarNode:
		if n.Tag != "!!str" {
			break
		}
		words, err := profiles.SplitCommand(n.Value)
		if err != nil {
			return nil, d.wrapf(n, key, err, "")
		}
		return words, nil
	}
	return nil, d.errf(n, key, "want a list of words or a command string, got %s", kindName(n))
}

func (d decoder) number(n *yaml.Node, key string) (int, error) {
	var c int
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&c) != nil || c < 0 {
		return 0, d.errf(n, key, "want a whole number of at least 0, got %s", kindName(n))
	}
	return c, nil
}

func (d decoder) count(n *yaml.Node, key string) (int, error) {
	var c int
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&c) != nil || c < 1 {
		return 0, d.errf(n, key, "want a whole number of at least 1, got %s", kindName(n))
	}
	return c, nil
}
