package legacy

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// quotedColumns is a comma-separated list of the columns, spelled as the
// source spells them (after Check) and quoted.
func (m *Mapping) quotedColumns(src *Source, table string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = src.quote(m.actual(table, c))
	}
	return strings.Join(out, ", ")
}

// actual is a column's name as the source spells it.
func (m *Mapping) actual(table, col string) string {
	if t := m.schema[strings.ToLower(table)]; t != nil {
		if c, ok := t.Columns[strings.ToLower(col)]; ok {
			return c.Name
		}
	}
	return col
}

func (m *Mapping) actualTable(table string) string {
	if t := m.schema[strings.ToLower(table)]; t != nil {
		return t.Name
	}
	return table
}

// rootColumns are the root table's columns the mapping reads: only those,
// so unmapped (possibly sensitive) columns are never fetched.
func (m *Mapping) rootColumns() []string {
	cols := slices.Clone(m.Key.Columns)
	for _, c := range m.Where {
		cols = append(cols, c.Column)
	}
	cols = append(cols, firstParents(m.Children)...)
	cols = append(cols, fieldColumns(m.Fields)...)
	return dedupe(cols)
}

// firstParents are the columns of a table its children join: the parent
// columns of each child's first step (its first link, or itself).
func firstParents(children []*ChildMap) []string {
	var cols []string
	for _, c := range children {
		if len(c.Through) > 0 {
			cols = append(cols, c.Through[0].Parent...)
		} else {
			cols = append(cols, c.Parent...)
		}
	}
	return cols
}

// columns are the child table's columns the mapping reads.
func (c *ChildMap) columns() []string {
	cols := append(slices.Clone(c.Join), c.Key...)
	cols = append(cols, c.OrderBy...)
	for _, w := range c.Where {
		cols = append(cols, w.Column)
	}
	cols = append(cols, firstParents(c.Children)...)
	return dedupe(append(cols, fieldColumns(c.Fields)...))
}

// next is the parent columns of the step after link i: the next link's
// or the child's own.
func (c *ChildMap) next(i int) []string {
	if i+1 < len(c.Through) {
		return c.Through[i+1].Parent
	}
	return c.Parent
}

// order is what orders a child's rows.
func (c *ChildMap) order() []string {
	if len(c.OrderBy) > 0 {
		return append(slices.Clone(c.OrderBy), c.Key...)
	}
	return c.Key
}

func fieldColumns(fs []*FieldMap) []string {
	var cols []string
	for _, f := range fs {
		if f.Column != "" {
			cols = append(cols, f.Column)
		}
		cols = append(cols, f.Columns...)
	}
	return cols
}

func dedupe(cols []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range cols {
		if !seen[strings.ToLower(c)] {
			seen[strings.ToLower(c)] = true
			out = append(out, c)
		}
	}
	return out
}

// after is the keyset condition "key > after", written out so that every
// dialect (SQL Server has no row comparisons) runs it.
func (m *Mapping) after(src *Source, after LegacyKey, args *[]any) string {
	var ors []string
	for i := range m.Key.Columns {
		var ands []string
		for j := 0; j <= i; j++ {
			op := "="
			if j == i {
				op = ">"
			}
			*args = append(*args, after[j])
			ands = append(ands, fmt.Sprintf("%s %s %s", src.quote(m.actual(m.Table, m.Key.Columns[j])), op, src.placeholder(len(*args))))
		}
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return "(" + strings.Join(ors, " OR ") + ")"
}

// keyIn is "columns in keys".
func keyIn(src *Source, cols []string, keys []LegacyKey, args *[]any) string {
	if len(cols) == 1 {
		ph := make([]string, len(keys))
		for i, k := range keys {
			*args = append(*args, k[0])
			ph[i] = src.placeholder(len(*args))
		}
		return fmt.Sprintf("%s IN (%s)", cols[0], strings.Join(ph, ", "))
	}
	ors := make([]string, len(keys))
	for i, k := range keys {
		ands := make([]string, len(cols))
		for j, c := range cols {
			*args = append(*args, k[j])
			ands[j] = fmt.Sprintf("%s = %s", c, src.placeholder(len(*args)))
		}
		ors[i] = "(" + strings.Join(ands, " AND ") + ")"
	}
	return strings.Join(ors, " OR ")
}

func limit(src *Source, n int) string {
	if src.Kind == KindSQLServer {
		return fmt.Sprintf(" OFFSET 0 ROWS FETCH NEXT %d ROWS ONLY", n)
	}
	return fmt.Sprintf(" LIMIT %d", n)
}

func (m *Mapping) quotedKey(src *Source, table string, cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = src.quote(m.actual(table, c))
	}
	return out
}

