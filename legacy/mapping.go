// Package legacy brings data from legacy databases (MariaDB/MySQL,
// PostgreSQL, SQL Server) into Plinth and keeps it in step: mapping files
// that say how a legacy table becomes records of a domain, checks of a
// mapping against the live source, a full load from one consistent
// snapshot, a hash-diff sync through the one write path, and synthetic
// legacy databases (fixtures) for demos and tests. It reads the source
// only.
package legacy

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/spec"
)

// Kind is the engine of a legacy source.
type Kind string

// Source kinds.
const (
	KindMariaDB   Kind = "mariadb"
	KindMySQL     Kind = "mysql"
	KindPostgres  Kind = "postgres"
	KindSQLServer Kind = "sqlserver"
)

// Kinds lists the source kinds a mapping may name.
var Kinds = []Kind{KindMariaDB, KindMySQL, KindPostgres, KindSQLServer}

// Mapping says how the rows of one legacy table (and its child tables)
// become the records of one entity. It is loaded from a mapping file
// (<domain>.<source>.mapping.yaml) beside the domain spec.
type Mapping struct {
	File   string
	Domain string // domain name
	Plural string // entity plural
	// System names the legacy system: the sourceSystem of the events a
	// sync or change capture writes.
	System string
	Kind   Kind
	// Connection names the environment variable that holds the source's
	// connection string: credentials never live in the file.
	Connection string
	Table      string
	Key        KeyMap
	Where      []Condition
	Fields     []*FieldMap
	Children   []*ChildMap
	Lookups    map[string]*Lookup

	// Rewrite, when set, rewrites every record after it is built, before
	// it is compared or written: the guardrail's obfuscation of real data
	// on its way into development or staging. It must be deterministic.
	Rewrite func(e *plinth.Entity, data map[string]any) (map[string]any, error)

	Entity *plinth.Entity // resolved by Resolve
	lines  lines
	schema map[string]*TableInfo // the source's tables, set by Check
}

// lines remembers where things were declared, for the check's messages.
type lines struct {
	table, key, entity int
}

// KeyMap says how the root table's key columns form the record key.
type KeyMap struct {
	Columns []string
	// Separator joins composite keys into a text key ("-" by default).
	Separator string
	// Generate "uuid" gives each record a key derived from its legacy key
	// (stable across runs) and keeps the legacy key in LegacyField.
	Generate    string
	LegacyField string
	// Unique declares the columns unique when the table has no primary
	// key on them; the check verifies it in the source.
	Unique bool
	Line   int
}

// Condition is a row filter: a row is kept when every condition holds.
// Values compare as trimmed text, ignoring case.
type Condition struct {
	Column string
	In     []string // the column's value is one of these
	NotIn  []string // it is none of these (a null is none of anything)
	IsNull *bool
	Line   int
}

// FieldMap fills one field of a record (or of a child item).
type FieldMap struct {
	Field       string
	Column      string   // one column
	Columns     []string // several, joined by a concat transform
	Constant    any
	HasConstant bool
	First       *FirstMap
	Transforms  []Transform
	Line        int

	field *plinth.Field // resolved
	col   string        // Column in lower case, as rows name it (resolved)
}

// FirstMap takes one value from the first item of a child collection
// (for example the UPRN of the current display address).
type FirstMap struct {
	Child   string
	Item    string // the item's field
	When    string // a boolean item field that must be true
	Current bool   // only items whose end is absent or not yet past
}

// ChildMap is a collection of items from a child table joined by key; it
// fills the array field of its name. A child may be reached through link
// tables (Through) and may hold children of its own (Children), so a
// mapping follows joins to any depth.
type ChildMap struct {
	Field string
	Table string
	// Join pairs child columns with Parent, in order: the columns of the
	// table it joins (the root's key columns by default; for a nested child
	// or one reached through links, the enclosing or last link table's
	// columns, always named): a member row joins its tenancy by house_ref,
	// an address its person by person_id.
	Join   []string
	Parent []string
	// Through lists the link tables between the enclosing table and Table,
	// nearest the enclosing table first (a member's phones through its
	// contact links); their rows only lead to the child's.
	Through []*Hop
	// Children are joined to this child's rows: collections that fill
	// array fields of its items, or lookups its items take first of.
	Children []*ChildMap
	// Key is the child table's own key (for ordering and change capture);
	// OrderBy orders the items (Key when empty). Unique declares it unique
	// on a table without a primary key; the check verifies it.
	Key      []string
	Unique   bool
	OrderBy  []string
	Where    []Condition
	Fields   []*FieldMap
	Distinct bool   // drop items equal to an earlier one (duplicate phones)
	Rows     string // all (default), current or historic, by EndField
	EndField string // the item field holding the end date
	// Lookup marks a child that fills no field: its items only serve
	// first (a tenancy's property, a claim's status). Its item fields are
	// free names, converted by the field that takes them.
	Lookup bool
	Line   int

	field *plinth.Field
	up    *ChildMap // the child this one is nested in; nil under the root
}

