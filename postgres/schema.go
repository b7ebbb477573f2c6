package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/plinth-data/plinth"
)

// Schema evolution.
//
// Plan compares the live schema (pg_catalog) with the layout the spec asks
// for. What it can do without losing or rewriting data it does:
//
//   - create a missing schema or table, with its indexes, including the
//     schema "plinth" with the tables of the AccessStore (see access.go),
//     the audit trail (audit.go) and the outbox (outbox.go);
//   - add a column for a new field. Every field column is nullable, also for
//     a new required field on a table that already has rows: the spec is
//     enforced in Go when records are written, and records stored before
//     the field existed read back without it;
//   - add, fill (in batches, computed in Go) and index the shadow column of a
//     new prefix, contains or array filter, and drop shadow columns and
//     indexes no filter uses any more (they hold only derived data);
//   - create missing indexes with CREATE INDEX CONCURRENTLY, outside a
//     transaction, so that writes go on meanwhile; rebuild one left invalid
//     by an interrupted build;
//   - give a generated integer key an identity when it had none.
//
// What would lose or rewrite data it refuses, saying how to migrate: a
// field whose column type changed, a column whose field left the spec, a key
// that changed name or type, a table that plinth did not make. Prepare
// applies nothing while anything is refused.
//
// Not detected: changes inside objects and arrays (jsonb holds whatever the
// spec said when it was written; reads return such values as stored), and a
// field changed between object and array (both jsonb).

// Plan is what it takes to bring a database's schema to the spec.
type Plan struct {
	// Steps bring the schema to the spec, in order.
	Steps []Step
	// Refusals are the changes that cannot be made without losing data,
	// each with how to migrate.
	Refusals []string
}

// Step is one change, applied in one transaction unless Concurrently.
type Step struct {
	Table   string // schema.table, or "" for the database
	Comment string // what the step does
	// SQL are the statements. A fill step runs Go code first (see Comment)
	// and then these.
	SQL []string
	// Concurrently marks CREATE/DROP INDEX CONCURRENTLY, which runs outside
	// a transaction.
	Concurrently bool
	fill         *fill
}

// fill computes shadow columns for the rows a table already has.
type fill struct {
	t    *table
	cols []*column
}

// Empty reports whether the schema already matches the spec.
func (p Plan) Empty() bool { return len(p.Steps) == 0 && len(p.Refusals) == 0 }

// Err returns a *RefusedError when the plan refuses changes, else nil.
func (p Plan) Err() error {
	if len(p.Refusals) == 0 {
		return nil
	}
	return &RefusedError{Refusals: p.Refusals}
}

// String prints the plan as SQL, for plinth schema diff: the DDL to run,
// fill steps as comments, and every refusal.
func (p Plan) String() string {
	var b strings.Builder
	if p.Empty() {
		return "-- The database schema matches the spec: nothing to do.\n"
	}
	for _, r := range p.Refusals {
		fmt.Fprintf(&b, "-- REFUSED: %s\n", r)
	}
	if len(p.Refusals) > 0 {
		b.WriteString("-- Nothing below is applied until every refusal is resolved.\n\n")
	}
	for i, s := range p.Steps {
		if i > 0 {
			b.WriteByte('\n')
		}
		where := s.Table
		if where == "" {
			where = "database"
		}
		fmt.Fprintf(&b, "-- %s: %s\n", where, s.Comment)
		if s.fill != nil {
			b.WriteString("-- (computed by plinth for every row: no SQL equivalent)\n")
		} else if !s.Concurrently && len(s.SQL) > 1 {
			b.WriteString("BEGIN;\n")
		}
		for _, stmt := range s.SQL {
			b.WriteString(stmt)
			b.WriteString(";\n")
		}
		if s.fill == nil && !s.Concurrently && len(s.SQL) > 1 {
			b.WriteString("COMMIT;\n")
		}
	}
	return b.String()
}

// RefusedError lists schema changes Prepare will not make.
type RefusedError struct {
	Refusals []string
}

func (e *RefusedError) Error() string {
	return "postgres: the database schema cannot be brought to the spec without losing data; nothing was changed:\n  - " +
		strings.Join(e.Refusals, "\n  - ")
}