// Built is one root row made into a record (or why it could not be).
type Built struct {
	Legacy LegacyKey
	Key    any            // the record key (nil when it could not be formed)
	Data   map[string]any // nil when filtered out or rejected
	// Filtered is set for rows the mapping's conditions exclude.
	Filtered bool
	Err      error
}

// readBatch reads up to n root rows after a key (nil: from the start), in
// key order, with their children, and builds their records.
func (s *Snapshot) readBatch(ctx context.Context, m *Mapping, after LegacyKey, n int) ([]Built, error) {
	var args []any
	q := fmt.Sprintf("SELECT %s FROM %s", m.quotedColumns(s.src, m.Table, m.rootColumns()), s.src.quote(m.actualTable(m.Table)))
	if after != nil {
		q += " WHERE " + m.after(s.src, after, &args)
	}
	q += " ORDER BY " + strings.Join(m.quotedKey(s.src, m.Table, m.Key.Columns), ", ") + limit(s.src, n)
	roots, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", m.Table, err)
	}
	return s.buildAll(ctx, m, roots)
}

// readKeys reads the root rows with the given legacy keys and builds their
// records; keys without a row are absent from the result.
func (s *Snapshot) readKeys(ctx context.Context, m *Mapping, keys []LegacyKey) ([]Built, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	var args []any
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s", m.quotedColumns(s.src, m.Table, m.rootColumns()), s.src.quote(m.actualTable(m.Table)),
		keyIn(s.src, m.quotedKey(s.src, m.Table, m.Key.Columns), keys, &args))
	roots, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", m.Table, err)
	}
	return s.buildAll(ctx, m, roots)
}

func (s *Snapshot) buildAll(ctx context.Context, m *Mapping, roots []Row) ([]Built, error) {
	kids := joined{}
	if err := s.fetchChildren(ctx, m, roots, m.Children, kids); err != nil {
		return nil, err
	}
	out := make([]Built, len(roots))
	build := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			out[i] = m.buildRow(roots[i], kids)
		}
	}
	// Building is CPU work: large batches are split over the cores (not
	// when records are rewritten, whose rewriter may keep state).
	parts := 1
	if len(roots) >= 256 && m.Rewrite == nil {
		parts = runtime.GOMAXPROCS(0)
	}
	var wg sync.WaitGroup
	for p := range parts {
		lo, hi := p*len(roots)/parts, (p+1)*len(roots)/parts
		wg.Add(1)
		go func() { defer wg.Done(); build(lo, hi) }()
	}
	wg.Wait()
	return out, nil
}

// buildRow makes one root row, with its children, into a record.
func (m *Mapping) buildRow(r Row, kids joined) Built {
	b := Built{Legacy: m.legacyKey(r)}
	b.Key, b.Err = m.RecordKey(b.Legacy)
	switch {
	case b.Err != nil:
	case !keep(m.Where, r):
		b.Filtered = true
	default:
		b.Data, b.Err = m.build(r, kids.rowsOf)
		if b.Err == nil && m.Rewrite != nil {
			b.Data, b.Err = m.Rewrite(m.Entity, b.Data)
			if b.Err == nil {
				b.Key = b.Data[m.Entity.Key.Name]
			}
		}
	}
	if b.Filtered && m.Rewrite != nil {
		b.Key, _ = m.TargetKey(b.Legacy)
	}
	return b
}

// values reads columns of a row, in order.
func values(r Row, cols []string) LegacyKey {
	k := make(LegacyKey, len(cols))
	for i, c := range cols {
		k[i] = r[strings.ToLower(c)]
	}
	return k
}