// Hop is a link table on the way to a child's table: its Join columns pair
// with Parent, the columns of the table before it.
type Hop struct {
	Table        string
	Join, Parent []string
	// Key identifies its rows (the primary key by default; set by Check);
	// Unique as for a child.
	Key    []string
	Unique bool
	Where  []Condition // link rows kept (a link type)
	Line   int
}

// Lookup decodes codes: a value found in Values becomes its entry, any
// other becomes Default (or the row is rejected when there is none).
type Lookup struct {
	Name       string
	Values     map[string]any
	Default    any
	HasDefault bool
	IgnoreCase bool
	Line       int
}

// Error lists every problem found, one per line, each "file:line: message".
type Error struct {
	Problems []string
}

func (e *Error) Error() string { return strings.Join(e.Problems, "\n") }

// LoadFile reads and parses a mapping file.
func LoadFile(path string) (*Mapping, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the mapping: %w", err)
	}
	return Parse(path, data)
}

// Parse loads a mapping; file names it in messages. Every problem is
// reported at once.
func Parse(file string, data []byte) (*Mapping, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if err != nil && err != io.EOF {
		return nil, &Error{Problems: []string{spec.SyntaxProblem(file, data, err)}}
	}
	if err == io.EOF || len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
		return nil, &Error{Problems: []string{fmt.Sprintf("%s:1: the mapping is empty", file)}}
	}
	l := &loader{spec.YAMLProblems{File: file}}
	m := l.mapping(doc.Content[0])
	if len(l.Problems) > 0 {
		return nil, &Error{Problems: l.Problems}
	}
	return m, nil
}

// MappingFiles lists the mapping files in dir (for scaffolding and docs).
func MappingFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && spec.IsMappingFile(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

type loader struct{ spec.YAMLProblems }

func (l *loader) str(n *yaml.Node, what string) string {
	if n == nil {
		return ""
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Value == "" {
		l.Errorf(n, "%s must be a non-empty string", what)
		return ""
	}
	return n.Value
}

func (l *loader) boolean(n *yaml.Node, what string) bool {
	if n == nil {
		return false
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		l.Errorf(n, "%s must be true or false", what)
	}
	return b
}

// strs reads a string or a list of strings.
func (l *loader) strs(n *yaml.Node, what string) []string {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		if s := l.str(n, what); s != "" {
			return []string{s}
		}
		return nil
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		l.Errorf(n, "%s must be a string or a non-empty list of strings", what)
		return nil
	}
	var out []string
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode || c.Tag == "!!null" {
			l.Errorf(c, "%s must hold strings", what)
			continue
		}
		out = append(out, c.Value)
	}
	return out
}

// scalar decodes a YAML scalar into a Go value: string, int64, float64,
// bool or nil.
func (l *loader) scalar(n *yaml.Node, what string) any {
	if n.Kind != yaml.ScalarNode {
		l.Errorf(n, "%s must be a single value", what)
		return nil
	}
	switch n.Tag {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		_ = n.Decode(&b)
		return b
	case "!!int":
		var i int64
		if n.Decode(&i) == nil {
			return i
		}
	case "!!float":
		var f float64
		if n.Decode(&f) == nil {
			return f
		}
	}
	return n.Value
}

