package legacy

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// TestVisibilityCheck: the check before a batch is planned finds a change
// not yet visible while a snapshot still shows its row as before it (an
// update's changed columns equal to Before, an insert's row absent, a
// deleted row still there) and visible once the source shows it; it does
// not wait on a row a later change altered, nor on a change it cannot
// check. AwaitVisible gives up after visibleWait.
func TestVisibilityCheck(t *testing.T) {
	ctx := context.Background()
	src, m := source(t, KindMariaDB)
	id, _ := strconv.ParseInt(livePersons(t, src, 1)[0], 10, 64)
	var name string
	if err := src.DB.QueryRow("SELECT last_name FROM dm_persons WHERE person_id = ?", id).Scan(&name); err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := src.DB.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	stale := func(what string, c Change, want bool) {
		t.Helper()
		check, ok := m.visibilityCheck(src, c)
		if !ok {
			t.Fatalf("%s: not checkable", what)
		}
		got, err := check(ctx)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got != want {
			t.Errorf("%s: stale %v, want %v", what, got, want)
		}
	}
	update := Change{Table: "dm_persons",
		Before: Row{"person_id": id, "last_name": name, "first_name": "Same"},
		After:  Row{"person_id": id, "last_name": "Visiblecheck", "first_name": "Same"}}
	stale("an update the source does not show yet", update, true)
	exec("UPDATE dm_persons SET last_name = 'Visiblecheck' WHERE person_id = ?", id)
	stale("the update, shown", update, false)
	exec("UPDATE dm_persons SET last_name = 'Laterchange' WHERE person_id = ?", id)
	stale("the update, then a later one", update, false)

	insert := Change{Table: "DM_PERSONS", After: Row{"person_id": int64(987654321), "last_name": "New"}}
	stale("an insert the source does not show yet", insert, true)

	del := Change{Table: "dm_persons", Before: Row{"person_id": id, "last_name": "Laterchange"}}
	stale("a delete the source does not show yet", del, true)
	exec("DELETE FROM dm_persons WHERE person_id = ?", id)
	stale("the delete, shown", del, false)

	for what, c := range map[string]Change{
		"an unknown table":           {Table: "no_such_table", After: Row{"id": int64(1)}},
		"a row without its key":      {Table: "dm_persons", After: Row{"last_name": "X"}},
		"an update changing nothing": {Table: "dm_persons", Before: Row{"person_id": id, "last_name": "A"}, After: Row{"person_id": id, "last_name": "A"}},
	} {
		if _, ok := m.visibilityCheck(src, c); ok {
			t.Errorf("%s: checkable", what)
		}
	}

	start := time.Now()
	if err := AwaitVisible(ctx, src, m, Batch{Changes: []Change{update, insert}}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < visibleWait {
		t.Errorf("AwaitVisible on an insert never shown returned after %v, want %v", d, visibleWait)
	}
	start = time.Now()
	if err := AwaitVisible(ctx, src, m, Batch{Changes: []Change{insert, del}}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > visibleWait/2 {
		t.Errorf("AwaitVisible on a delete shown took %v", d)
	}
}