// parentValues lists the distinct values of the columns among rows
// (rows with a null among them join nothing).
func parentValues(rows []Row, cols []string) []LegacyKey {
	var out []LegacyKey
	seen := map[string]bool{}
	for _, r := range rows {
		v := values(r, cols)
		if slices.Contains(v, nil) {
			continue
		}
		if t := v.Text("\x00"); !seen[t] {
			seen[t] = true
			out = append(out, v)
		}
	}
	return out
}

// joined holds the rows of the joined tables (links and children) read
// for a batch of root rows, by the *Hop or *ChildMap they were read for,
// grouped by their join values.
type joined map[any]map[string][]Row

// fetchChildren reads the rows of the children (their links, them, and
// their own children, level by level) joined to the parent rows: one
// query a table and level for the whole batch.
func (s *Snapshot) fetchChildren(ctx context.Context, m *Mapping, parents []Row, children []*ChildMap, out joined) error {
	for _, c := range children {
		rows := parents
		for i, h := range c.Through {
			cols := dedupe(append(append(append(slices.Clone(h.Join), h.Key...), conditionColumns(h.Where)...), c.next(i)...))
			g, err := s.joinRows(ctx, m, h.Table, cols, h.Join, h.Where, h.Key, parentValues(rows, h.Parent))
			if err != nil {
				return err
			}
			out[h] = g
			rows = flatten(g)
		}
		g, err := s.joinRows(ctx, m, c.Table, c.columns(), c.Join, nil, c.order(), parentValues(rows, c.Parent))
		if err != nil {
			return err
		}
		out[c] = g
		if len(c.Children) > 0 {
			if err := s.fetchChildren(ctx, m, flatten(g), c.Children, out); err != nil {
				return err
			}
		}
	}
	return nil
}

// rowsOf is a child's rows joined to one row of the table it joins,
// through its links; rows reached through several links come in the
// child's order, each once.
func (j joined) rowsOf(c *ChildMap, parent Row) []Row {
	rows := []Row{parent}
	for _, h := range c.Through {
		rows = joinedTo(rows, h.Parent, j[h])
	}
	out := joinedTo(rows, c.Parent, j[c])
	if len(rows) > 1 && len(out) > 1 {
		out = orderRows(out, c.order())
	}
	return out
}

// joinedTo lists the rows of g joined to rows by their cols (a row with
// a null among them joins nothing).
func joinedTo(rows []Row, cols []string, g map[string][]Row) []Row {
	if len(rows) == 1 {
		v := values(rows[0], cols)
		if slices.Contains(v, nil) {
			return nil
		}
		return g[v.Text("\x00")]
	}
	var out []Row
	for _, r := range rows {
		if v := values(r, cols); !slices.Contains(v, nil) {
			out = append(out, g[v.Text("\x00")]...)
		}
	}
	return out
}

// orderRows sorts rows by the columns and drops a row met twice (reached
// through two links), on a copy.
func orderRows(rows []Row, cols []string) []Row {
	out := make([]Row, 0, len(rows))
	seen := map[string]bool{}
	for _, r := range rows {
		if t := values(r, cols).Text("\x00"); !seen[t] || len(cols) == 0 {
			seen[t] = true
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b Row) int {
		for _, c := range cols {
			if n := compareValues(a[strings.ToLower(c)], b[strings.ToLower(c)]); n != 0 {
				return n
			}
		}
		return 0
	})
	return out
}

// compareValues orders two source values: nulls first, numbers and times
// by value, anything else as text.
func compareValues(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	switch x := a.(type) {
	case int64:
		if y, ok := b.(int64); ok {
			return cmp.Compare(x, y)
		}
	case float64:
		if y, ok := b.(float64); ok {
			return cmp.Compare(x, y)
		}
	case time.Time:
		if y, ok := b.(time.Time); ok {
			return x.Compare(y)
		}
	}
	return strings.Compare(toText(a), toText(b))
}

func flatten(g map[string][]Row) []Row {
	var out []Row
	for _, rows := range g {
		out = append(out, rows...)
	}
	return out
}