func (l *loader) mapping(n *yaml.Node) *Mapping {
	k := l.Mapping(n, "mapping", []string{"domain", "entity", "source", "table", "key", "fields"}, "where", "children", "lookups")
	if k == nil {
		return nil
	}
	m := &Mapping{File: l.File, Domain: l.str(k["domain"], "domain"), Plural: l.str(k["entity"], "entity"), Table: l.str(k["table"], "table")}
	m.lines.table, m.lines.key = k["table"].Line, k["key"].Line
	m.lines.entity = k["entity"].Line
	l.source(k["source"], m)
	m.Key = l.key(k["key"])
	m.Where = l.conditions(k["where"])
	m.Lookups = l.lookups(k["lookups"])
	m.Fields = l.fields(k["fields"], "fields", m.Lookups)
	if c := k["children"]; c != nil {
		ck := l.keysInOrder(c, "children")
		for _, kv := range ck {
			if ch := l.child(kv[0], kv[1], m.Lookups); ch != nil {
				m.Children = append(m.Children, ch)
			}
		}
	}
	l.crossCheck(m)
	return m
}

// keysInOrder returns the key and value nodes of a mapping in file order.
func (l *loader) keysInOrder(n *yaml.Node, what string) [][2]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		l.Errorf(n, "%s must be a mapping", what)
		return nil
	}
	var out [][2]*yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if seen[n.Content[i].Value] {
			l.Errorf(n.Content[i], "%s: %q is repeated", what, n.Content[i].Value)
			continue
		}
		seen[n.Content[i].Value] = true
		out = append(out, [2]*yaml.Node{n.Content[i], n.Content[i+1]})
	}
	return out
}

func (l *loader) source(n *yaml.Node, m *Mapping) {
	k := l.Mapping(n, "source", []string{"system", "kind", "connection"})
	if k == nil {
		return
	}
	m.System = l.str(k["system"], "source.system")
	m.Kind = Kind(l.str(k["kind"], "source.kind"))
	if m.Kind != "" && !slices.Contains(Kinds, m.Kind) {
		l.Errorf(k["kind"], "source.kind %q is not one of mariadb, mysql, postgres, sqlserver", m.Kind)
	}
	m.Connection = l.str(k["connection"], "source.connection")
	if strings.Contains(m.Connection, "://") || strings.ContainsAny(m.Connection, "@=;") {
		l.Errorf(k["connection"], "source.connection names the environment variable (or configuration entry) that holds the connection string, such as PLINTH_LEGACY_CASE; never put the connection string itself (with its credentials) in the file")
		m.Connection = ""
	}
}

func (l *loader) key(n *yaml.Node) KeyMap {
	k := l.Mapping(n, "key", []string{"columns"}, "separator", "generate", "legacyField", "unique")
	if k == nil {
		return KeyMap{}
	}
	km := KeyMap{Columns: l.strs(k["columns"], "key.columns"), Separator: "-", Line: n.Line}
	if s := k["separator"]; s != nil {
		km.Separator = s.Value
	}
	km.Unique = l.boolean(k["unique"], "key.unique")
	if g := k["generate"]; g != nil {
		km.Generate = l.str(g, "key.generate")
		if km.Generate != "uuid" {
			l.Errorf(g, "key.generate must be uuid (a key derived from the legacy key, stable across runs)")
		}
		km.LegacyField = l.str(k["legacyField"], "key.legacyField")
		if km.LegacyField == "" {
			l.Errorf(n, "key: a generated key needs legacyField, the field that keeps the legacy id")
		}
	} else if k["legacyField"] != nil {
		l.Errorf(k["legacyField"], "key.legacyField is only for a generated key (generate: uuid)")
	}
	return km
}

func (l *loader) conditions(n *yaml.Node) []Condition {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		l.Errorf(n, "where must be a list of conditions")
		return nil
	}
	var out []Condition
	for _, c := range n.Content {
		k := l.Mapping(c, "where", []string{"column"}, "in", "notIn", "isNull")
		if k == nil {
			continue
		}
		cond := Condition{Column: l.str(k["column"], "where.column"), In: l.strs(k["in"], "where.in"), NotIn: l.strs(k["notIn"], "where.notIn"), Line: c.Line}
		if k["isNull"] != nil {
			b := l.boolean(k["isNull"], "where.isNull")
			cond.IsNull = &b
		}
		if n := btoi(k["in"] != nil) + btoi(k["notIn"] != nil) + btoi(k["isNull"] != nil); n != 1 {
			l.Errorf(c, "where: give exactly one of in, notIn, isNull")
		}
		out = append(out, cond)
	}
	return out
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (l *loader) lookups(n *yaml.Node) map[string]*Lookup {
	out := map[string]*Lookup{}
	if n == nil {
		return out
	}
	for _, kv := range l.keysInOrder(n, "lookups") {
		k := l.Mapping(kv[1], "lookup "+kv[0].Value, []string{"values"}, "default", "ignoreCase")
		if k == nil {
			continue
		}
		lk := &Lookup{Name: kv[0].Value, Values: map[string]any{}, Line: kv[0].Line, IgnoreCase: l.boolean(k["ignoreCase"], "ignoreCase")}
		for _, v := range l.keysInOrder(k["values"], "lookup "+lk.Name+": values") {
			code := v[0].Value
			if lk.IgnoreCase {
				code = strings.ToLower(code)
			}
			lk.Values[code] = l.scalar(v[1], "a lookup value")
		}
		if d := k["default"]; d != nil {
			lk.Default, lk.HasDefault = l.scalar(d, "lookup default"), true
		}
		out[lk.Name] = lk
	}
	return out
}

