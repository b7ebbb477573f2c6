package sqlite

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/plinth-data/plinth"
)

// table is how an entity is laid out in the database, with the SQL the
// store runs against it. It is derived from the entity alone, so entities
// loaded separately from the same spec share one table.
type table struct {
	e       *plinth.Entity
	name    string
	key     *column
	fields  []*column          // every field but the key, in spec order
	byName  map[string]*column // by field name, key included
	sides   []*side
	byParam map[string]*side

	selectSQL string // SELECT … FROM, without WHERE
	getSQL    string
	insertSQL string
	updateSQL string
	deleteSQL string
	existsSQL string

	lastUpdatedSQL string
}

// column is the column of one top-level field.
type column struct {
	field *plinth.Field
	name  string
	index bool // an exact or range filter compares the column
	fold  bool // a prefix or contains filter compares its folded copy
}

func (c *column) foldName() string { return c.name + "__fold" }

// side is the side table of a filter that reaches into an array of
// objects: one row per record and distinct value, so that "any address
// with this postcode" is an index lookup.
type side struct {
	filter *plinth.Filter
	name   string
	array  string // the array field's name in record data
	item   string // the filtered field's name in each item
	// fold is set for string fields: the folded value sits beside the
	// value, so a filter may change between exact and prefix matching.
	fold bool

	deleteSQL string
	insertSQL string
}

// tableName is {domain}__{plural}, with '-' as '_'.
func tableName(e *plinth.Entity) string {
	return strings.ReplaceAll(e.Domain.Name+"__"+e.Plural, "-", "_")
}

// snake turns a camelCase field name into a snake_case column name.
func snake(name string) string {
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func sqlType(f *plinth.Field) string {
	switch f.Type {
	case plinth.TypeInteger, plinth.TypeBoolean:
		return "INTEGER"
	case plinth.TypeNumber:
		return "REAL"
	}
	return "TEXT" // strings, dates, datetimes, UUIDs, and JSON for objects and arrays
}

// table returns the layout of the entity.
func (s *Store) table(e *plinth.Entity) (*table, error) {
	if v, ok := s.tables.Load(e); ok {
		return v.(*table), nil
	}
	t, err := newTable(e)
	if err != nil {
		return nil, err
	}
	v, _ := s.tables.LoadOrStore(e, t)
	return v.(*table), nil
}

func newTable(e *plinth.Entity) (*table, error) {
	if e == nil || e.Domain == nil || len(e.Fields) == 0 || e.Fields[0].Name != e.Key.Name {
		return nil, fmt.Errorf("sqlite: the entity is not a loaded spec entity")
	}
	t := &table{e: e, name: tableName(e), byName: map[string]*column{}, byParam: map[string]*side{}}
	for i, f := range e.Fields {
		c := &column{field: f, name: snake(f.Name)}
		t.byName[f.Name] = c
		if i == 0 {
			t.key = c
		} else {
			t.fields = append(t.fields, c)
		}
	}
	for _, f := range e.Filters {
		if f.Array != nil {
			sd := &side{
				filter: f,
				name:   t.name + "__" + f.Param,
				array:  f.Array.Name,
				item:   f.Field.Name,
				fold:   f.Field.Type == plinth.TypeString,
			}
			sd.deleteSQL = fmt.Sprintf(`DELETE FROM %s WHERE "record_key" = ?`, quote(sd.name))
			sd.insertSQL = fmt.Sprintf(`INSERT OR IGNORE INTO %s ("record_key", "value", "fold") VALUES (?, ?, ?)`, quote(sd.name))
			t.sides = append(t.sides, sd)
			t.byParam[f.Param] = sd
			continue
		}
		c := t.byName[f.Path[0]]
		if c == nil {
			return nil, fmt.Errorf("sqlite: %s: filter %q names an unknown field", e.Name, f.Param)
		}
		if f.Folded() {
			c.fold = true
		} else if c != t.key {
			c.index = true // the key has its primary key index
		}
	}
	t.buildSQL()
	return t, nil
}

// selectCols lists the columns a record is read from, in scan order.
func (t *table) selectCols() []string {
	cols := []string{quote(t.key.name)}
	for _, c := range t.fields {
		cols = append(cols, quote(c.name))
	}
	return append(cols, `"version"`, `"created_at"`, `"updated_at"`)
}

// writeCols lists the field columns (and fold columns) written on insert
// and update, in the order fieldArgs produces their values.
func (t *table) writeCols() []string {
	var cols []string
	for _, c := range t.fields {
		cols = append(cols, quote(c.name))
		if c.fold {
			cols = append(cols, quote(c.foldName()))
		}
	}
	return cols
}

func (t *table) buildSQL() {
	q, k := quote(t.name), quote(t.key.name)
	t.selectSQL = fmt.Sprintf("SELECT %s FROM %s", strings.Join(t.selectCols(), ", "), q)
	t.getSQL = fmt.Sprintf("%s WHERE %s = ?", t.selectSQL, k)

	insertCols := []string{k}
	if t.key.fold {
		insertCols = append(insertCols, quote(t.key.foldName()))
	}
	insertCols = append(insertCols, t.writeCols()...)
	insertCols = append(insertCols, `"version"`, `"created_at"`, `"updated_at"`, quote(changeColumn))
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(insertCols)), ", ")
	t.insertSQL = fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", q, strings.Join(insertCols, ", "), marks)

	var sets []string
	for _, c := range t.writeCols() {
		sets = append(sets, c+" = ?")
	}
	sets = append(sets, `"version" = "version" + 1`, `"updated_at" = ?`, quote(changeColumn)+` = ?`)
	t.updateSQL = fmt.Sprintf(`UPDATE %s SET %s WHERE %s = ? AND "version" = ? RETURNING "version", "created_at"`,
		q, strings.Join(sets, ", "), k)
	t.deleteSQL = fmt.Sprintf(`DELETE FROM %s WHERE %s = ? AND "version" = ?`, q, k)
	t.existsSQL = fmt.Sprintf(`SELECT "version" FROM %s WHERE %s = ?`, q, k)
	t.buildChangeSQL()
}

