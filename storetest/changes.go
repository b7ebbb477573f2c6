package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
)

// scanSince runs a Scan with q (and since), failing the test on error, and
// returns the keys it saw and its watermark.
func scanSince(t testing.TB, s plinth.Store, e *plinth.Entity, since plinth.Watermark, raw string) ([]any, plinth.Watermark) {
	t.Helper()
	var got []any
	w, err := s.Scan(t.Context(), e, plinth.ScanQuery{Since: since, Conditions: mustQuery(t, e, raw).Conditions}, func(r plinth.Record) error {
		got = append(got, e.KeyOf(r))
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s since %q: %v", e.Plural, since, err)
	}
	if w == "" {
		t.Fatalf("scan %s since %q returned no watermark", e.Plural, since)
	}
	if url.QueryEscape(string(w)) != string(w) {
		t.Errorf("watermark %q is not URL-safe", w)
	}
	return got, w
}

// deletions runs Deletions, failing the test on error.
func deletions(t testing.TB, s plinth.Store, e *plinth.Entity, since plinth.Watermark) ([]plinth.Tombstone, plinth.Watermark) {
	t.Helper()
	var got []plinth.Tombstone
	w, err := s.Deletions(t.Context(), e, since, func(ts plinth.Tombstone) error {
		got = append(got, ts)
		return nil
	})
	if err != nil {
		t.Fatalf("deletions of %s since %q: %v", e.Plural, since, err)
	}
	if w == "" {
		t.Fatalf("deletions of %s since %q returned no watermark", e.Plural, since)
	}
	return got, w
}

func tombKeys(ts []plinth.Tombstone) []any {
	out := make([]any, len(ts))
	for i, x := range ts {
		out[i] = x.Key
	}
	return out
}

func category(t testing.TB, e *plinth.Entity, code, title string, rank int) map[string]any {
	return validate(t, e, map[string]any{"code": code, "title": title, "rank": rank}, true)
}

// testWatermarkLateCommit: the case wall-clock updated_since misses. A
// write transaction updates record A and stays open; export 1 starts and
// finishes meanwhile (so it sees A as it was); then the transaction
// commits, with an updatedAt earlier than export 1's start. The
// incremental scan since export 1's watermark has A, in its new state, and
// no record that did not change.
func (su *suite) testWatermarkLateCommit(t *testing.T) {
	s := su.open(t)
	e := su.categories
	a := insert(t, s, e, map[string]any{"code": "a", "title": "Before", "rank": 1})
	insert(t, s, e, map[string]any{"code": "b", "title": "Unchanged", "rank": 2})

	updated := make(chan plinth.Record)
	commit := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Write(t.Context(), func(tx plinth.Tx) error {
			r, err := tx.Update(t.Context(), e, "a", a.Version, category(t, e, "a", "After", 1))
			if err != nil {
				close(updated)
				return err
			}
			updated <- r
			<-commit
			return nil
		})
	}()
	newA, ok := <-updated
	if !ok {
		t.Fatalf("update A: %v", <-done)
	}
	// Where writers run concurrently, another write commits meanwhile,
	// so that the open transaction is not simply the newest one when the
	// export starts. (A single-writer store cannot: the attempt times out.)
	want := 2
	short, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	err := s.Write(short, func(tx plinth.Tx) error {
		_, err := tx.Insert(short, e, category(t, e, "c", "Committed meanwhile", 3))
		return err
	})
	cancel()
	if err == nil {
		want = 3
	}
	time.Sleep(2 * time.Millisecond) // export 1 starts strictly after A's updatedAt
	exportStart := plinth.Now()
	var seen []plinth.Record
	w1, err := s.Scan(t.Context(), e, plinth.ScanQuery{}, func(r plinth.Record) error {
		seen = append(seen, r)
		return nil
	})
	if err != nil {
		close(commit)
		t.Fatalf("export 1 while a write is open: %v", err)
	}
	close(commit)
	if err := <-done; err != nil {
		t.Fatalf("the write open during export 1: %v", err)
	}
	if len(seen) != want || seen[0].Data["title"] != "Before" {
		t.Fatalf("export 1 saw %v; want a (as it was before the open write), b (and c, when committed meanwhile)", seen)
	}
	if !newA.UpdatedAt.Before(exportStart) {
		t.Fatalf("test setup: A's updatedAt %s is not before export 1's start %s", newA.UpdatedAt, exportStart)
	}
	// What wall-clock updated_since gives: A is missed.
	if got := keys(e, scanRecords(t, s, e, plinth.ScanQuery{UpdatedSince: exportStart})); len(got) != 0 {
		t.Errorf("updated since export 1's start: %v; want none (A's updatedAt is earlier)", got)
	}
	got, w2 := scanSince(t, s, e, w1, "")
	if !slices.Equal(got, []any{"a"}) {
		t.Fatalf("scan since export 1's watermark: %v; want [a], the record whose write committed during export 1 (and not b, which did not change, nor c, in export 1)", got)
	}
	if r := get(t, s, e, "a"); r.Data["title"] != "After" {
		t.Fatalf("a after the commit: %v", r.Data)
	}
	if got, _ := scanSince(t, s, e, w2, ""); len(got) != 0 {
		t.Errorf("scan since the incremental scan's watermark, with no writes since: %v; want none", got)
	}
}