func (l *loader) fields(n *yaml.Node, what string, lookups map[string]*Lookup) []*FieldMap {
	var out []*FieldMap
	for _, kv := range l.keysInOrder(n, what) {
		if f := l.field(kv[0], kv[1], lookups); f != nil {
			out = append(out, f)
		}
	}
	return out
}

func (l *loader) field(name, n *yaml.Node, lookups map[string]*Lookup) *FieldMap {
	f := &FieldMap{Field: name.Value, Line: name.Line}
	what := "field " + f.Field
	if n.Kind == yaml.ScalarNode { // shorthand: field: column
		f.Column = l.str(n, what)
		return f
	}
	k := l.Mapping(n, what, nil, "column", "columns", "constant", "first", "transforms")
	if k == nil {
		return nil
	}
	f.Column = l.str(k["column"], what+": column")
	if k["columns"] != nil {
		f.Columns = l.strs(k["columns"], what+": columns")
	}
	if c := k["constant"]; c != nil {
		f.Constant, f.HasConstant = l.scalar(c, what+": constant"), true
	}
	if fn := k["first"]; fn != nil {
		fk := l.Mapping(fn, what+": first", []string{"child", "item"}, "when", "current")
		if fk != nil {
			f.First = &FirstMap{Child: l.str(fk["child"], "first.child"), Item: l.str(fk["item"], "first.item"),
				When: l.str(fk["when"], "first.when"), Current: l.boolean(fk["current"], "first.current")}
		}
	}
	if sources := btoi(f.Column != "") + btoi(k["columns"] != nil) + btoi(f.HasConstant) + btoi(f.First != nil); sources != 1 {
		l.Errorf(n, "%s: give exactly one of column, columns, constant, first", what)
	}
	if t := k["transforms"]; t != nil {
		if t.Kind != yaml.SequenceNode {
			l.Errorf(t, "%s: transforms must be a list", what)
		} else {
			for _, tn := range t.Content {
				if tr, ok := l.transform(tn, what, lookups); ok {
					f.Transforms = append(f.Transforms, tr)
				}
			}
		}
	}
	if len(f.Columns) > 0 && !slices.ContainsFunc(f.Transforms, func(t Transform) bool { return t.Name == "concat" }) {
		l.Errorf(n, "%s: several columns need a concat transform to join them", what)
	}
	return f
}

func (l *loader) child(name, n *yaml.Node, lookups map[string]*Lookup) *ChildMap {
	what := "child " + name.Value
	k := l.Mapping(n, what, []string{"table", "join", "fields"}, "parent", "key", "orderBy", "where", "distinct", "rows", "endField", "lookup", "through", "children", "unique")
	if k == nil {
		return nil
	}
	c := &ChildMap{Field: name.Value, Table: l.str(k["table"], what+": table"), Join: l.strs(k["join"], what+": join"),
		Parent: l.strs(k["parent"], what+": parent"), Key: l.strs(k["key"], what+": key"), OrderBy: l.strs(k["orderBy"], what+": orderBy"), Where: l.conditions(k["where"]),
		Distinct: l.boolean(k["distinct"], what+": distinct"), Rows: "all", Line: name.Line, Lookup: l.boolean(k["lookup"], what+": lookup"),
		Unique: l.boolean(k["unique"], what+": unique")}
	c.Fields = l.fields(k["fields"], what+": fields", lookups)
	if r := k["rows"]; r != nil {
		c.Rows = l.str(r, what+": rows")
		if !slices.Contains([]string{"all", "current", "historic"}, c.Rows) {
			l.Errorf(r, "%s: rows must be all, current or historic", what)
		}
	}
	c.EndField = l.str(k["endField"], what+": endField")
	if c.Rows != "all" && c.EndField == "" {
		l.Errorf(n, "%s: rows %s needs endField, the item field holding the end date", what, c.Rows)
	}
	if c.Unique && len(c.Key) == 0 {
		l.Errorf(k["unique"], "%s: unique declares key unique: name the key", what)
	}
	if t := k["through"]; t != nil {
		if t.Kind != yaml.SequenceNode || len(t.Content) == 0 {
			l.Errorf(t, "%s: through must be a list of link tables", what)
		} else {
			for _, hn := range t.Content {
				if h := l.hop(hn, what); h != nil {
					c.Through = append(c.Through, h)
				}
			}
		}
	}
	if cn := k["children"]; cn != nil {
		for _, kv := range l.keysInOrder(cn, what+": children") {
			if nc := l.child(kv[0], kv[1], lookups); nc != nil {
				nc.up = c
				c.Children = append(c.Children, nc)
			}
		}
	}
	return c
}

