package legacy

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// A source's change log can carry a transaction before a new snapshot
// sees it: MySQL and MariaDB write a transaction to the binlog, where the
// capture reads it, before they commit it in InnoDB. (PostgreSQL could in
// principle decode a commit between its WAL flush and its becoming visible;
// legacy/pgoutput's TestSnapshotsWaitForTheLatestChange never saw it in
// 3,000 updates a run, also under CPU load, and guards it.) Change
// capture reads the changed rows again to build the records (plan), so a
// plan made in that moment would write the rows as they were before the
// change and store the position after it: the change lost until the row
// changes again. (Measured on MariaDB under load: 145 of 3,000 snapshots
// taken as each update's event arrived still showed the row before it.)
// So before a batch is planned, AwaitVisible waits until a snapshot shows
// the batch's last change; the source commits transactions in the order it
// logs them, so the earlier ones are visible too.

// visibleWait bounds the wait for one batch. A row that a later
// transaction changed back to what the last change found (its Before)
// looks unchanged for ever; after this long the batch is planned anyway,
// and that later transaction's own change brings the row up to date.
const visibleWait = time.Second

// AwaitVisible returns once a snapshot of src shows b's last change, or
// after visibleWait, or at once when the change cannot be checked (its
// table has no primary key, or it changed no column whose values
// compare). Change capture calls it before it plans each batch; a
// capture's tests call it to show that their source needs it.
func AwaitVisible(ctx context.Context, src *Source, m *Mapping, b Batch) error {
	if len(b.Changes) == 0 {
		return nil
	}
	c := b.Changes[len(b.Changes)-1]
	check, ok := m.visibilityCheck(src, c)
	if !ok {
		return nil
	}
	pause := time.Millisecond
	for deadline := time.Now().Add(visibleWait); ; {
		stale, err := check(ctx)
		if err != nil || !stale || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// visibilityCheck returns a function that reports whether a new snapshot
// still shows c's row as it was before c: absent for an insert, equal to
// c.Before in the columns c changed for an update, present and equal to
// c.Before for a delete. False when c cannot be checked.
func (m *Mapping) visibilityCheck(src *Source, c Change) (func(context.Context) (bool, error), bool) {
	t := m.schema[strings.ToLower(c.Table)]
	if t == nil || len(t.PrimaryKey) == 0 {
		return nil, false
	}
	keyRow := c.After
	if keyRow == nil {
		keyRow = c.Before
	}
	var where []string
	var args []any
	for _, col := range t.PrimaryKey {
		v, ok := keyRow[col]
		if !ok || v == nil {
			return nil, false
		}
		args = append(args, v)
		where = append(where, fmt.Sprintf("%s = %s", src.quote(m.actual(c.Table, col)), src.placeholder(len(args))))
	}
	// The columns that tell before from after: those an update changed,
	// or every column of the row an insert or delete names.
	var cols []string
	for col, before := range c.Before {
		after, inAfter := c.After[col]
		if c.After == nil || inAfter && !sameValue(before, after) {
			cols = append(cols, col)
		}
	}
	if c.Before != nil && len(cols) == 0 {
		return nil, false
	}
	sel := "1"
	if len(cols) > 0 {
		sel = m.quotedColumns(src, c.Table, cols)
	}
	query := "SELECT " + sel + " FROM " + src.quote(m.actualTable(c.Table)) + " WHERE " + strings.Join(where, " AND ")
	return func(ctx context.Context) (bool, error) {
		snap, err := src.Snapshot(ctx)
		if err != nil {
			return false, err
		}
		defer snap.Close()
		rows, err := snap.query(ctx, query, args...)
		if err != nil {
			return false, fmt.Errorf("checking that the source shows its latest change: %w", err)
		}
		switch {
		case c.Before == nil: // an insert: stale while the row is absent
			return len(rows) == 0, nil
		case len(rows) == 0: // updated then deleted, or deleted: not stale
			return false, nil
		}
		for _, col := range cols {
			if !sameValue(rows[0][col], c.Before[col]) {
				return false, nil
			}
		}
		return true, nil
	}, true
}

// sameValue compares two of Row's values, however the capture and the
// driver typed them (a number from the log and from a query, bytes and
// text). Values that do not compare are not the same: the check then
// takes the row as changed and does not wait.
func sameValue(a, b any) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return asText(a) == asText(b)
}

// asText is v as text: bytes as the text they hold, times in UTC.
func asText(v any) string {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}
