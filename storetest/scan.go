package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
)

// scanRecords runs a Scan to the end, failing the test on error, and checks
// that keys strictly ascend.
func scanRecords(t testing.TB, s plinth.Store, e *plinth.Entity, q plinth.ScanQuery) []plinth.Record {
	t.Helper()
	var out []plinth.Record
	if _, err := s.Scan(t.Context(), e, q, func(r plinth.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("scan %s: %v", e.Plural, err)
	}
	for i := 1; i < len(out); i++ {
		if !keyLess(e.KeyOf(out[i-1]), e.KeyOf(out[i])) {
			t.Fatalf("scan %s: key %#v comes after %#v: keys must strictly ascend", e.Plural, e.KeyOf(out[i]), e.KeyOf(out[i-1]))
		}
	}
	return out
}

// bulkPeople returns n valid people, named "{prefix} 0000" on.
func bulkPeople(t testing.TB, e *plinth.Entity, prefix string, n int) []map[string]any {
	statuses := []string{"active", "inactive", "archived"}
	docs := make([]map[string]any, n)
	for i := range n {
		docs[i] = validate(t, e, map[string]any{
			"firstName": fmt.Sprintf("%s %04d", prefix, i),
			"lastName":  "Scan",
			"status":    statuses[i%3],
			"age":       i % 90,
		}, true)
	}
	return docs
}

// testScanSnapshot: a scan reads one snapshot. Once it has passed its first
// record to fn, another goroutine updates records it has and has not yet
// read, deletes some it has not read and inserts new ones after them, and
// commits; the scan still sees exactly the records as they were when it
// began, each once, in key order.
func (su *suite) testScanSnapshot(t *testing.T) {
	s := su.open(t)
	e := su.people
	const n = 1500 // more than any sensible fetch batch or socket buffer
	if err := s.BulkInsert(t.Context(), e, bulkPeople(t, e, "Snap", n)); err != nil {
		t.Fatal(err)
	}
	before := listAll(t, s, e, nil, 100)
	if len(before) != n {
		t.Fatalf("listed %d of %d", len(before), n)
	}
	var seen []plinth.Record
	_, err := s.Scan(t.Context(), e, plinth.ScanQuery{}, func(r plinth.Record) error {
		if len(seen) == 0 {
			done := make(chan error)
			go func() { done <- churn(t.Context(), s, e, before) }()
			if err := <-done; err != nil {
				return fmt.Errorf("concurrent writes during the scan: %w", err)
			}
		}
		seen = append(seen, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if su.caps.NoSnapshotScan {
		checkScanWithoutSnapshot(t, e, before, seen)
	} else if len(seen) != n {
		t.Fatalf("the scan saw %d records; want the %d there were when it began", len(seen), n)
	}
	for i, r := range seen {
		if su.caps.NoSnapshotScan {
			break
		}
		want := before[i]
		if e.KeyOf(r) != e.KeyOf(want) || r.Version != want.Version {
			t.Fatalf("scan record %d: key %v version %d; want key %v version %d (the state when the scan began)",
				i, e.KeyOf(r), r.Version, e.KeyOf(want), want.Version)
		}
		checkData(t, fmt.Sprintf("scan record %d", i), r.Data, want.Data)
	}
	// The writes were committed, not held back by the scan.
	if got := count(t, s, e); got != n-5+10 {
		t.Errorf("count after the scan: %d, want %d", got, n-5+10)
	}
	if got := get(t, s, e, e.KeyOf(before[n-1])); got.Version != 2 {
		t.Errorf("a record updated during the scan has version %d, want 2", got.Version)
	}
	if after := scanRecords(t, s, e, plinth.ScanQuery{}); len(after) != n-5+10 {
		t.Errorf("a scan after the writes saw %d records, want %d", len(after), n-5+10)
	}
}

// checkScanWithoutSnapshot checks the weaker rule of a store without
// snapshot scans (Capabilities.NoSnapshotScan) after churn ran during the
// scan: keys ascend; every record churn did not delete is seen once, at
// the version it had or the one churn gave it; the five churn deleted and
// the ten it inserted may or may not be seen.
func checkScanWithoutSnapshot(t *testing.T, e *plinth.Entity, before, seen []plinth.Record) {
	t.Helper()
	n := len(before)
	deleted := map[any]bool{}
	for i := n/2 + 1; i <= n/2+5; i++ {
		deleted[e.KeyOf(before[i])] = true
	}
	was := map[any]plinth.Record{}
	for _, r := range before {
		was[e.KeyOf(r)] = r
	}
	got := map[any]bool{}
	for i, r := range seen {
		k := e.KeyOf(r)
		if i > 0 && !keyLess(e.KeyOf(seen[i-1]), k) {
			t.Fatalf("scan record %d: key %v after %v; keys must strictly ascend", i, k, e.KeyOf(seen[i-1]))
		}
		got[k] = true
		if old, ok := was[k]; ok && r.Version != old.Version && r.Version != old.Version+1 {
			t.Errorf("scan record %v: version %d; want %d or %d", k, r.Version, old.Version, old.Version+1)
		}
		if _, ok := was[k]; !ok && r.Data["lastName"] != "Later" {
			t.Errorf("scan record %v was neither there before nor inserted during the scan", k)
		}
	}
	for _, r := range before {
		if k := e.KeyOf(r); !got[k] && !deleted[k] {
			t.Errorf("the scan missed record %v, present throughout it", k)
		}
	}
	t.Logf("without a snapshot: the scan saw %d records (%d before it began)", len(seen), n)
}

// churn updates the first, middle and last five records of before,
// deletes five after the middle and inserts ten new ones, in one Write.
func churn(ctx context.Context, s plinth.Store, e *plinth.Entity, before []plinth.Record) error {
	n := len(before)
	return s.Write(ctx, func(tx plinth.Tx) error {
		for _, i := range []int{0, n / 2, n - 5, n - 4, n - 3, n - 2, n - 1} {
			data := withKey(e, before[i].Data, e.KeyOf(before[i]))
			data["lastName"] = "Changed"
			if _, err := tx.Update(ctx, e, e.KeyOf(before[i]), before[i].Version, data); err != nil {
				return err
			}
		}
		for i := n/2 + 1; i <= n/2+5; i++ {
			if err := tx.Delete(ctx, e, e.KeyOf(before[i]), before[i].Version); err != nil {
				return err
			}
		}
		for i := range 10 {
			if _, err := tx.Insert(ctx, e, map[string]any{"firstName": fmt.Sprintf("New %d", i), "lastName": "Later"}); err != nil {
				return err
			}
		}
		return nil
	})
}

// testScanFilters: Scan takes the list filters, with the same meaning as
// List, and an inclusive UpdatedSince bound.
func (su *suite) testScanFilters(t *testing.T) {
	s := su.open(t)
	e := su.people
	for _, doc := range filterPeople {
		insert(t, s, e, doc)
	}
	for _, raw := range []string{
		"", "first_name=zoe", "last_name=smith", "status=active", "verified=false",
		"age_from=30&age_to=31", "date_of_birth_from=1990-01-01", "last_seen_to=2024-01-01T10:00:00Z",
		"postcode=e8+1dy", "address=flat", "postcode=N1+9GU&address=flat", "age_from=30&last_name=o",
		"first_name=xyz",
	} {
		want := firstNames(listAll(t, s, e, mustValues(raw), 100))
		got := firstNames(scanRecords(t, s, e, plinth.ScanQuery{Conditions: mustQuery(t, e, raw).Conditions}))
		if !slices.Equal(got, want) {
			t.Errorf("scan ?%s: %q; List gives %q", raw, got, want)
		}
	}
	su.checkUpdatedSince(t, s)
	checkNestedJSON(t, s, e)
}

// checkNestedJSON: a scan gives the records List gives (a store may read
// them differently), and a scan asked for nested values as JSON text gives
// records the API writes byte for byte as it writes them decoded.
func checkNestedJSON(t *testing.T, s plinth.Store, e *plinth.Entity) {
	listed := listAll(t, s, e, nil, 100)
	plain := scanRecords(t, s, e, plinth.ScanQuery{})
	text := scanRecords(t, s, e, plinth.ScanQuery{NestedJSON: true})
	if len(plain) != len(text) || len(plain) != len(listed) || len(plain) == 0 {
		t.Fatalf("scan with NestedJSON: %d records, without: %d, list: %d", len(text), len(plain), len(listed))
	}
	for i := range plain {
		want := e.MarshalRecord(listed[i])
		if got := e.MarshalRecord(plain[i]); !bytes.Equal(got, want) {
			t.Errorf("scan writes\n%s\nlist\n%s", got, want)
		}
		if got := e.MarshalRecord(text[i]); !bytes.Equal(got, want) {
			t.Errorf("scan with NestedJSON writes\n%s\nlist\n%s", got, want)
		}
	}
	// List with NestedJSON: the same records, written out the same.
	var nested []plinth.Record
	for q := (plinth.Query{Limit: 7, NestedJSON: true}); ; {
		page, err := s.List(t.Context(), e, q)
		if err != nil {
			t.Fatalf("list with NestedJSON: %v", err)
		}
		nested = append(nested, page.Records...)
		if !page.More || len(page.Records) == 0 {
			break
		}
		q.After = e.KeyOf(page.Records[len(page.Records)-1])
	}
	if len(nested) != len(listed) {
		t.Fatalf("list with NestedJSON: %d records, without: %d", len(nested), len(listed))
	}
	for i := range nested {
		if got, want := e.MarshalRecord(nested[i]), e.MarshalRecord(listed[i]); !bytes.Equal(got, want) {
			t.Errorf("list with NestedJSON writes\n%s\nwithout\n%s", got, want)
		}
	}
	// ReuseData: each record is right while fn has it (and only then),
	// in either form (FieldValues).
	for _, values := range []bool{false, true} {
		i := 0
		q := plinth.ScanQuery{NestedJSON: true, ReuseData: true, FieldValues: values}
		if _, err := s.Scan(t.Context(), e, q, func(r plinth.Record) error {
			if r.Values != nil && (r.Data != nil || len(r.Values) != len(e.Fields)) {
				t.Fatalf("a record with %d values for %d fields, and Data %v", len(r.Values), len(e.Fields), r.Data)
			}
			if got, want := e.MarshalRecord(r), e.MarshalRecord(listed[i]); !bytes.Equal(got, want) {
				t.Errorf("scan with ReuseData (FieldValues %v) writes\n%s\nlist\n%s", values, got, want)
			}
			i++
			return nil
		}); err != nil || i != len(listed) {
			t.Fatalf("scan with ReuseData (FieldValues %v): %v after %d records, want %d", values, err, i, len(listed))
		}
	}
}

func (su *suite) checkUpdatedSince(t *testing.T, s plinth.Store) {
	e := su.categories
	var recs []plinth.Record
	for i := range 5 {
		recs = append(recs, insert(t, s, e, map[string]any{"code": fmt.Sprintf("u%d", i), "title": "Before", "rank": i}))
	}
	pause := func() { time.Sleep(3 * time.Millisecond) } // distinct microsecond stamps
	pause()
	update := func(i int, title string) plinth.Record {
		t.Helper()
		data := validate(t, e, map[string]any{"code": fmt.Sprintf("u%d", i), "title": title, "rank": i}, false)
		r, err := tryUpdate(t, s, e, e.KeyOf(recs[i]), recs[i].Version, data)
		if err != nil {
			t.Fatal(err)
		}
		pause()
		return r
	}
	u3 := update(3, "After")
	u1 := update(1, "Tools")
	insert(t, s, e, map[string]any{"code": "u9", "title": "New"})
	for _, tc := range []struct {
		since time.Time
		raw   string
		want  []any
	}{
		{time.Time{}, "", []any{"u0", "u1", "u2", "u3", "u4", "u9"}},
		{u3.UpdatedAt, "", []any{"u1", "u3", "u9"}}, // inclusive
		{u3.UpdatedAt.Add(time.Microsecond), "", []any{"u1", "u9"}},
		{u1.UpdatedAt, "", []any{"u1", "u9"}},
		{u3.UpdatedAt, "title=tool", []any{"u1"}},
		{time.Now().Add(time.Hour), "", nil},
	} {
		got := keys(e, scanRecords(t, s, e, plinth.ScanQuery{UpdatedSince: tc.since, Conditions: mustQuery(t, e, tc.raw).Conditions}))
		if !slices.Equal(got, tc.want) {
			t.Errorf("scan ?%s updated since %s: %v, want %v", tc.raw, tc.since.Format(time.RFC3339Nano), got, tc.want)
		}
	}
}

// testScanStops: a scan stops when its context is cancelled (fn is not
// called again, and the context's error comes back) or when fn fails
// (whose error comes back unchanged); the store works on afterwards.
func (su *suite) testScanStops(t *testing.T) {
	s := su.open(t)
	e := su.people
	const n = 1200
	if err := s.BulkInsert(t.Context(), e, bulkPeople(t, e, "Stop", n)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	calls, late := 0, 0
	_, err := s.Scan(ctx, e, plinth.ScanQuery{}, func(plinth.Record) error {
		calls++
		if ctx.Err() != nil {
			late++
		}
		if calls == 10 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls != 10 || late != 0 {
		t.Errorf("scan cancelled at record 10: error %v, %d calls, %d after the cancel; want context.Canceled, 10, 0", err, calls, late)
	}
	boom := errors.New("boom")
	calls = 0
	_, err = s.Scan(t.Context(), e, plinth.ScanQuery{}, func(plinth.Record) error {
		if calls++; calls == 3 {
			return boom
		}
		return nil
	})
	if err != boom || calls != 3 {
		t.Errorf("scan whose fn fails at record 3: error %v after %d calls; want boom, unchanged, after 3", err, calls)
	}
	calls = 0
	_, err = s.Scan(ctx, e, plinth.ScanQuery{}, func(plinth.Record) error { calls++; return nil })
	if !errors.Is(err, context.Canceled) || calls != 0 {
		t.Errorf("scan with a cancelled context: error %v after %d calls; want context.Canceled and none", err, calls)
	}
	short, cancelShort := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancelShort()
	start := time.Now()
	slow := func(plinth.Record) error { time.Sleep(time.Millisecond); return nil } // a slow consumer, so the deadline hits mid-scan
	_, err = s.Scan(short, e, plinth.ScanQuery{}, slow)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("slow scan with a 50ms deadline: error %v after %s; want context.DeadlineExceeded, promptly", err, time.Since(start))
	}
	if got := scanRecords(t, s, e, plinth.ScanQuery{}); len(got) != n {
		t.Errorf("a full scan after stopped ones saw %d records, want %d", len(got), n)
	}
	insert(t, s, e, map[string]any{"firstName": "After", "lastName": "Scans"})
}

// testScanMemoryIsFlat: a scan streams. The live heap, measured after a
// collection at points along a scan of 20,000 records, stays far below
// what holding the records read so far would take.
func (su *suite) testScanMemoryIsFlat(t *testing.T) {
	s := su.open(t)
	e := su.people
	n := 20000
	if su.caps.ScanMemoryRecords > 0 {
		n = su.caps.ScanMemoryRecords
	}
	every := n / 5
	for start := 0; start < n; start += every {
		if err := s.BulkInsert(t.Context(), e, bulkPeople(t, e, fmt.Sprintf("Mem%d", start), every)); err != nil {
			t.Fatal(err)
		}
	}
	live := func() int64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	base, peak, calls := live(), int64(0), 0
	var held []plinth.Record // what a scan that buffered would hold: measured, then dropped
	start := time.Now()
	_, err := s.Scan(t.Context(), e, plinth.ScanQuery{}, func(r plinth.Record) error {
		if calls++; calls%every == 0 && calls > every {
			peak = max(peak, live()-base)
		}
		if calls <= every {
			held = append(held, r)
		}
		if calls == every {
			buffered := live() - base
			held = nil
			t.Logf("holding %d records takes %d KiB of heap", every, buffered/1024)
		}
		return nil
	})
	elapsed := time.Since(start)
	if err != nil || calls != n {
		t.Fatalf("scan: %v after %d records, want %d", err, calls, n)
	}
	// Holding all n records would take about five times what n/5 take;
	// streaming must stay under 2 MiB more than at the start.
	const limit = 2 << 20
	t.Logf("scanned %d records in %s (%.0f/s); live heap grew at most %d KiB", n, elapsed.Round(time.Millisecond),
		float64(n)/elapsed.Seconds(), peak/1024)
	if peak > limit {
		t.Errorf("the live heap grew by %d KiB during the scan; want under %d KiB: records must be streamed", peak/1024, limit/1024)
	}
}