func (l *loader) hop(n *yaml.Node, what string) *Hop {
	what += ": through"
	k := l.Mapping(n, what, []string{"table", "join", "parent"}, "key", "where", "unique")
	if k == nil {
		return nil
	}
	h := &Hop{Table: l.str(k["table"], what+": table"), Join: l.strs(k["join"], what+": join"), Parent: l.strs(k["parent"], what+": parent"),
		Key: l.strs(k["key"], what+": key"), Where: l.conditions(k["where"]), Line: n.Line, Unique: l.boolean(k["unique"], what+": unique")}
	if len(h.Join) != len(h.Parent) && len(h.Parent) > 0 {
		l.Errorf(n, "%s %s: join names %d column(s), one per parent column (%s)", what, h.Table, len(h.Join), strings.Join(h.Parent, ", "))
	}
	if h.Unique && len(h.Key) == 0 {
		l.Errorf(k["unique"], "%s %s: unique declares key unique: name the key", what, h.Table)
	}
	return h
}

// crossCheck reports what only the whole file shows: children and lookups
// named but not declared, joins that do not match the key.
func (l *loader) crossCheck(m *Mapping) {
	l.crossCheckLevel(m.Children, m.Fields, "", m.Key.Columns)
}

// crossCheckLevel checks the children and fields of one level: the root
// (rootKey set: a direct child joins the root's key by default) or a
// child's items (within names it).
func (l *loader) crossCheckLevel(list []*ChildMap, fields []*FieldMap, within string, rootKey []string) {
	children := map[string]*ChildMap{}
	for _, c := range list {
		children[c.Field] = c
		what := "child " + within + c.Field
		if len(c.Parent) == 0 {
			if rootKey == nil || len(c.Through) > 0 {
				l.Problems = append(l.Problems, fmt.Sprintf("%s:%d: %s: name its parent columns (those of %s its join columns pair with)", l.File, c.Line, what, c.joinsTo()))
			}
			c.Parent = rootKey
		}
		if len(c.Join) != len(c.Parent) && len(c.Parent) > 0 {
			l.Problems = append(l.Problems, fmt.Sprintf("%s:%d: %s: join names %d column(s), one per parent column (%s)", l.File, c.Line, what, len(c.Join), strings.Join(c.Parent, ", ")))
		}
		l.crossCheckLevel(c.Children, c.Fields, within+c.Field+".", nil)
	}
	for _, f := range fields {
		if f.First != nil && children[f.First.Child] == nil {
			l.Problems = append(l.Problems, fmt.Sprintf("%s:%d: field %s%s: first.child %q is not declared under its children", l.File, f.Line, within, f.Field, f.First.Child))
		}
		if c := children[f.Field]; c != nil && !c.Lookup {
			l.Problems = append(l.Problems, fmt.Sprintf("%s:%d: field %s%s is filled by the child collection of that name; map it in one place", l.File, f.Line, within, f.Field))
		}
	}
}

// joinsTo names the table a child's join columns pair with, for messages.
func (c *ChildMap) joinsTo() string {
	switch {
	case len(c.Through) > 0:
		return "the link table " + c.Through[len(c.Through)-1].Table
	case c.up != nil:
		return c.up.Table
	}
	return "the root table"
}