func conditionColumns(conds []Condition) []string {
	var out []string
	for _, c := range conds {
		out = append(out, c.Column)
	}
	return out
}

// joinChunk is how many values one query of a joined table names (a full
// load's batch of root rows; SQL Server takes at most 2,100 parameters).
const joinChunk = 1000

// joinRows reads the rows of a table whose join columns hold one of the
// values (joinChunk at a time), in order, kept by the conditions, grouped by
// their join values.
func (s *Snapshot) joinRows(ctx context.Context, m *Mapping, table string, cols, join []string, where []Condition, order []string, vals []LegacyKey) (map[string][]Row, error) {
	out := map[string][]Row{}
	for start := 0; start < len(vals); start += joinChunk {
		part := m.asColumns(table, join, vals[start:min(start+joinChunk, len(vals))])
		if len(part) == 0 {
			continue
		}
		var args []any
		q := fmt.Sprintf("SELECT %s FROM %s WHERE %s", m.quotedColumns(s.src, table, cols), s.src.quote(m.actualTable(table)),
			keyIn(s.src, m.quotedKey(s.src, table, join), part, &args))
		if len(order) > 0 {
			q += " ORDER BY " + strings.Join(m.quotedKey(s.src, table, order), ", ")
		}
		rows, err := s.query(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", table, err)
		}
		for _, r := range rows {
			if keep(where, r) {
				text := values(r, join).Text("\x00")
				out[text] = append(out[text], r)
			}
		}
	}
	return out, nil
}

// asColumns converts values to the type family of the columns they are
// compared with (a person number kept as text in a link table, an integer
// in its own): integers to text, text to integers (values that are not
// integers cannot match and are dropped). The grouping in Go compares
// them as trimmed text either way.
func (m *Mapping) asColumns(table string, cols []string, vals []LegacyKey) []LegacyKey {
	t := m.schema[strings.ToLower(table)]
	if t == nil {
		return vals
	}
	fams := make([]string, len(cols))
	convert := false
	for i, c := range cols {
		fams[i] = typeFamily(t.Columns[strings.ToLower(c)].Type)
		convert = convert || fams[i] == "text" || fams[i] == "int"
	}
	if !convert {
		return vals
	}
	out := make([]LegacyKey, 0, len(vals))
next:
	for _, v := range vals {
		var k LegacyKey // a copy, made only when a part changes
		for i, x := range v {
			var conv any
			switch s, isText := x.(string); {
			case x == nil || fams[i] == "text" && isText || fams[i] == "int" && !isText:
				continue
			case fams[i] == "text":
				if _, isTime := x.(time.Time); isTime {
					continue
				}
				conv = toText(x)
			case fams[i] == "int":
				n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
				if err != nil {
					continue next // it matches no row
				}
				conv = n
			default:
				continue
			}
			if k == nil {
				k = slices.Clone(v)
			}
			k[i] = conv
		}
		if k == nil {
			k = v
		}
		out = append(out, k)
	}
	return out
}

// keysWhere lists the legacy keys of the root rows whose columns hold one
// of the values (the records a child or lookup row's change touches).
func (s *Snapshot) keysWhere(ctx context.Context, m *Mapping, cols []string, vals []LegacyKey) ([]LegacyKey, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	vals = m.asColumns(m.Table, cols, vals)
	if len(vals) == 0 {
		return nil, nil
	}
	var args []any
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s", m.quotedColumns(s.src, m.Table, m.Key.Columns), s.src.quote(m.actualTable(m.Table)),
		keyIn(s.src, m.quotedKey(s.src, m.Table, cols), vals, &args))
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", m.Table, err)
	}
	out := make([]LegacyKey, len(rows))
	for i, r := range rows {
		out[i] = m.legacyKey(r)
	}
	return out, nil
}

// count is how many root rows the source holds (before filters), for progress.
func (s *Snapshot) count(ctx context.Context, m *Mapping) (int64, error) {
	rows, err := s.query(ctx, "SELECT COUNT(*) AS n FROM "+s.src.quote(m.actualTable(m.Table)))
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	n, _ := rows[0]["n"].(int64)
	return n, nil
}
