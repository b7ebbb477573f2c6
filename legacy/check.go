package legacy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/plinth-data/plinth"
)

// Check validates a resolved mapping against the live source before any
// data is read: unknown tables and columns, values whose type cannot fill
// their field, and what diff sync and change capture rely on — every
// mapped table has a primary key, or the mapping declares a unique key,
// which the check then verifies is unique in the source (the one query
// that reads rows, and only as a count). Every problem is reported at once.
func Check(ctx context.Context, src *Source, m *Mapping) error {
	if m.Entity == nil {
		return fmt.Errorf("%s: the mapping is not resolved against the domain specs", m.File)
	}
	schema, err := src.Schema(ctx)
	if err != nil {
		return err
	}
	c := &checker{m: m, schema: schema, p: problems{file: m.File}}
	root := c.table(m.Table, m.lines.table)
	if root != nil {
		for _, col := range m.Key.Columns {
			c.column(root, col, m.Key.Line, "key column")
		}
		c.conditions(root, m.Where)
		for _, f := range m.Fields {
			c.field(root, f, "")
		}
		c.rootKey(root)
	}
	for _, ch := range m.Children {
		c.child(ch, root, "")
	}
	if err := c.p.err(); err != nil {
		return err
	}
	m.schema = schema
	if m.Key.Unique && !slices.Equal(root.PrimaryKey, lower(m.Key.Columns)) {
		c.unique = append([]uniqueKey{{root, m.Key.Columns, m.Key.Line, "key.unique"}}, c.unique...)
	}
	for _, u := range c.unique {
		if err := c.verifyUnique(ctx, src, u); err != nil {
			return err
		}
	}
	return c.p.err()
}

type checker struct {
	m      *Mapping
	schema map[string]*TableInfo
	p      problems
	unique []uniqueKey // declared unique keys, verified in the source last
}

// uniqueKey is a key a mapping declares unique on a table without a
// primary key on it.
type uniqueKey struct {
	t    *TableInfo
	cols []string
	line int
	what string
}

func (c *checker) table(name string, line int) *TableInfo {
	t := c.schema[strings.ToLower(name)]
	if t == nil {
		c.p.add(line, "table %s is not in the source", name)
	}
	return t
}

func (c *checker) column(t *TableInfo, name string, line int, what string) (Column, bool) {
	col, ok := t.Columns[strings.ToLower(name)]
	if !ok {
		c.p.add(line, "%s %s is not a column of %s", what, name, t.Name)
	}
	return col, ok
}

func (c *checker) conditions(t *TableInfo, conds []Condition) {
	for _, cond := range conds {
		c.column(t, cond.Column, cond.Line, "where column")
	}
}

// field checks a field's columns and that what its transforms make can
// fill the field's type.
func (c *checker) field(t *TableInfo, f *FieldMap, within string) {
	if f.First != nil {
		return
	}
	if f.field == nil { // an item of a lookup child: its columns only
		for _, name := range fieldColumns([]*FieldMap{f}) {
			c.column(t, name, f.Line, "column")
		}
		return
	}
	kind := ""
	switch {
	case f.HasConstant:
		kind = valueKind(f.Constant)
	case len(f.Columns) > 0:
		for _, name := range f.Columns {
			c.column(t, name, f.Line, "column")
		}
		kind = "text"
	default:
		col, ok := c.column(t, f.Column, f.Line, "column")
		if !ok {
			return
		}
		kind = typeFamily(col.Type)
	}
	for _, tr := range f.Transforms {
		kind = c.afterTransform(kind, tr)
	}
	if hint := mismatch(f.field.Type, kind); hint != "" {
		source := f.Column
		if source == "" {
			source = "its value"
		}
		c.p.add(f.Line, "field %s%s is %s but %s is %s: %s", within, f.Field, f.field.Type, source, kind, hint)
	}
}

func (c *checker) afterTransform(kind string, tr Transform) string {
	switch tr.Name {
	case "date":
		return "date"
	case "datetime":
		return "datetime"
	case "integer":
		return "int"
	case "number":
		return "float"
	case "concat":
		return "text"
	case "lookup":
		return tr.lookup.kind()
	}
	return kind
}

// mismatch says how to fix a value kind that cannot fill a field type ("" when it can).
func mismatch(t plinth.Type, kind string) string {
	if kind == "" {
		return ""
	}
	ok := map[plinth.Type][]string{
		plinth.TypeString: {"text", "int", "float", "date", "datetime", "bool"}, plinth.TypeUUID: {"text"},
		plinth.TypeInteger: {"int"}, plinth.TypeNumber: {"int", "float"}, plinth.TypeBoolean: {"bool", "int"},
		plinth.TypeDate: {"date", "datetime"}, plinth.TypeDateTime: {"datetime", "date"},
	}[t]
	if slices.Contains(ok, kind) {
		return ""
	}
	switch {
	case kind == "text" && (t == plinth.TypeDate || t == plinth.TypeDateTime):
		return fmt.Sprintf("add a %s transform with the text's formats", t)
	case kind == "text" && (t == plinth.TypeInteger || t == plinth.TypeNumber):
		return "add an integer or number transform"
	case kind == "text" && t == plinth.TypeBoolean:
		return "decode it with a lookup"
	}
	return "the types do not match"
}

func valueKind(v any) string {
	switch v.(type) {
	case string:
		return "text"
	case int64:
		return "int"
	case float64:
		return "float"
	case bool:
		return "bool"
	}
	return ""
}