// Plan computes what Prepare would do for the domains, without changing
// anything.
func (s *Store) Plan(ctx context.Context, domains []*plinth.Domain) (Plan, error) {
	p, err := s.plan(ctx, s.pool, domains)
	return p, s.wrap("plan the schema", err)
}

// Prepare brings the schema to the spec: it applies the plan when nothing is
// refused, and otherwise returns a *RefusedError listing every refusal.
// Concurrent Prepares on one database take turns.
func (s *Store) Prepare(ctx context.Context, domains []*plinth.Domain) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.wrap("prepare", err)
	}
	defer conn.Release()
	if err := lock(ctx, conn); err != nil {
		return s.wrap("prepare: wait for other instances preparing the schema", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", prepareLock)
	p, err := s.plan(ctx, conn, domains)
	if err != nil {
		return s.wrap("plan the schema", err)
	}
	if err := p.Err(); err != nil {
		return err
	}
	return s.apply(ctx, conn, p)
}

// Apply applies a plan from Plan, when it refuses nothing. Prepare is Plan
// and Apply in one, taking turns with other instances.
func (s *Store) Apply(ctx context.Context, p Plan) error {
	if err := p.Err(); err != nil {
		return err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.wrap("apply the schema plan", err)
	}
	defer conn.Release()
	if err := lock(ctx, conn); err != nil {
		return s.wrap("apply: wait for other instances preparing the schema", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", prepareLock)
	return s.apply(ctx, conn, p)
}

// prepareLock is the advisory lock Prepare holds.
const prepareLock int64 = 0x706c696e7468 // "plinth"

// lock takes the advisory lock, polling: a session waiting in
// pg_advisory_lock would hold a snapshot that CREATE INDEX CONCURRENTLY in
// the session holding the lock waits for.
func lock(ctx context.Context, conn *pgxpool.Conn) error {
	for {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", prepareLock).Scan(&ok); err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Store) apply(ctx context.Context, conn *pgxpool.Conn, p Plan) error {
	for _, step := range p.Steps {
		what := step.Comment
		if step.Table != "" {
			what = step.Table + ": " + what
		}
		var err error
		switch {
		case step.fill != nil:
			err = step.fill.run(ctx, conn)
			if err == nil {
				err = exec(ctx, conn, step.SQL)
			}
		case step.Concurrently:
			err = exec(ctx, conn, step.SQL)
		default:
			err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return exec(ctx, tx, step.SQL) })
		}
		if err != nil {
			return s.wrap("schema change: "+what, err)
		}
	}
	return nil
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func exec(ctx context.Context, q execer, stmts []string) error {
	for _, stmt := range stmts {
		if _, err := q.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", firstLine(stmt), err)
		}
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// fillBatch is how many rows a fill step updates per round trip.
const fillBatch = 1000

// run fills the shadow columns of every stored row, in key order and in
// batches. A row written meanwhile (by this version of plinth, which keeps
// the columns itself) is left alone: the update checks the version.
func (f *fill) run(ctx context.Context, conn *pgxpool.Conn) error {
	t := f.t
	pos := make([]int, len(f.cols))
	var sets []string
	for i, c := range f.cols {
		pos[i] = slices.Index(t.cols, c)
		sets = append(sets, fmt.Sprintf("%s = $%d", c.ident(), i+3))
	}
	update := fmt.Sprintf("UPDATE %s SET %s WHERE %s = $1 AND version = $2", t.ident, strings.Join(sets, ", "), t.key.ident())
	var after any
	for {
		sql := "SELECT " + t.selectList + " FROM " + t.ident
		var args []any
		if after != nil {
			sql += " WHERE " + t.key.ident() + " > $1"
			args = append(args, after)
		}
		sql += fmt.Sprintf(" ORDER BY %s LIMIT %d", t.key.ident(), fillBatch)
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		var recs []plinth.Record
		sc := t.scanner(false)
		for rows.Next() {
			r, err := sc.record(rows)
			if err != nil {
				rows.Close()
				return err
			}
			recs = append(recs, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(recs) == 0 {
			return nil
		}
		batch := &pgx.Batch{}
		for _, r := range recs {
			row, err := t.row(r.Data)
			if err != nil {
				return err
			}
			args := []any{row[0], r.Version}
			for _, p := range pos {
				args = append(args, row[p])
			}
			batch.Queue(update, args...)
		}
		if err := conn.SendBatch(ctx, batch).Close(); err != nil {
			return err
		}
		after, _ = t.keyParam(t.e.KeyOf(recs[len(recs)-1]))
	}
}

// The live schema.

type liveColumn struct {
	typ      string
	identity bool
	comment  string
}

type liveTable struct {
	cols    map[string]liveColumn
	order   []string
	pk      []string
	indexes map[string]bool // name → valid
}

func readTable(ctx context.Context, q querier, t *table) (*liveTable, error) {
	var oid *uint32
	err := q.QueryRow(ctx, `SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, t.schema, t.name).Scan(&oid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	lt := &liveTable{cols: map[string]liveColumn{}, indexes: map[string]bool{}}
	rows, err := q.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attidentity <> '', coalesce(col_description(a.attrelid, a.attnum), '')
FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, *oid)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var name string
		var c liveColumn
		if err := rows.Scan(&name, &c.typ, &c.identity, &c.comment); err != nil {
			rows.Close()
			return nil, err
		}
		lt.cols[name] = c
		lt.order = append(lt.order, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = q.Query(ctx, `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = $1 AND i.indisprimary`, *oid)
	if err != nil {
		return nil, err
	}
	lt.pk, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	rows, err = q.Query(ctx, `SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = $1 AND NOT i.indisprimary`, *oid)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var name string
		var valid bool
		if err := rows.Scan(&name, &valid); err != nil {
			rows.Close()
			return nil, err
		}
		lt.indexes[name] = valid
	}
	rows.Close()
	return lt, rows.Err()
}

func (s *Store) plan(ctx context.Context, q querier, domains []*plinth.Domain) (Plan, error) {
	var p Plan
	var tables []*table
	for _, d := range domains {
		for _, e := range d.Entities {
			tables = append(tables, s.layout(e))
		}
	}
	// pg_trgm, for contains filters.
	needTrgm := slices.ContainsFunc(tables, (*table).needsTrigram)
	if needTrgm {
		var n int
		if err := q.QueryRow(ctx, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'").Scan(&n); err != nil {
			return Plan{}, err
		}
		if n == 0 {
			p.Steps = append(p.Steps, Step{Comment: "install pg_trgm, which indexes contains filters",
				SQL: []string{"CREATE EXTENSION IF NOT EXISTS pg_trgm"}})
		}
	}
	schemas := map[string]bool{}
	for _, t := range tables {
		if _, seen := schemas[t.schema]; !seen {
			var n int
			if err := q.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", t.schema).Scan(&n); err != nil {
				return Plan{}, err
			}
			schemas[t.schema] = n > 0
			if n == 0 {
				p.Steps = append(p.Steps, Step{Comment: fmt.Sprintf("create the schema of domain %q", t.e.Domain.Name),
					SQL: []string{"CREATE SCHEMA IF NOT EXISTS " + quote(t.schema)}})
			}
		}
		lt, err := readTable(ctx, q, t)
		if err != nil {
			return Plan{}, err
		}
		if lt == nil {
			p.Steps = append(p.Steps, t.createStep())
			continue
		}
		t.diff(lt, &p)
	}
	exists, seen := schemas[systemSchema]
	if err := planAccess(ctx, q, &p, tables, seen && !exists); err != nil {
		return Plan{}, err
	}
	return p, nil
}

// createStep creates the table with its indexes, in one transaction.
func (t *table) createStep() Step {
	var defs []string
	for _, c := range t.cols {
		def := c.ident() + " " + c.ddlType()
		if c.role == roleKey {
			def = c.ident() + " " + t.keyDDL()
		}
		defs = append(defs, def)
	}
	defs = append(defs, quote(changeColumn)+" xid8 DEFAULT pg_current_xact_id()")
	stmts := []string{fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (\n\t%s\n)", t.ident, strings.Join(defs, ",\n\t"))}
	for _, c := range slices.Concat(t.folds, t.values) {
		stmts = append(stmts, t.commentSQL(c))
	}
	for _, ix := range t.indexes {
		stmts = append(stmts, fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s %s", quote(ix.name), t.ident, ix.create))
	}
	return Step{Table: t.label, Comment: fmt.Sprintf("create the table of entity %q", t.e.Name), SQL: stmts}
}

func (t *table) keyDDL() string {
	switch {
	case t.e.Key.Type == plinth.KeyInteger && t.e.Key.Generated:
		return "bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
	case t.e.Key.Type == plinth.KeyInteger:
		return "bigint PRIMARY KEY"
	case t.e.Key.Type == plinth.KeyUUID && t.e.Key.Generated:
		return "uuid PRIMARY KEY DEFAULT gen_random_uuid()"
	case t.e.Key.Type == plinth.KeyUUID:
		return "uuid PRIMARY KEY"
	}
	return `text COLLATE "C" PRIMARY KEY`
}

func (t *table) commentSQL(c *column) string {
	return fmt.Sprintf("COMMENT ON COLUMN %s.%s IS %s", t.ident, c.ident(), literal(c.comment))
}

// plinthIndexRE matches the names of the indexes plinth makes.
var plinthIndexRE = regexp.MustCompile(`__(btree|trgm|gin)$`)

// diff plans the changes to an existing table.
func (t *table) diff(lt *liveTable, p *Plan) {
	refuse := func(format string, args ...any) {
		p.Refusals = append(p.Refusals, t.label+": "+fmt.Sprintf(format, args...))
	}
	for _, name := range []string{"version", "created_at", "updated_at"} {
		if _, ok := lt.cols[name]; !ok {
			refuse("the table exists but has no %q column, so plinth did not make it; store entity %q elsewhere (another plural or domain), or move the table away", name, t.e.Name)
			return
		}
	}
	key := t.key
	skip := map[string]bool{changeColumn: true}
	if _, ok := lt.cols[changeColumn]; !ok {
		// Without a default while it is added, so that existing rows keep
		// NULL (older than every watermark) and the table is not
		// rewritten; the default then applies to new rows.
		p.Steps = append(p.Steps, Step{Table: t.label, Comment: "add the change-tracking column, for incremental extracts (rows stored before count as older than every watermark)",
			SQL: []string{
				fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s xid8", t.ident, quote(changeColumn)),
				fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET DEFAULT pg_current_xact_id()", t.ident, quote(changeColumn)),
			}})
	}
	switch {
	case len(lt.pk) != 1:
		refuse("the table's primary key is (%s), not the key %q; plinth did not make it this way: move the table away or give the entity another plural",
			strings.Join(lt.pk, ", "), t.e.Key.Name)
		return
	case lt.pk[0] != key.name:
		old := lt.pk[0]
		refuse("the key changed from %q (%s) to %q (%s); a key cannot change in place: give the entity a new plural and copy the records across with plinth migrate, or put the key back",
			camel(old), plinthType(lt.cols[old].typ), t.e.Key.Name, t.e.Key.Type)
		skip[old], skip[key.name] = true, true
	case lt.cols[key.name].typ != key.sqlType:
		refuse("the key %q changed type from %s to %s; a key cannot change type in place: give the entity a new plural and copy the records across with plinth migrate, or put the type back",
			t.e.Key.Name, plinthType(lt.cols[key.name].typ), t.e.Key.Type)
	case t.e.Key.Type == plinth.KeyInteger && t.e.Key.Generated && !lt.cols[key.name].identity:
		p.Steps = append(p.Steps, Step{Table: t.label, Comment: fmt.Sprintf("the key %q is now generated: give it an identity starting after the highest key", t.e.Key.Name),
			SQL: []string{
				fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s ADD GENERATED BY DEFAULT AS IDENTITY", t.ident, key.ident()),
				fmt.Sprintf("SELECT setval(pg_get_serial_sequence(%s, %s), COALESCE(max(%s), 0) + 1, false) FROM %s",
					literal(t.ident), literal(key.name), key.ident(), t.ident),
			}})
	}

	var add, drop, comments []string
	var fillCols []*column
	rebuilt := map[string]bool{} // shadow columns dropped and added again
	for _, c := range t.cols {
		live, ok := lt.cols[c.name]
		if skip[c.name] || c.role == roleKey || c.role == roleSystem {
			continue
		}
		switch {
		case !ok:
			add = append(add, fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s", t.ident, c.ident(), c.ddlType()))
			if _, hasSource := lt.cols[c.source]; c.role != roleField && hasSource {
				fillCols = append(fillCols, c)
			} else if c.role != roleField {
				comments = append(comments, t.commentSQL(c)) // a new field: nothing to fill
			}
		case live.typ != c.sqlType && c.role == roleField:
			refuse("field %q changed type from %s to %s; add a new field instead, or migrate the data with plinth migrate and drop the column by hand",
				c.field.Name, plinthType(live.typ), c.field.Type)
		case live.typ != c.sqlType:
			drop = append(drop, fmt.Sprintf("ALTER TABLE %s DROP COLUMN IF EXISTS %s", t.ident, c.ident()))
			add = append(add, fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s", t.ident, c.ident(), c.ddlType()))
			fillCols = append(fillCols, c)
			rebuilt[c.ident()] = true
		case c.role != roleField && live.comment != c.comment:
			fillCols = append(fillCols, c) // added, but the fill did not finish
		}
	}
	for _, name := range lt.order {
		if skip[name] || slices.ContainsFunc(t.cols, func(c *column) bool { return c.name == name }) {
			continue
		}
		if strings.Contains(name, "__") {
			drop = append(drop, fmt.Sprintf("ALTER TABLE %s DROP COLUMN IF EXISTS %s", t.ident, quote(name)))
			continue
		}
		refuse("field %q (column %q) is no longer in the spec; put it back, or once its data is no longer needed drop the column by hand: ALTER TABLE %s DROP COLUMN %s",
			camel(name), name, t.ident, quote(name))
	}
	if len(add) > 0 || len(drop) > 0 {
		comment := "add columns for new fields and filters"
		if len(add) == 0 {
			comment = "drop shadow columns no filter uses any more"
		}
		p.Steps = append(p.Steps, Step{Table: t.label, Comment: comment, SQL: slices.Concat(drop, add, comments)})
	}
	if len(fillCols) > 0 {
		var names, comments []string
		for _, c := range fillCols {
			names = append(names, c.name)
			comments = append(comments, t.commentSQL(c))
		}
		p.Steps = append(p.Steps, Step{Table: t.label, Comment: fmt.Sprintf("fill %s for the rows already stored, %d rows at a time",
			strings.Join(names, ", "), fillBatch), SQL: comments, fill: &fill{t: t, cols: fillCols}})
	}

	// Indexes.
	want := map[string]bool{}
	for _, ix := range t.indexes {
		want[ix.name] = true
	}
	var stale []string
	for name := range lt.indexes {
		if !want[name] && strings.HasPrefix(name, (t.name + "__")[:min(len(t.name)+2, 40)]) && plinthIndexRE.MatchString(name) {
			stale = append(stale, name)
		}
	}
	slices.Sort(stale)
	for _, name := range stale {
		p.Steps = append(p.Steps, Step{Table: t.label, Comment: "drop an index no filter uses any more", Concurrently: true,
			SQL: []string{fmt.Sprintf("DROP INDEX CONCURRENTLY IF EXISTS %s.%s", quote(t.schema), quote(name))}})
	}
	for _, ix := range t.indexes {
		valid, ok := lt.indexes[ix.name]
		onRebuilt := false
		for col := range rebuilt {
			onRebuilt = onRebuilt || strings.Contains(ix.create, col)
		}
		switch {
		case ok && !valid:
			p.Steps = append(p.Steps, Step{Table: t.label, Comment: "drop an index an interrupted build left invalid", Concurrently: true,
				SQL: []string{fmt.Sprintf("DROP INDEX CONCURRENTLY IF EXISTS %s.%s", quote(t.schema), quote(ix.name))}})
		case ok && !onRebuilt:
			continue
		}
		p.Steps = append(p.Steps, Step{Table: t.label, Comment: "index a filter", Concurrently: true,
			SQL: []string{fmt.Sprintf("CREATE INDEX CONCURRENTLY IF NOT EXISTS %s ON %s %s", quote(ix.name), t.ident, ix.create)}})
	}
}
