package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// entry is one documented value of values.yaml.
type entry struct {
	Key         string
	Type        string
	Default     string
	Description string
}

// parseValues walks values.yaml and returns every leaf value (and every
// map or list that is documented as a whole) with the text of the
// "# --" comment above it; continuation lines are the "#" lines that
// follow. A map whose keys carry their own comments is not an entry.
func parseValues(src []byte) ([]entry, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, fmt.Errorf("parsing values.yaml: %w", err)
	}
	if len(root.Content) == 0 {
		return nil, nil
	}
	var out []entry
	var walk func(prefix string, n *yaml.Node) error
	walk = func(prefix string, n *yaml.Node) error {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := k.Value
			if prefix != "" {
				key = prefix + "." + k.Value
			}
			desc := description(k.HeadComment)
			if v.Kind == yaml.MappingNode && desc == "" && len(v.Content) > 0 {
				if err := walk(key, v); err != nil {
					return err
				}
				continue
			}
			var val any
			if err := v.Decode(&val); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			def, err := json.Marshal(val)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			out = append(out, entry{Key: key, Type: typeOf(val), Default: string(def), Description: desc})
		}
		return nil
	}
	return out, walk("", root.Content[0])
}

// description returns the "# --" comment block, joined into one line.
func description(comment string) string {
	var parts []string
	in := false
	for _, line := range strings.Split(comment, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "# --"):
			in = true
			parts = append(parts[:0], strings.TrimSpace(strings.TrimPrefix(line, "# --")))
		case in && strings.HasPrefix(line, "#"):
			parts = append(parts, strings.TrimSpace(strings.TrimPrefix(line, "#")))
		}
	}
	return strings.TrimSpace(strings.Join(parts, " "))
}

func typeOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "list"
	case string:
		return "string"
	case bool:
		return "bool"
	case int, int64, float64:
		return "number"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

func generateReadme(name, version, appVersion, intro string, entries []entry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<!-- Generated from values.yaml by `make chart-readme` (hack/tools/helm); edit README.intro.md and the values' comments. -->\n")
	fmt.Fprintf(&b, "# %s\n\n", name)
	fmt.Fprintf(&b, "Version %s, components v%s.\n\n", version, appVersion)
	b.WriteString(strings.TrimSpace(intro))
	b.WriteString("\n\n## Values\n\n| key | type | default | description |\n| --- | --- | --- | --- |\n")
	for _, e := range entries {
		def := strings.ReplaceAll(e.Default, "|", "\\|")
		desc := strings.ReplaceAll(e.Description, "|", "\\|")
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", e.Key, e.Type, def, desc)
	}
	return b.String()
}
