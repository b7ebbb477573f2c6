package sqlite

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/plinth-data/plinth"
)

// List returns up to q.Limit records (plinth.DefaultLimit when it is not
// positive) in ascending key order after q.After, matching every
// condition. It asks for one record more than the limit to learn whether
// more follow.
func (s *Store) List(ctx context.Context, e *plinth.Entity, q plinth.Query) (plinth.Page, error) {
	t, err := s.table(e)
	if err != nil {
		return plinth.Page{}, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	where, args, err := t.where(q)
	if err != nil {
		return plinth.Page{}, fmt.Errorf("sqlite: list %s: %w", e.Name, err)
	}
	query := t.selectSQL
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY " + quote(t.key.name) + limitSQL(limit+1)
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return plinth.Page{}, fail("list "+e.Name, err)
	}
	defer rows.Close()
	var page plinth.Page
	buf := t.newRowBuf()
	buf.nestedJSON = q.NestedJSON
	if q.RecordJSON { // the page's records as JSON, in its buffer
		page.Buffer = plinth.PageBuffer()
		t.recordJSON(buf, page.Buffer)
	}
	for rows.Next() {
		if len(page.Records) == limit {
			page.More = true
			break
		}
		r, err := t.scanRecordBuf(buf, rows.Scan)
		if err != nil {
			return plinth.Page{}, fail("list "+e.Name, err)
		}
		page.Records = append(page.Records, r)
	}
	if err := rows.Err(); err != nil {
		return plinth.Page{}, fail("list "+e.Name, err)
	}
	return page, nil
}

// where turns the cursor and conditions into ANDed SQL terms. Conditions
// on one array filter share one subquery, so that, for example, both ends
// of a range must hold for the same item.
func (t *table) where(q plinth.Query) ([]string, []any, error) {
	var where []string
	var args []any
	if q.After != nil {
		key, err := t.keyArg(q.After)
		if err != nil {
			return nil, nil, fmt.Errorf("cursor: %w", err)
		}
		where = append(where, quote(t.key.name)+" > ?")
		args = append(args, key)
	}
	var sideOrder []*side
	sideTerms := map[*side][]string{}
	sideArgs := map[*side][]any{}
	for _, c := range q.Conditions {
		if c.Filter == nil {
			return nil, nil, fmt.Errorf("a condition has no filter")
		}
		f := t.e.Filter(c.Filter.Param)
		if f == nil {
			return nil, nil, fmt.Errorf("%q is not a filter of %s", c.Filter.Param, t.e.Name)
		}
		if sd := t.byParam[f.Param]; sd != nil {
			fold := ""
			if sd.fold {
				fold = `"fold"`
			}
			term, targs, err := compare(f.Field, c, `"value"`, fold)
			if err != nil {
				return nil, nil, err
			}
			if _, ok := sideTerms[sd]; !ok {
				sideOrder = append(sideOrder, sd)
			}
			sideTerms[sd] = append(sideTerms[sd], term)
			sideArgs[sd] = append(sideArgs[sd], targs...)
			continue
		}
		col := t.byName[f.Path[0]]
		fold := ""
		if col.fold {
			fold = quote(col.foldName())
		}
		term, targs, err := compare(f.Field, c, quote(col.name), fold)
		if err != nil {
			return nil, nil, err
		}
		where = append(where, term)
		args = append(args, targs...)
	}
	for _, sd := range sideOrder {
		// IN (subquery) lets SQLite drive the query from the side table's
		// index when the value is rare, and still returns key order.
		where = append(where, fmt.Sprintf(`%s IN (SELECT "record_key" FROM %s WHERE %s)`,
			quote(t.key.name), quote(sd.name), strings.Join(sideTerms[sd], " AND ")))
		args = append(args, sideArgs[sd]...)
	}
	return where, args, nil
}

// compare returns the SQL term for one condition on a column (or its
// folded copy, fold, for prefix and contains).
func compare(f *plinth.Field, c plinth.Condition, col, fold string) (string, []any, error) {
	switch c.Op {
	case plinth.OpPrefix, plinth.OpContains:
		s, ok := c.Value.(string)
		if !ok || fold == "" {
			return "", nil, fmt.Errorf("filter %q: %s needs folded text", c.Filter.Param, c.Op)
		}
		if c.Op == plinth.OpContains {
			// instr compares bytes exactly, so %, _ and \ in the value
			// need no escaping, as they would with LIKE.
			return fmt.Sprintf("instr(%s, ?) > 0", fold), []any{s}, nil
		}
		// A range on the folded column uses its index: every string with
		// prefix p sorts at or after p and before p with its last
		// character incremented.
		end, ok := prefixEnd(s)
		if !ok {
			return fold + " >= ?", []any{s}, nil
		}
		return fmt.Sprintf("(%s >= ? AND %s < ?)", fold, fold), []any{s, end}, nil
	}
	v, err := encodeValue(f, c.Value)
	if err != nil || v == nil {
		return "", nil, fmt.Errorf("filter %q: bad value %v", c.Filter.Param, c.Value)
	}
	switch c.Op {
	case plinth.OpEqual:
		return col + " = ?", []any{v}, nil
	case plinth.OpGTE:
		return col + " >= ?", []any{v}, nil
	case plinth.OpLTE:
		return col + " <= ?", []any{v}, nil
	}
	return "", nil, fmt.Errorf("filter %q: unknown comparison %q", c.Filter.Param, c.Op)
}

// prefixEnd returns the least string greater than every string that starts
// with p, in SQLite's (byte, hence code point) order; false when there is
// none.
func prefixEnd(p string) (string, bool) {
	runes := []rune(p)
	for i := len(runes) - 1; i >= 0; i-- {
		r := runes[i] + 1
		if r >= 0xD800 && r <= 0xDFFF { // surrogates cannot be encoded
			r = 0xE000
		}
		if r <= utf8.MaxRune {
			return string(runes[:i]) + string(r), true
		}
	}
	return "", false
}

// Count returns how many records the entity has.
func (s *Store) Count(ctx context.Context, e *plinth.Entity) (int64, error) {
	t, err := s.table(e)
	if err != nil {
		return 0, err
	}
	rows, err := s.query(ctx, "SELECT count(*) FROM "+quote(t.name))
	if err != nil {
		return 0, fail("count "+e.Name, err)
	}
	defer rows.Close()
	var n int64
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, fail("count "+e.Name, err)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fail("count "+e.Name, err)
	}
	return n, nil
}