// testIncrementalScan: after a watermark, records inserted, updated,
// upserted (created or changed) and bulk-loaded (inserted or replaced)
// are in the incremental scan, in key order and with the list filters;
// records left unchanged (an upsert or a replacing bulk load of the same
// data, a skipped bulk load) and deleted ones are not. Bad watermarks are
// rejected with ErrBadWatermark.
func (su *suite) testIncrementalScan(t *testing.T) {
	s := su.open(t)
	e := su.categories
	for i := range 5 {
		insert(t, s, e, map[string]any{"code": fmt.Sprintf("u%d", i), "title": "Start", "rank": i})
	}
	if err := s.BulkInsert(t.Context(), e, []map[string]any{category(t, e, "b0", "Bulk", 0), category(t, e, "b1", "Bulk", 1)}); err != nil {
		t.Fatal(err)
	}
	all, w0 := scanSince(t, s, e, "", "")
	if len(all) != 7 {
		t.Fatalf("full scan: %v", all)
	}
	if got, _ := scanSince(t, s, e, w0, ""); len(got) != 0 {
		t.Fatalf("scan since a watermark with no writes after it: %v; want none", got)
	}

	u1 := get(t, s, e, "u1")
	if _, err := tryUpdate(t, s, e, "u1", u1.Version, category(t, e, "u1", "Updated", 1)); err != nil {
		t.Fatal(err)
	}
	insert(t, s, e, map[string]any{"code": "u9", "title": "Inserted"})
	if r := upsert(t, s, e, category(t, e, "u2", "Upserted", 2)); r.Change != plinth.Updated {
		t.Fatalf("upsert u2: %s", r.Change)
	}
	if r := upsert(t, s, e, category(t, e, "u3", "Start", 3)); r.Change != plinth.Unchanged {
		t.Fatalf("upsert u3 unchanged: %s", r.Change)
	}
	if r := upsert(t, s, e, category(t, e, "u8", "Created", 8)); r.Change != plinth.Created {
		t.Fatalf("upsert u8: %s", r.Change)
	}
	if err := s.BulkInsert(t.Context(), e, []map[string]any{category(t, e, "b5", "Bulk", 5)}); err != nil {
		t.Fatal(err)
	}
	res, err := s.BulkLoad(t.Context(), e, []map[string]any{category(t, e, "b0", "Replaced", 0), category(t, e, "b1", "Bulk", 1)},
		plinth.BulkOptions{OnConflict: plinth.ConflictReplace})
	if err != nil || res.Replaced != 1 || res.Skipped != 1 {
		t.Fatalf("replacing bulk load: %+v, %v; want one replaced and one unchanged", res, err)
	}
	res, err = s.BulkLoad(t.Context(), e, []map[string]any{category(t, e, "b1", "Skipped", 1), category(t, e, "b6", "Bulk", 6)},
		plinth.BulkOptions{OnConflict: plinth.ConflictSkip})
	if err != nil || res.Inserted != 1 || res.Skipped != 1 {
		t.Fatalf("skipping bulk load: %+v, %v", res, err)
	}
	u4 := get(t, s, e, "u4")
	if err := tryDelete(t, s, e, "u4", u4.Version); err != nil {
		t.Fatal(err)
	}
	// A write that fails leaves no change behind.
	boom := errors.New("boom")
	if err := s.Write(t.Context(), func(tx plinth.Tx) error {
		r, err := tx.Get(t.Context(), e, "u0")
		if err != nil {
			return err
		}
		if _, err := tx.Update(t.Context(), e, "u0", r.Version, category(t, e, "u0", "Rolled back", 0)); err != nil {
			return err
		}
		return boom
	}); err != boom {
		t.Fatalf("failing write: %v", err)
	}

	want := []any{"b0", "b5", "b6", "u1", "u2", "u8", "u9"}
	got, w1 := scanSince(t, s, e, w0, "")
	if !slices.Equal(got, want) {
		t.Errorf("scan since the watermark: %v; want %v (changed since; not u0, u3, b1, unchanged, nor u4, deleted)", got, want)
	}
	if got, _ := scanSince(t, s, e, w0, "title=bulk"); !slices.Equal(got, []any{"b5", "b6"}) {
		t.Errorf("scan since the watermark with ?title=bulk: %v; want [b5 b6]", got)
	}
	if got, _ := scanSince(t, s, e, w1, ""); len(got) != 0 {
		t.Errorf("scan since the second watermark: %v; want none", got)
	}
	// UpdatedSince and Since together: both apply.
	var n int
	if _, err := s.Scan(t.Context(), e, plinth.ScanQuery{Since: w0, UpdatedSince: time.Now().Add(time.Hour)}, func(plinth.Record) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("scan since the watermark and updated since an hour ahead: %d records, %v; want none", n, err)
	}

	// Bad watermarks.
	kind, _, _ := strings.Cut(string(w1), ".")
	other := "sqlite.1"
	if kind == "sqlite" {
		other = "pg.1.0"
	}
	for _, bad := range []plinth.Watermark{"garbage", "x", ".", plinth.Watermark(kind), plinth.Watermark(kind + ".-1"),
		plinth.Watermark(kind + ".12abc"), plinth.Watermark(other), plinth.Watermark(strings.ToUpper(string(w1))),
		plinth.Watermark(kind + ".99999999999999999"), plinth.Watermark(kind + ".99999999999999999.0"), plinth.Watermark(kind + ".1.2.3.4.5.6")} {
		calls := 0
		_, err := s.Scan(t.Context(), e, plinth.ScanQuery{Since: bad}, func(plinth.Record) error { calls++; return nil })
		if !errors.Is(err, plinth.ErrBadWatermark) || calls != 0 {
			t.Errorf("scan since %q: %v after %d records; want an error wrapping ErrBadWatermark, before any record", bad, err, calls)
		}
		_, err = s.Deletions(t.Context(), e, bad, func(plinth.Tombstone) error { calls++; return nil })
		if !errors.Is(err, plinth.ErrBadWatermark) || calls != 0 {
			t.Errorf("deletions since %q: %v; want an error wrapping ErrBadWatermark", bad, err)
		}
	}
	// The watermark of one entity's scan serves another's.
	if got, _ := scanSince(t, s, su.people, w1, ""); len(got) != 0 {
		t.Errorf("people since a watermark of categories: %v; want none", got)
	}
}

