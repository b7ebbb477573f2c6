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
	Table string
	// Children are the child tables to draft; when empty, the tables whose
	// declared foreign keys reference the root (or, when the source
	// declares none, those with columns named like the root's key).
	Children []string
	Domain   string // kebab-case; default from the table
	System   string // the legacy system's name; default "legacy"
	// Connection is the environment variable the mapping will name.
	Connection string
}

// Scaffold drafts a domain spec and a mapping from a legacy table's schema:
// columns become fields with types, the primary key the key, child tables
// array fields: joined by their declared foreign keys to the root, or, in
// a source that declares none, by columns named like the root's key. Every
// PII class is set to personal and marked TODO for a person to decide.
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
	plural := kebab(strings.TrimSuffix(strings.ToLower(root.Name), "s")) + "s" // kebab-case: customer-accounts
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
	children, notes, err := scaffoldChildren(ctx, src, schema, root, o.Children)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range notes {
		fmt.Fprintf(&mapping, "# %s\n", n)
	}
	if len(children) > 0 {
		mapping.WriteString("children:\n")
	}
	writeChildren(&spec, &mapping, children, "      ", "  ", used)
	return []byte(spec.String()), []byte(mapping.String()), nil
}

// writeChildren drafts child collections: array fields of objects in the
// spec (at specIndent, among names already used) and children in the
// mapping (at mapIndent), each with the children of its own.
func writeChildren(spec, mapping *strings.Builder, children []scaffoldChild, specIndent, mapIndent string, used map[string]bool) {
	for _, ch := range children {
		child := ch.table
		field := fieldName(child.Name, used)
		fmt.Fprintf(spec, "%[1]s- name: %[2]s\n%[1]s  type: array\n%[1]s  pii: personal  # TODO\n%[1]s  items:\n%[1]s    type: object\n%[1]s    fields:\n", specIndent, field)
		fmt.Fprintf(mapping, "%[1]s%[2]s:\n%[1]s  table: %[3]s\n%[1]s  join: [%[4]s]\n%[1]s  parent: [%[5]s]\n", mapIndent, field, child.Name, strings.Join(ch.join, ", "), strings.Join(ch.parent, ", "))
		if len(child.PrimaryKey) > 0 {
			fmt.Fprintf(mapping, "%s  key: [%s]\n", mapIndent, strings.Join(child.PrimaryKey, ", "))
		}
		fmt.Fprintf(mapping, "%s  fields:\n", mapIndent)
		itemUsed := map[string]bool{}
		for _, col := range child.Ordered {
			if slices.Contains(lower(ch.join), col) {
				continue
			}
			name := fieldName(col, itemUsed)
			writeField(spec, specIndent+"      ", name, child.Columns[col])
			fmt.Fprintf(mapping, "%s    %s: %s\n", mapIndent, name, mapColumn(child.Columns[col]))
		}
		if len(ch.nested) > 0 {
			fmt.Fprintf(mapping, "%s  children:\n", mapIndent)
			writeChildren(spec, mapping, ch.nested, specIndent+"      ", mapIndent+"    ", itemUsed)
		}
	}
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

// scaffoldChild is a child table and how it joins the table above it.
type scaffoldChild struct {
	table        *TableInfo
	join, parent []string // the child's columns, the table above's, pairwise
	nested       []scaffoldChild
}

// maxScaffoldDepth bounds how deep scaffold follows foreign keys below the
// root (a child's children, theirs).
const maxScaffoldDepth = 3

// scaffoldChildren finds the child tables and their joins: the named ones
// (or, with none named, every table) joined by a declared foreign key to
// the root; when the source declares no foreign keys at all, by columns
// named like the root's key columns. notes are TODO comments for the
// mapping: how the joins were found, and tables left out.
func scaffoldChildren(ctx context.Context, src *Source, schema map[string]*TableInfo, root *TableInfo, named []string) ([]scaffoldChild, []string, error) {
	fks, err := src.ForeignKeys(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out []scaffoldChild
	var notes []string
	if len(fks) == 0 {
		return byColumnNames(schema, root, named)
	}
	notes = append(notes, "Children found from the source's declared foreign keys to "+root.Name+".")
	for _, name := range named {
		if schema[strings.ToLower(name)] == nil {
			return nil, nil, fmt.Errorf("child table %s is not in the source", name)
		}
	}
	found := map[string]bool{}
	for _, ch := range referencing(fks, schema, root, map[string]bool{strings.ToLower(root.Name): true}, 1, &notes) {
		if len(named) > 0 && !slices.ContainsFunc(named, func(n string) bool { return strings.EqualFold(n, ch.table.Name) }) {
			continue
		}
		found[strings.ToLower(ch.table.Name)] = true
		out = append(out, ch)
	}
	for _, name := range named {
		if !found[strings.ToLower(name)] {
			return nil, nil, fmt.Errorf("child table %s declares no foreign key to %s; scaffold it without --children and add the child by hand", name, root.Name)
		}
	}
	return out, notes, nil
}

// referencing lists the tables whose foreign keys reference t, each with
// the tables that reference it in turn (to maxScaffoldDepth, never back to
// a table on the way down); a table without a primary key is left out with
// a note.
func referencing(fks []ForeignKey, schema map[string]*TableInfo, t *TableInfo, above map[string]bool, depth int, notes *[]string) []scaffoldChild {
	var out []scaffoldChild
	for _, fk := range fks {
		child := schema[strings.ToLower(fk.Table)]
		switch {
		case !strings.EqualFold(fk.RefTable, t.Name) || child == nil || above[strings.ToLower(child.Name)]:
			continue
		case len(child.PrimaryKey) == 0:
			*notes = append(*notes, fmt.Sprintf("TODO: %s references %s (%s) but has no primary key: add it by hand, with key: the columns that identify its rows.", child.Name, t.Name, strings.Join(fk.Columns, ", ")))
			continue
		}
		ch := scaffoldChild{table: child, join: fk.Columns, parent: actualNames(t, fk.RefColumns)}
		if depth < maxScaffoldDepth {
			above[strings.ToLower(child.Name)] = true
			ch.nested = referencing(fks, schema, child, above, depth+1, notes)
			delete(above, strings.ToLower(child.Name))
		}
		out = append(out, ch)
	}
	return out
}

// byColumnNames is the fallback for sources without declared foreign keys:
// children joined by columns named like the root's key columns.
func byColumnNames(schema map[string]*TableInfo, root *TableInfo, named []string) ([]scaffoldChild, []string, error) {
	notes := []string{fmt.Sprintf("TODO: the source declares no foreign keys: children were found by columns named like %s's key (%s); check each join.",
		root.Name, strings.Join(root.PrimaryKey, ", "))}
	candidates := named
	if len(candidates) == 0 {
		for name, t := range schema {
			if name != strings.ToLower(root.Name) && name != MarkerTable && len(t.PrimaryKey) > 0 {
				candidates = append(candidates, t.Name)
			}
		}
		slices.Sort(candidates)
	}
	var out []scaffoldChild
	for _, ct := range candidates {
		child := schema[strings.ToLower(ct)]
		if child == nil {
			return nil, nil, fmt.Errorf("child table %s is not in the source", ct)
		}
		var join []string
		for _, k := range root.PrimaryKey {
			if c, ok := child.Columns[k]; ok {
				join = append(join, c.Name)
			}
		}
		if len(join) < len(root.PrimaryKey) || slices.Equal(child.PrimaryKey, root.PrimaryKey) {
			if len(named) > 0 {
				return nil, nil, fmt.Errorf("child table %s has no columns named %s to join %s by; scaffold it without --children and add the child by hand", child.Name, strings.Join(root.PrimaryKey, ", "), root.Name)
			}
			continue // not a child (or the same rows: a one-to-one extension)
		}
		out = append(out, scaffoldChild{table: child, join: join, parent: actualNames(root, root.PrimaryKey)})
	}
	return out, notes, nil
}

// actualNames spells columns as the table does.
func actualNames(t *TableInfo, cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c
		if col, ok := t.Columns[strings.ToLower(c)]; ok {
			out[i] = col.Name
		}
	}
	return out
}