// rootKey checks that rows can be identified: a primary key within the
// key columns, or a declared unique key.
func (c *checker) rootKey(t *TableInfo) {
	if e := c.m.Entity; e.Key.Type == plinth.KeyInteger && c.m.Key.Generate == "" && len(c.m.Key.Columns) == 1 {
		if col, ok := t.Columns[strings.ToLower(c.m.Key.Columns[0])]; ok && typeFamily(col.Type) != "int" {
			c.p.add(c.m.Key.Line, "%s's key %s is an integer but key column %s is %s", e.Plural, e.Key.Name, col.Name, col.Type)
		}
	}
	if c.m.Key.Unique {
		return
	}
	if len(t.PrimaryKey) == 0 {
		c.p.add(c.m.Key.Line, "table %s has no primary key: diff sync and change capture cannot follow its rows; if %s is unique, declare key.unique: true (the check verifies it)", t.Name, strings.Join(c.m.Key.Columns, ", "))
		return
	}
	if !subset(t.PrimaryKey, lower(c.m.Key.Columns)) {
		c.p.add(c.m.Key.Line, "table %s's primary key (%s) is not within the key columns (%s): rows with the same key would collide; declare key.unique: true if the key columns are unique", t.Name, strings.Join(t.PrimaryKey, ", "), strings.Join(c.m.Key.Columns, ", "))
	}
}

// child checks a child, its links and its own children against the
// source; parent is the table it joins (nil when that is unknown).
func (c *checker) child(ch *ChildMap, parent *TableInfo, within string) {
	what := "child " + within + ch.Field
	for _, h := range ch.Through {
		t := c.table(h.Table, h.Line)
		c.joins(t, h.Join, parent, h.Parent, h.Line, what+": link "+h.Table)
		if t != nil {
			c.conditions(t, h.Where)
			h.Key = c.rowKey(t, h.Key, h.Unique, h.Line, what+": link "+h.Table)
		}
		parent = t
	}
	t := c.table(ch.Table, ch.Line)
	c.joins(t, ch.Join, parent, ch.Parent, ch.Line, what)
	if t == nil {
		return
	}
	for _, col := range append(slices.Clone(ch.Key), ch.OrderBy...) {
		c.column(t, col, ch.Line, "column")
	}
	c.conditions(t, ch.Where)
	for _, f := range ch.Fields {
		c.field(t, f, within+ch.Field+".")
	}
	ch.Key = c.rowKey(t, ch.Key, ch.Unique, ch.Line, what)
	for _, nc := range ch.Children {
		c.child(nc, t, within+ch.Field+".")
	}
}

// joins checks that a join's columns are in the joined table, its parent
// columns in the table it joins, and that each pair can compare (integers
// and text can: the values are converted; other kinds must agree).
func (c *checker) joins(t *TableInfo, join []string, parent *TableInfo, parentCols []string, line int, what string) {
	for i, col := range join {
		var jc, pc Column
		var jok, pok bool
		if t != nil {
			jc, jok = c.column(t, col, line, "join column")
		}
		if parent != nil && i < len(parentCols) {
			pc, pok = c.column(parent, parentCols[i], line, "parent column")
		}
		if jok && pok {
			jf, pf := typeFamily(jc.Type), typeFamily(pc.Type)
			if jf != pf && !(jf == "int" && pf == "text" || jf == "text" && pf == "int") {
				c.p.add(line, "%s: join column %s (%s) cannot be compared with parent column %s (%s)", what, jc.Name, jc.Type, pc.Name, pc.Type)
			}
		}
	}
}

// rowKey checks what identifies a joined table's rows, as diff sync and
// change capture need: its primary key, which a declared key must cover,
// or a key declared unique, which the check verifies in the source (as
// the root's). It returns the key to use.
func (c *checker) rowKey(t *TableInfo, key []string, unique bool, line int, what string) []string {
	switch {
	case len(key) == 0:
		if len(t.PrimaryKey) == 0 {
			c.p.add(line, "%s: table %s has no primary key: name the columns that identify its rows under key, with unique: true (the check verifies it)", what, t.Name)
		}
		return t.PrimaryKey
	case unique:
		ok := true
		for _, col := range key {
			_, found := c.column(t, col, line, "key column")
			ok = ok && found
		}
		if ok && !slices.Equal(t.PrimaryKey, lower(key)) {
			c.unique = append(c.unique, uniqueKey{t, key, line, what + ": unique"})
		}
	case len(t.PrimaryKey) == 0:
		for _, col := range key {
			c.column(t, col, line, "key column")
		}
		c.p.add(line, "%s: table %s has no primary key: diff sync and change capture cannot follow its rows; if %s is unique, declare unique: true (the check verifies it)", what, t.Name, strings.Join(key, ", "))
	case !subset(t.PrimaryKey, lower(key)):
		c.p.add(line, "%s: key (%s) does not cover the table's primary key (%s)", what, strings.Join(key, ", "), strings.Join(t.PrimaryKey, ", "))
	}
	return key
}

// verifyUnique counts key values held by more than one row.
func (c *checker) verifyUnique(ctx context.Context, src *Source, u uniqueKey) error {
	cols := c.m.quotedColumns(src, u.t.Name, u.cols)
	q := fmt.Sprintf("SELECT COUNT(*) FROM (SELECT %s FROM %s GROUP BY %s HAVING COUNT(*) > 1) dup", cols, src.quote(u.t.Name), cols)
	var n int64
	if err := src.DB.QueryRowContext(ctx, q).Scan(&n); err != nil {
		return fmt.Errorf("verifying that the key of %s is unique: %w", u.t.Name, err)
	}
	if n > 0 {
		c.p.add(u.line, "%s: %d value(s) of (%s) are held by more than one row of %s", u.what, n, strings.Join(u.cols, ", "), u.t.Name)
	}
	return nil
}

func lower(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = strings.ToLower(x)
	}
	return out
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