// Prepare creates the tables, columns, indexes and side tables of the
// domains, or adds what is missing to existing ones. Shadow data (folded
// columns and side tables) that a filter needs and that is not yet
// maintained is filled from the existing rows. It runs in one transaction:
// either all of it happens or none.
func (s *Store) Prepare(ctx context.Context, domains []*plinth.Domain) error {
	x, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer x.tx.Rollback()
	// plinth_shadows records which shadow data is maintained, so a filter
	// that was removed and later added again is filled afresh.
	if _, err := x.tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS "plinth_shadows" (
		"name" TEXT PRIMARY KEY NOT NULL,
		"owner" TEXT NOT NULL,
		"kind" TEXT NOT NULL
	)`); err != nil {
		return fail("prepare", err)
	}
	if err := x.prepareAccess(ctx); err != nil {
		return fail("prepare access tables", err)
	}
	if err := x.prepareAudit(ctx); err != nil {
		return fail("prepare audit tables", err)
	}
	if err := x.prepareOutbox(ctx); err != nil {
		return fail("prepare outbox tables", err)
	}
	if err := x.prepareCheckpoints(ctx); err != nil {
		return fail("prepare the checkpoint table", err)
	}
	if err := x.prepareChanges(ctx); err != nil {
		return fail("prepare the change tracking tables", err)
	}
	for _, d := range domains {
		for _, e := range d.Entities {
			t, err := s.table(e)
			if err != nil {
				return err
			}
			if err := x.prepareTable(ctx, t); err != nil {
				return fmt.Errorf("sqlite: prepare %s: %w", t.name, err)
			}
		}
	}
	if err := x.tx.Commit(); err != nil {
		return fail("prepare", err)
	}
	return nil
}

func (x *tx) prepareTable(ctx context.Context, t *table) error {
	exec := func(query string, args ...any) error {
		_, err := x.tx.ExecContext(ctx, query, args...)
		return err
	}
	have, err := x.columns(ctx, t.name)
	if err != nil {
		return err
	}
	if len(have) == 0 {
		if err := exec(t.createSQL()); err != nil {
			return err
		}
	} else {
		// Additive evolution: new fields and new folded copies become new
		// (nullable) columns.
		for _, c := range append([]*column{t.key}, t.fields...) {
			if !have[c.name] {
				if err := exec(fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", quote(t.name), quote(c.name), sqlType(c.field))); err != nil {
					return err
				}
			}
			if c.fold && !have[c.foldName()] {
				if err := exec(fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s TEXT", quote(t.name), quote(c.foldName()))); err != nil {
					return err
				}
			}
		}
		// Change tracking came later: rows stored before have no change
		// number, which makes them older than every watermark.
		if !have[changeColumn] {
			if err := exec(fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s INTEGER", quote(t.name), quote(changeColumn))); err != nil {
				return err
			}
		}
	}
	// Incremental scans select by change number; LastUpdated reads the
	// latest updated_at.
	for _, col := range []string{changeColumn, "updated_at"} {
		if err := exec(fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)",
			quote(t.name+"__"+col+"__idx"), quote(t.name), quote(col))); err != nil {
			return err
		}
	}
	for _, c := range append([]*column{t.key}, t.fields...) {
		if c.index {
			if err := exec(fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)",
				quote(t.name+"__"+c.name+"__idx"), quote(t.name), quote(c.name))); err != nil {
				return err
			}
		}
		if c.fold {
			if err := exec(fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)",
				quote(t.name+"__"+c.foldName()+"__idx"), quote(t.name), quote(c.foldName()))); err != nil {
				return err
			}
		}
	}
	for _, sd := range t.sides {
		for _, q := range t.sideSQL(sd) {
			if err := exec(q); err != nil {
				return err
			}
		}
	}
	return x.syncShadows(ctx, t)
}

// columns returns the column names of a table; none when it does not exist.
func (x *tx) columns(ctx context.Context, name string) (map[string]bool, error) {
	rows, err := x.tx.QueryContext(ctx, `SELECT "name" FROM pragma_table_info(?)`, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		cols[c] = true
	}
	return cols, rows.Err()
}

func (t *table) createSQL() string {
	var defs []string
	switch {
	case t.e.Key.Type == plinth.KeyInteger && t.e.Key.Generated:
		// AUTOINCREMENT: a deleted record's key is never handed out again.
		defs = append(defs, quote(t.key.name)+" INTEGER PRIMARY KEY AUTOINCREMENT")
	case t.e.Key.Type == plinth.KeyInteger:
		defs = append(defs, quote(t.key.name)+" INTEGER PRIMARY KEY")
	default:
		defs = append(defs, quote(t.key.name)+" TEXT PRIMARY KEY NOT NULL")
	}
	if t.key.fold {
		defs = append(defs, quote(t.key.foldName())+" TEXT")
	}
	for _, c := range t.fields {
		defs = append(defs, quote(c.name)+" "+sqlType(c.field))
		if c.fold {
			defs = append(defs, quote(c.foldName())+" TEXT")
		}
	}
	defs = append(defs, `"version" INTEGER NOT NULL`, `"created_at" TEXT NOT NULL`, `"updated_at" TEXT NOT NULL`, quote(changeColumn)+" INTEGER")
	return fmt.Sprintf("CREATE TABLE %s (\n\t%s\n)", quote(t.name), strings.Join(defs, ",\n\t"))
}

// sideSQL creates a side table and the index its filter uses. The primary
// key (record_key, value) also serves the cascade when a record goes.
func (t *table) sideSQL(sd *side) []string {
	keyType := "TEXT"
	if t.e.Key.Type == plinth.KeyInteger {
		keyType = "INTEGER"
	}
	qs := []string{fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	"record_key" %s NOT NULL REFERENCES %s (%s) ON DELETE CASCADE,
	"value" %s NOT NULL,
	"fold" TEXT,
	PRIMARY KEY ("record_key", "value")
) WITHOUT ROWID`, quote(sd.name), keyType, quote(t.name), quote(t.key.name), sqlType(sd.filter.Field))}
	if sd.filter.Folded() {
		qs = append(qs, fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s ("fold")`, quote(sd.name+"__by_fold"), quote(sd.name)))
	} else {
		qs = append(qs, fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s ("value")`, quote(sd.name+"__by_value"), quote(sd.name)))
	}
	return qs
}