// testDeletions: every Tx.Delete leaves a tombstone, in its transaction;
// Deletions since a watermark lists those after it with their canonical
// keys and deletion times, in the order they were made; a key deleted and
// inserted again is in both the incremental scan and Deletions.
func (su *suite) testDeletions(t *testing.T) {
	s := su.open(t)
	e := su.categories
	for _, c := range []string{"a", "b", "c", "d"} {
		insert(t, s, e, map[string]any{"code": c, "title": "T"})
	}
	_, w0 := scanSince(t, s, e, "", "")
	if got, _ := deletions(t, s, e, w0); len(got) != 0 {
		t.Fatalf("deletions with none made: %v", got)
	}
	del := func(code string) {
		t.Helper()
		if err := tryDelete(t, s, e, code, get(t, s, e, code).Version); err != nil {
			t.Fatal(err)
		}
	}
	before := plinth.Now()
	del("c")
	del("a")
	after := plinth.Now()
	// A failed delete leaves no tombstone.
	if err := tryDelete(t, s, e, "b", 99); !errors.Is(err, plinth.ErrVersionConflict) {
		t.Fatalf("delete b at a stale version: %v", err)
	}
	boom := errors.New("boom")
	if err := s.Write(t.Context(), func(tx plinth.Tx) error {
		if err := tx.Delete(t.Context(), e, "d", 1); err != nil {
			return err
		}
		return boom
	}); err != boom {
		t.Fatalf("rolled back delete: %v", err)
	}
	got, w1 := deletions(t, s, e, w0)
	if !slices.Equal(tombKeys(got), []any{"c", "a"}) {
		t.Fatalf("deletions since the watermark: %v; want [c a], in the order made", tombKeys(got))
	}
	for _, ts := range got {
		if ts.DeletedAt.Before(before) || ts.DeletedAt.After(after) || ts.DeletedAt.Location() != time.UTC {
			t.Errorf("tombstone %v deleted at %s; want UTC between %s and %s", ts.Key, ts.DeletedAt, before, after)
		}
	}
	if all, _ := deletions(t, s, e, ""); !slices.Equal(tombKeys(all), []any{"c", "a"}) {
		t.Errorf("every tombstone: %v", tombKeys(all))
	}
	if got, _ := deletions(t, s, e, w1); len(got) != 0 {
		t.Errorf("deletions since Deletions' own watermark: %v; want none", tombKeys(got))
	}
	if got, _ := deletions(t, s, su.people, ""); len(got) != 0 {
		t.Errorf("deletions of people: %v; want none (the tombstones are of categories)", tombKeys(got))
	}

	// Deleted and inserted again after the watermark: in both.
	_, w2 := scanSince(t, s, e, "", "")
	del("b")
	insert(t, s, e, map[string]any{"code": "b", "title": "Again"})
	if got, _ := scanSince(t, s, e, w2, ""); !slices.Equal(got, []any{"b"}) {
		t.Errorf("scan since, after b was deleted and inserted again: %v; want [b]", got)
	}
	if got, _ := deletions(t, s, e, w2); !slices.Equal(tombKeys(got), []any{"b"}) {
		t.Errorf("deletions since, after b was deleted and inserted again: %v; want [b]", tombKeys(got))
	}

	// Keys come back canonical: integers as int64.
	p := su.people
	r := insert(t, s, p, map[string]any{"firstName": "Del", "lastName": "Eted"})
	_, wp := scanSince(t, s, p, "", "")
	if err := tryDelete(t, s, p, plinth.KeyString(p.KeyOf(r)), r.Version); err != nil {
		t.Fatal(err)
	}
	if got, _ := deletions(t, s, p, wp); len(got) != 1 || got[0].Key != p.KeyOf(r) {
		t.Errorf("deletions of people: %#v; want the key %#v (%T)", tombKeys(got), p.KeyOf(r), p.KeyOf(r))
	}

	// Deletions stops as Scan does.
	stop := errors.New("stop")
	calls := 0
	if _, err := s.Deletions(t.Context(), e, "", func(plinth.Tombstone) error { calls++; return stop }); err != stop || calls != 1 {
		t.Errorf("deletions whose fn fails: %v after %d calls; want stop, unchanged, after 1", err, calls)
	}
}

