package legacy

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
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
	for _, c := range m.Children {
		cols = append(cols, c.Parent...)
	}
	cols = append(cols, fieldColumns(m.Fields)...)
	return dedupe(cols)
}

func (c *ChildMap) columns() []string {
	cols := append(slices.Clone(c.Join), c.Key...)
	cols = append(cols, c.OrderBy...)
	for _, w := range c.Where {
		cols = append(cols, w.Column)
	}
	return dedupe(append(cols, fieldColumns(c.Fields)...))
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
	kids := map[string]map[string][]Row{}
	for _, c := range m.Children {
		rows, err := s.childRows(ctx, m, c, parentValues(roots, c.Parent))
		if err != nil {
			return nil, err
		}
		kids[c.Field] = rows
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
func (m *Mapping) buildRow(r Row, kids map[string]map[string][]Row) Built {
	b := Built{Legacy: m.legacyKey(r)}
	b.Key, b.Err = m.RecordKey(b.Legacy)
	switch {
	case b.Err != nil:
	case !keep(m.Where, r):
		b.Filtered = true
	default:
		children := map[string][]Row{}
		for _, c := range m.Children {
			children[c.Field] = kids[c.Field][values(r, c.Parent).Text("\x00")]
		}
		b.Data, b.Err = m.Build(r, children)
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

// childRows reads a child table's rows joined to the parent values,
// grouped by them, in the child's order.
func (s *Snapshot) childRows(ctx context.Context, m *Mapping, c *ChildMap, parents []LegacyKey) (map[string][]Row, error) {
	out := map[string][]Row{}
	if len(parents) == 0 {
		return out, nil
	}
	var args []any
	order := c.OrderBy
	if len(order) == 0 {
		order = c.Key
	}
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s", m.quotedColumns(s.src, c.Table, c.columns()), s.src.quote(m.actualTable(c.Table)),
		keyIn(s.src, m.quotedKey(s.src, c.Table, c.Join), parents, &args), strings.Join(m.quotedKey(s.src, c.Table, append(slices.Clone(order), c.Key...)), ", "))
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", c.Table, err)
	}
	for _, r := range rows {
		text := values(r, c.Join).Text("\x00")
		out[text] = append(out[text], r)
	}
	return out, nil
}

// keysWhere lists the legacy keys of the root rows whose columns hold one
// of the values (the records a child or lookup row's change touches).
func (s *Snapshot) keysWhere(ctx context.Context, m *Mapping, cols []string, vals []LegacyKey) ([]LegacyKey, error) {
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