// syncShadows fills the shadow data the table's filters need and that is
// not maintained yet, and stops maintaining (dropping side tables) what no
// filter needs any more.
func (x *tx) syncShadows(ctx context.Context, t *table) error {
	rows, err := x.tx.QueryContext(ctx, `SELECT "name", "kind" FROM "plinth_shadows" WHERE "owner" = ?`, t.name)
	if err != nil {
		return err
	}
	have := map[string]string{} // name → kind
	for rows.Next() {
		var name, kind string
		if err := rows.Scan(&name, &kind); err != nil {
			rows.Close()
			return err
		}
		have[name] = kind
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var want []string
	start := func(name, kind string, fill func() error) error {
		want = append(want, name)
		if _, ok := have[name]; ok {
			return nil
		}
		if err := fill(); err != nil {
			return err
		}
		_, err := x.tx.ExecContext(ctx, `INSERT INTO "plinth_shadows" ("name", "owner", "kind") VALUES (?, ?, ?)`, name, t.name, kind)
		return err
	}
	for _, c := range append([]*column{t.key}, t.fields...) {
		if !c.fold {
			continue
		}
		if err := start(t.name+"."+c.foldName(), "fold", func() error { return x.backfillFold(ctx, t, c) }); err != nil {
			return err
		}
	}
	for _, sd := range t.sides {
		if err := start(sd.name, "side", func() error { return x.backfillSide(ctx, t, sd) }); err != nil {
			return err
		}
	}
	for name, kind := range have {
		if slices.Contains(want, name) {
			continue
		}
		if _, err := x.tx.ExecContext(ctx, `DELETE FROM "plinth_shadows" WHERE "name" = ?`, name); err != nil {
			return err
		}
		// A side table nobody needs goes; a fold column stays (dropping a
		// column is costly in SQLite) but is emptied, as writes no longer
		// keep it.
		query := "DROP TABLE IF EXISTS " + quote(name)
		if kind == "fold" {
			query = fmt.Sprintf("UPDATE %s SET %s = NULL", quote(t.name), quote(strings.TrimPrefix(name, t.name+".")))
		}
		if _, err := x.tx.ExecContext(ctx, query); err != nil {
			return err
		}
	}
	return nil
}

// backfillFold computes the folded copy of a column for every row.
func (x *tx) backfillFold(ctx context.Context, t *table, c *column) error {
	q, k := quote(t.name), quote(t.key.name)
	if _, err := x.tx.ExecContext(ctx, fmt.Sprintf("UPDATE %s SET %s = NULL", q, quote(c.foldName()))); err != nil {
		return err
	}
	type pair struct {
		key any
		val string
	}
	var pairs []pair
	rows, err := x.tx.QueryContext(ctx, fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s IS NOT NULL", k, quote(c.name), q, quote(c.name)))
	if err != nil {
		return err
	}
	for rows.Next() {
		var p pair
		var v any
		if err := rows.Scan(&p.key, &v); err != nil {
			rows.Close()
			return err
		}
		if s, ok := v.(string); ok {
			p.val = plinth.Fold(s)
			pairs = append(pairs, p)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	st, err := x.tx.PrepareContext(ctx, fmt.Sprintf("UPDATE %s SET %s = ? WHERE %s = ?", q, quote(c.foldName()), k))
	if err != nil {
		return err
	}
	defer st.Close()
	for _, p := range pairs {
		if _, err := st.ExecContext(ctx, p.val, p.key); err != nil {
			return err
		}
	}
	return nil
}

// backfillSide fills a side table from the array column of every row.
func (x *tx) backfillSide(ctx context.Context, t *table, sd *side) error {
	if _, err := x.tx.ExecContext(ctx, "DELETE FROM "+quote(sd.name)); err != nil {
		return err
	}
	arr := t.byName[sd.array]
	if arr == nil {
		return fmt.Errorf("filter %q: no array field %q", sd.filter.Param, sd.array)
	}
	type row struct {
		key  any
		data map[string]any
	}
	var todo []row
	rows, err := x.tx.QueryContext(ctx, fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s IS NOT NULL",
		quote(t.key.name), quote(arr.name), quote(t.name), quote(arr.name)))
	if err != nil {
		return err
	}
	for rows.Next() {
		var key, raw any
		if err := rows.Scan(&key, &raw); err != nil {
			rows.Close()
			return err
		}
		v, err := decodeValue(arr.field, raw)
		if err != nil {
			rows.Close()
			return err
		}
		todo = append(todo, row{key, map[string]any{sd.array: v}})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	st, err := x.tx.PrepareContext(ctx, sd.insertSQL)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, r := range todo {
		vals, err := sd.values(r.data)
		if err != nil {
			return err
		}
		for _, v := range vals {
			if _, err := st.ExecContext(ctx, r.key, v.value, v.fold); err != nil {
				return err
			}
		}
	}
	return nil
}

// sideValue is one row of a side table, without its record key.
type sideValue struct {
	value any
	fold  any // folded text, or nil
}

// values returns the distinct values the side table holds for a record.
func (sd *side) values(data map[string]any) ([]sideValue, error) {
	items, _ := data[sd.array].([]any)
	var out []sideValue
	seen := map[any]bool{}
	for _, item := range items {
		m, _ := item.(map[string]any)
		v, ok := m[sd.item]
		if !ok || v == nil {
			continue
		}
		enc, err := encodeValue(sd.filter.Field, v)
		if err != nil {
			return nil, fmt.Errorf("%s[].%s: %w", sd.array, sd.item, err)
		}
		if seen[enc] {
			continue
		}
		seen[enc] = true
		sv := sideValue{value: enc}
		if s, ok := enc.(string); ok && sd.fold {
			sv.fold = plinth.Fold(s)
		}
		out = append(out, sv)
	}
	return out, nil
}