// testPurgeTombstones: PurgeTombstones removes tombstones deleted before a
// time; Deletions since a watermark older than what it removed fails with
// *WatermarkExpiredError, whose Oldest is the purge's time, rather than
// miss deletions; a watermark taken after the purge works.
func (su *suite) testPurgeTombstones(t *testing.T) {
	s := su.open(t)
	e := su.categories
	for _, c := range []string{"old", "new", "kept"} {
		insert(t, s, e, map[string]any{"code": c, "title": "T"})
	}
	_, w0 := scanSince(t, s, e, "", "")
	if err := tryDelete(t, s, e, "old", 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	cut := plinth.Now()
	time.Sleep(2 * time.Millisecond)
	if err := tryDelete(t, s, e, "new", 1); err != nil {
		t.Fatal(err)
	}
	n, err := s.PurgeTombstones(t.Context(), cut)
	if err != nil || n != 1 {
		t.Fatalf("purge tombstones before the cut: %d, %v; want 1", n, err)
	}
	_, err = s.Deletions(t.Context(), e, w0, func(plinth.Tombstone) error { return nil })
	var expired *plinth.WatermarkExpiredError
	if !errors.As(err, &expired) || !expired.Oldest.Equal(cut) || expired.Since != w0 {
		t.Fatalf("deletions since a watermark before the purged deletion: %v; want *WatermarkExpiredError with Oldest %s", err, cut)
	}
	if all, _ := deletions(t, s, e, ""); !slices.Equal(tombKeys(all), []any{"new"}) {
		t.Errorf("every tombstone after the purge: %v; want [new]", tombKeys(all))
	}
	// An earlier cut does not move the horizon back.
	if n, err := s.PurgeTombstones(t.Context(), cut.Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("purge with an earlier cut: %d, %v", n, err)
	}
	_, err = s.Deletions(t.Context(), e, w0, func(plinth.Tombstone) error { return nil })
	if !errors.As(err, &expired) || !expired.Oldest.Equal(cut) {
		t.Errorf("after a purge with an earlier cut: %v; want Oldest still %s", err, cut)
	}
	_, w1 := scanSince(t, s, e, "", "")
	if err := tryDelete(t, s, e, "kept", 1); err != nil {
		t.Fatal(err)
	}
	if got, _ := deletions(t, s, e, w1); !slices.Equal(tombKeys(got), []any{"kept"}) {
		t.Errorf("deletions since a watermark taken after the purge: %v; want [kept]", tombKeys(got))
	}
	if n, err := s.PurgeTombstones(t.Context(), time.Now().Add(time.Hour)); err != nil || n != 2 {
		t.Errorf("purge everything: %d, %v; want 2", n, err)
	}
}

// testLastUpdated: the latest updatedAt of an entity's records or of its
// tombstones; zero when it has neither.
func (su *suite) testLastUpdated(t *testing.T) {
	s := su.open(t)
	e := su.categories
	last := func(e *plinth.Entity) time.Time {
		t.Helper()
		at, err := s.LastUpdated(t.Context(), e)
		if err != nil {
			t.Fatalf("last update of %s: %v", e.Plural, err)
		}
		return at
	}
	if at := last(e); !at.IsZero() {
		t.Fatalf("last update of an empty entity: %s; want zero", at)
	}
	a := insert(t, s, e, map[string]any{"code": "a", "title": "T"})
	time.Sleep(2 * time.Millisecond)
	b := insert(t, s, e, map[string]any{"code": "b", "title": "T"})
	if at := last(e); !at.Equal(b.UpdatedAt) {
		t.Errorf("last update: %s; want b's updatedAt %s", at, b.UpdatedAt)
	}
	time.Sleep(2 * time.Millisecond)
	a2, err := tryUpdate(t, s, e, "a", a.Version, category(t, e, "a", "U", 0))
	if err != nil {
		t.Fatal(err)
	}
	if at := last(e); !at.Equal(a2.UpdatedAt) {
		t.Errorf("last update after updating a: %s; want %s", at, a2.UpdatedAt)
	}
	time.Sleep(2 * time.Millisecond)
	before := plinth.Now()
	if err := tryDelete(t, s, e, "a", a2.Version); err != nil {
		t.Fatal(err)
	}
	after := plinth.Now()
	if at := last(e); at.Before(before) || at.After(after) {
		t.Errorf("last update after deleting a: %s; want the deletion's time, between %s and %s", at, before, after)
	}
	if at := last(su.people); !at.IsZero() {
		t.Errorf("last update of people, which has no records: %s", at)
	}
}
