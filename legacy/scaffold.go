package legacy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
)

// ScaffoldOptions says what to draft.
type ScaffoldOptions struct {
	Table    string
	Children []string // child tables, joined by the root's key column names
	Domain   string   // kebab-case; default from the table
	System   string   // the legacy system's name; default "legacy"
	// Connection is the environment variable the mapping will name.
	Connection string
}

// Scaffold drafts a domain spec and a mapping from a legacy table's schema:
// columns become fields with types, the primary key the key, child tables
// (joined by columns named like the root's key) array fields. Every PII
// class is set to personal and marked TODO for a person to decide.
func Scaffold(ctx context.Context, src *Source, o ScaffoldOptions) (specYAML, mappingYAML []byte, err error) {
	schema, err := src.Schema(ctx)
	if err != nil {
		return nil, nil, err
	}
	root := schema[strings.ToLower(o.Table)]
	if root == nil {
		return nil, nil, fmt.Errorf("table %s is not in the source", o.Table)
	}
	if len(root.PrimaryKey) == 0 {
		return nil, nil, fmt.Errorf("table %s has no primary key: scaffold needs one to form the record key (declare key.unique in the mapping by hand if its columns are unique)", root.Name)
	}
	if o.System == "" {
		o.System = "legacy"
	}
	if o.Domain == "" {
		o.Domain = kebab(root.Name)
	}
	if o.Connection == "" {
		o.Connection = "PLINTH_LEGACY_" + strings.ToUpper(strings.ReplaceAll(o.Domain, "-", "_"))
	}
	entity := strings.TrimSuffix(camel(root.Name), "s")
	plural := kebab(entity) + "s"
	var spec, mapping strings.Builder
	fmt.Fprintf(&spec, `# Drafted by plinth legacy scaffold from %s on %s.
# TODO: review every field (names, types, required, formats, maxLength), set each
# pii class (none, personal or special) and fill in the description and owner.
domain: %s
description: "TODO: what %s holds."
owner:
  serviceArea: TODO
  productOwner: todo@example.gov.uk
sourceSystem: %s
entities:
  - name: %s
    plural: %s
    description: "TODO: one record per row of %s."
`, root.Name, time.Now().UTC().Format(time.DateOnly), o.Domain, o.Domain, o.System, entity, plural, root.Name)
	fmt.Fprintf(&mapping, `# Drafted by plinth legacy scaffold: how %s becomes %s. Add transforms
# (trim, dates from text, lookups), row filters and current/historic rules.
domain: %s
entity: %s
source:
  system: %s
  kind: %s
  connection: %s
table: %s
key:
  columns: [%s]
fields:
`, root.Name, plural, o.Domain, plural, o.System, src.Kind, o.Connection, root.Name, strings.Join(root.PrimaryKey, ", "))
	keyName, keyType := camel(strings.Join(root.PrimaryKey, "_")), "string"
	if len(root.PrimaryKey) == 1 && typeFamily(root.Columns[root.PrimaryKey[0]].Type) == "int" {
		keyType = "integer"
	}
	fmt.Fprintf(&spec, "    key:\n      name: %s\n      type: %s\n      pii: personal  # TODO\n    fields:\n", keyName, keyType)
	used := map[string]bool{keyName: true}
	for _, col := range root.Ordered {
		if slices.Contains(root.PrimaryKey, col) {
			continue
		}
		name := fieldName(col, used)
		writeField(&spec, "      ", name, root.Columns[col])
		fmt.Fprintf(&mapping, "  %s: %s\n", name, mapColumn(root.Columns[col]))
	}
	if len(o.Children) > 0 {
		mapping.WriteString("children:\n")
	}
	for _, ct := range o.Children {
		child := schema[strings.ToLower(ct)]
		if child == nil {
			return nil, nil, fmt.Errorf("child table %s is not in the source", ct)
		}
		var join []string
		for _, k := range root.PrimaryKey {
			if _, ok := child.Columns[k]; !ok {
				return nil, nil, fmt.Errorf("child table %s has no column %s to join %s by; scaffold it without --children and add the child by hand", child.Name, k, root.Name)
			}
			join = append(join, child.Columns[k].Name)
		}
		field := fieldName(child.Name, used)
		fmt.Fprintf(&spec, "      - name: %s\n        type: array\n        pii: personal  # TODO\n        items:\n          type: object\n          fields:\n", field)
		fmt.Fprintf(&mapping, "  %s:\n    table: %s\n    join: [%s]\n", field, child.Name, strings.Join(join, ", "))
		if len(child.PrimaryKey) > 0 {
			fmt.Fprintf(&mapping, "    key: [%s]\n", strings.Join(child.PrimaryKey, ", "))
		}
		mapping.WriteString("    fields:\n")
		itemUsed := map[string]bool{}
		for _, col := range child.Ordered {
			if slices.Contains(lower(join), col) {
				continue
			}
			name := fieldName(col, itemUsed)
			writeField(&spec, "            ", name, child.Columns[col])
			fmt.Fprintf(&mapping, "      %s: %s\n", name, mapColumn(child.Columns[col]))
		}
	}
	return []byte(spec.String()), []byte(mapping.String()), nil
}

func writeField(b *strings.Builder, indent, name string, c Column) {
	fmt.Fprintf(b, "%s- name: %s\n%s  type: %s\n%s  pii: personal  # TODO\n", indent, name, indent, fieldType(c.Type), indent)
}

// mapColumn maps a column, trimming text.
func mapColumn(c Column) string {
	if typeFamily(c.Type) == "text" {
		return fmt.Sprintf("{column: %s, transforms: [trim, nullIfEmpty]}", c.Name)
	}
	return c.Name
}

func fieldType(t string) string {
	switch typeFamily(t) {
	case "int":
		return "integer"
	case "float":
		return "number"
	case "date":
		return "date"
	case "datetime":
		return "datetime"
	case "bool":
		return "boolean"
	}
	return "string"
}

// fieldName is the camelCase field name of a column, not a system field
// and not used before.
func fieldName(col string, used map[string]bool) string {
	name := camel(col)
	if name == "" || name == "version" || name == "createdAt" || name == "updatedAt" {
		name += "Legacy"
	}
	base := name
	for i := 2; used[name]; i++ {
		name = fmt.Sprintf("%s%d", base, i)
	}
	used[name] = true
	return name
}

// camel turns snake_case or MixedCase into camelCase without two capitals
// in a row (the house rule: no acronyms).
func camel(s string) string {
	var b strings.Builder
	upper := false
	for i, r := range strings.ToLower(s) {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			upper = b.Len() > 0
		case b.Len() == 0 && unicode.IsDigit(r):
			b.WriteString("f")
			b.WriteRune(r)
		case upper:
			b.WriteRune(unicode.ToUpper(r))
			upper = false
		default:
			_ = i
			b.WriteRune(r)
		}
	}
	return b.String()
}

func kebab(s string) string {
	var b strings.Builder
	for _, r := range camel(s) {
		if unicode.IsUpper(r) {
			b.WriteRune('-')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
