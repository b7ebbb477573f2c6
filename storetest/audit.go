package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
)

// RunAudit runs the contract suite of plinth.AuditStore. open must return
// a fresh, empty store, prepared with Domains(t), that also implements
// plinth.AuditStore and whose Tx implements plinth.AuditTx; and arrange for
// it to be closed when the test ends.
//
// What the suite holds a store to, beyond the AuditStore documentation:
//
//   - Sequences are 1, 2, 3 … with no gaps, also when appends come from
//     many goroutines at once, some through AppendAudit and some through
//     Tx.AppendAudit inside Write; every PrevHash is the Hash of the record
//     before ("" for the first), and every Hash is ComputeHash().
//   - A Write whose fn fails leaves no audit record and no gap.
//   - Appends return the records as stored: Time in UTC, truncated to
//     microseconds (a zero Time becomes the time of the append); ScanAudit
//     and AuditRecords return exactly that.
//   - Text the database cannot hold (invalid UTF-8, U+0000) is stored
//     replaced by U+FFFD, and the record still verifies.
//   - AuditRecords: User matches the principal's subject, e-mail or
//     consumer exactly; EntityID any of RecordIDs; Since is inclusive and
//     Until exclusive; After and Limit page (Limit <= 0 means
//     plinth.DefaultLimit), and more says whether a page follows.
func RunAudit(t *testing.T, open func(t *testing.T) plinth.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s plinth.Store, a plinth.AuditStore)
	}{
		{"RoundTrip", testAuditRoundTrip},
		{"ConcurrentChainHasNoGaps", testAuditConcurrentChain},
		{"FailedWriteLeavesNoRecordAndNoGap", testAuditFailedWrite},
		{"SeveralInOneWrite", testAuditSeveralInOneWrite},
		{"UnstorableTextIsReplaced", testAuditUnstorableText},
		{"Search", testAuditSearch},
		{"SearchPagination", testAuditPagination},
		{"Scan", testAuditScan},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			a, ok := s.(plinth.AuditStore)
			if !ok {
				t.Fatalf("%T does not implement plinth.AuditStore", s)
			}
			tc.fn(t, s, a)
		})
	}
}

// fullAudit returns an audit record with every field set.
func fullAudit(i int) plinth.AuditRecord {
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		london = time.FixedZone("BST", 3600)
	}
	return plinth.AuditRecord{
		Time:          time.Date(2026, 7, 14, 10, 30, 15, 123456789, london).Add(time.Duration(i) * time.Second),
		CorrelationID: fmt.Sprintf("corr-%d", i),
		Environment:   plinth.EnvProduction,
		Domain:        "residents",
		Entity:        "residents",
		Operation:     "list",
		Method:        "GET",
		Route:         "/api/v1/residents",
		Filters:       map[string]string{"last_name": "O’Brien ☂", "postcode": "E8 1DY", "first_name": "Zoë"},
		Principal: plinth.Principal{Subject: "sub-1", Email: "ana.lópez@example.org", Name: "Ana López",
			Groups: []string{"housing-officers", "auditors"}},
		Decision:      plinth.DecisionAllow,
		Reason:        "",
		Status:        200,
		RecordIDs:     []string{"12345", "67890", "12345"},
		Count:         2,
		DurationMs:    12.345678901234,
		ClientAddress: "203.0.113.7",
		UserAgent:     "Mozilla/5.0 (X11; Linux x86_64) 日本",
	}
}

// appendTx appends records inside one Write and returns them.
func appendTx(t testing.TB, s plinth.Store, recs ...plinth.AuditRecord) []plinth.AuditRecord {
	t.Helper()
	var out []plinth.AuditRecord
	err := s.Write(context.Background(), func(tx plinth.Tx) error {
		out = nil
		atx, ok := tx.(plinth.AuditTx)
		if !ok {
			return fmt.Errorf("the Tx %T does not implement plinth.AuditTx", tx)
		}
		for _, r := range recs {
			got, err := atx.AppendAudit(context.Background(), r)
			if err != nil {
				return err
			}
			out = append(out, got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Write with AppendAudit: %v", err)
	}
	return out
}

func appendAudit(t testing.TB, a plinth.AuditStore, recs ...plinth.AuditRecord) []plinth.AuditRecord {
	t.Helper()
	out, err := a.AppendAudit(context.Background(), recs)
	if err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if len(out) != len(recs) {
		t.Fatalf("AppendAudit of %d records returned %d", len(recs), len(out))
	}
	return out
}

// scanAll returns the whole trail.
func scanAll(t testing.TB, a plinth.AuditStore) []plinth.AuditRecord {
	t.Helper()
	var out []plinth.AuditRecord
	if err := a.ScanAudit(context.Background(), 0, func(r plinth.AuditRecord) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("ScanAudit: %v", err)
	}
	return out
}

// verifyChain checks sequences 1..n, the links and the hashes.
func verifyChain(t testing.TB, recs []plinth.AuditRecord) {
	t.Helper()
	prev := ""
	for i, r := range recs {
		if r.Sequence != int64(i+1) {
			t.Fatalf("record %d has sequence %d, want %d (sequences must be 1, 2, 3 … without gaps)", i, r.Sequence, i+1)
		}
		if r.PrevHash != prev {
			t.Fatalf("record %d: PrevHash %q, want the hash of the record before, %q", r.Sequence, r.PrevHash, prev)
		}
		if h := r.ComputeHash(); r.Hash != h {
			t.Fatalf("record %d: Hash %q, but ComputeHash() is %q", r.Sequence, r.Hash, h)
		}
		prev = r.Hash
	}
}

// sameAudit compares records by what the hash covers (their JSON) and by
// the time's location.
func sameAudit(t testing.TB, what string, got, want plinth.AuditRecord) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
	if got.Time.Location() != time.UTC {
		t.Errorf("%s: time %v is not in UTC", what, got.Time)
	}
}

func testAuditRoundTrip(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	in := fullAudit(0)
	got := appendAudit(t, a, in)[0]
	if got.Sequence != 1 || got.PrevHash != "" || got.Hash == "" || got.Hash != got.ComputeHash() {
		t.Fatalf("first record: sequence %d, prevHash %q, hash %q", got.Sequence, got.PrevHash, got.Hash)
	}
	want := in
	want.Time = in.Time.UTC().Truncate(time.Microsecond)
	want.Sequence, want.PrevHash, want.Hash = got.Sequence, got.PrevHash, got.Hash
	if !reflect.DeepEqual(got, want) {
		t.Errorf("AppendAudit returned\n%+v\nwant\n%+v", got, want)
	}
	// A service principal, a denial, no filters and no record ids.
	svc := plinth.AuditRecord{
		Time: time.Date(2026, 7, 14, 11, 0, 0, 999, time.UTC), CorrelationID: "c2", Environment: plinth.EnvStaging,
		Operation: "view", Principal: plinth.Principal{Subject: "svc", TokenID: "grant-1", Consumer: "housing-benefits-listener"},
		Decision: plinth.DecisionDeny, Reason: "no grant for GET /api/v1/residents/{id}", Status: 403, DurationMs: 0.25,
	}
	got2 := appendTx(t, s, svc)[0]
	if got2.Sequence != 2 || got2.PrevHash != got.Hash {
		t.Fatalf("second record: sequence %d, prevHash %q; want 2, %q", got2.Sequence, got2.PrevHash, got.Hash)
	}
	if want := svc.Time.Truncate(time.Microsecond); !got2.Time.Equal(want) {
		t.Errorf("time %v, want %v", got2.Time, want)
	}
	stored := scanAll(t, a)
	if len(stored) != 2 {
		t.Fatalf("ScanAudit: %d records, want 2", len(stored))
	}
	verifyChain(t, stored)
	sameAudit(t, "ScanAudit record 1", stored[0], got)
	sameAudit(t, "ScanAudit record 2", stored[1], got2)
	if !reflect.DeepEqual(stored[0].RecordIDs, in.RecordIDs) {
		t.Errorf("record ids %q, want %q (in order, duplicates kept)", stored[0].RecordIDs, in.RecordIDs)
	}
	if !reflect.DeepEqual(stored[0].Principal, in.Principal) || !reflect.DeepEqual(stored[0].Filters, in.Filters) {
		t.Errorf("principal or filters changed: %+v %v", stored[0].Principal, stored[0].Filters)
	}
	// A zero Time becomes the time of the append.
	before := time.Now().Add(-time.Second)
	got3 := appendAudit(t, a, plinth.AuditRecord{Operation: "view"})[0]
	if got3.Time.Before(before) || got3.Time.After(time.Now().Add(time.Second)) || got3.Time.Location() != time.UTC {
		t.Errorf("a zero Time became %v; want the time of the append, in UTC", got3.Time)
	}
	// Empty batches are a no-op.
	if out, err := a.AppendAudit(t.Context(), nil); err != nil || len(out) != 0 {
		t.Errorf("AppendAudit(nil) = %v, %v", out, err)
	}
	if n := len(scanAll(t, a)); n != 3 {
		t.Errorf("%d records after an empty append, want 3", n)
	}
}

func testAuditConcurrentChain(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	const writers, total = 8, 50
	var (
		mu       sync.Mutex
		returned = map[int64]plinth.AuditRecord{}
		next     int
		wg       sync.WaitGroup
	)
	take := func(n int) []plinth.AuditRecord {
		mu.Lock()
		defer mu.Unlock()
		var recs []plinth.AuditRecord
		for ; n > 0 && next < total; n-- {
			r := fullAudit(next)
			r.CorrelationID = fmt.Sprintf("concurrent-%d", next)
			recs = append(recs, r)
			next++
		}
		return recs
	}
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				recs := take(1 + (w+i)%4)
				if len(recs) == 0 {
					return
				}
				var out []plinth.AuditRecord
				var err error
				if (w+i)%2 == 0 {
					out, err = a.AppendAudit(context.Background(), recs)
				} else {
					err = s.Write(context.Background(), func(tx plinth.Tx) error {
						out = nil
						atx, ok := tx.(plinth.AuditTx)
						if !ok {
							return fmt.Errorf("the Tx %T does not implement plinth.AuditTx", tx)
						}
						for _, r := range recs {
							got, err := atx.AppendAudit(context.Background(), r)
							if err != nil {
								return err
							}
							out = append(out, got)
						}
						return nil
					})
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for j, r := range out {
					if r.CorrelationID != recs[j].CorrelationID {
						errs <- fmt.Errorf("append returned record %q at position %d, want %q", r.CorrelationID, j, recs[j].CorrelationID)
					}
					returned[r.Sequence] = r
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	stored := scanAll(t, a)
	if len(stored) != total {
		t.Fatalf("%d records stored, want %d", len(stored), total)
	}
	verifyChain(t, stored)
	if len(returned) != total {
		t.Fatalf("appends returned %d distinct sequences, want %d", len(returned), total)
	}
	for _, r := range stored {
		sameAudit(t, fmt.Sprintf("record %d as stored and as returned", r.Sequence), r, returned[r.Sequence])
	}
}

func testAuditFailedWrite(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	first := appendAudit(t, a, fullAudit(0))[0]
	cats := categoriesEntity(t)
	boom := errors.New("boom")
	err := s.Write(t.Context(), func(tx plinth.Tx) error {
		if _, err := tx.Insert(t.Context(), cats, validate(t, cats, map[string]any{"code": "c1", "title": "One"}, true)); err != nil {
			return err
		}
		if _, err := tx.(plinth.AuditTx).AppendAudit(t.Context(), fullAudit(1)); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("Write returned %v, want fn's error", err)
	}
	if n := count(t, s, cats); n != 0 {
		t.Errorf("%d categories after the failed write", n)
	}
	if got := scanAll(t, a); len(got) != 1 {
		t.Fatalf("%d audit records after the failed write, want 1", len(got))
	}
	next := appendTx(t, s, fullAudit(2))[0]
	if next.Sequence != 2 || next.PrevHash != first.Hash {
		t.Errorf("the record after a failed write has sequence %d and prevHash %q; want 2 and %q", next.Sequence, next.PrevHash, first.Hash)
	}
	third := appendAudit(t, a, fullAudit(3))[0]
	if third.Sequence != 3 {
		t.Errorf("sequence %d, want 3", third.Sequence)
	}
	verifyChain(t, scanAll(t, a))
}

func testAuditSeveralInOneWrite(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	out := appendTx(t, s, fullAudit(0), fullAudit(1), fullAudit(2))
	for i, r := range out {
		if r.Sequence != int64(i+1) {
			t.Errorf("record %d of one write has sequence %d", i, r.Sequence)
		}
	}
	out = appendAudit(t, a, fullAudit(3), fullAudit(4))
	if out[0].Sequence != 4 || out[1].Sequence != 5 || out[1].PrevHash != out[0].Hash {
		t.Errorf("batch after a write: %d, %d", out[0].Sequence, out[1].Sequence)
	}
	verifyChain(t, scanAll(t, a))
}

func testAuditUnstorableText(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	r := fullAudit(0)
	r.UserAgent = "bad\x00agent \xff\xfe"
	r.Filters = map[string]string{"q": "a\x00b", "bad\xffkey": "v"}
	r.Principal.Subject = "sub\x00"
	r.RecordIDs = []string{"ok", "nul\x00id"}
	got := appendAudit(t, a, r)[0]
	stored := scanAll(t, a)
	if len(stored) != 1 {
		t.Fatalf("%d records", len(stored))
	}
	verifyChain(t, stored)
	sameAudit(t, "record with unstorable text", stored[0], got)
	if stored[0].UserAgent != "bad\uFFFDagent \uFFFD" || stored[0].Filters["q"] != "a\uFFFDb" || stored[0].Principal.Subject != "sub\uFFFD" ||
		stored[0].RecordIDs[1] != "nul\uFFFDid" || stored[0].Filters["bad\uFFFDkey"] != "v" {
		t.Errorf("text not replaced as documented: %+v", stored[0])
	}
}

// searchSet appends a varied trail for the search tests and returns it.
func searchSet(t *testing.T, s plinth.Store, a plinth.AuditStore) []plinth.AuditRecord {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	users := []plinth.Principal{
		{Subject: "u-ana", Email: "ana@example.org", Groups: []string{"g"}},
		{Subject: "u-ben", Email: "ben@example.org"},
		{Subject: "svc-1", TokenID: "grant-9", Consumer: "benefits-listener"},
		{}, // no valid token
	}
	var recs []plinth.AuditRecord
	for i := range 40 {
		r := plinth.AuditRecord{
			Time:          base.Add(time.Duration(i) * time.Hour),
			CorrelationID: fmt.Sprintf("s-%d", i),
			Environment:   plinth.EnvProduction,
			Domain:        []string{"residents", "contacts"}[i%2],
			Entity:        []string{"residents", "contacts"}[i%2],
			Operation:     "view",
			Principal:     users[i%4],
			Decision:      plinth.DecisionAllow,
			Status:        200,
			RecordIDs:     []string{fmt.Sprint(1000 + i%5)},
			Count:         1,
		}
		if i%7 == 0 {
			r.RecordIDs = append(r.RecordIDs, "12345")
		}
		recs = append(recs, r)
	}
	var out []plinth.AuditRecord
	for i := 0; i < len(recs); i += 8 {
		if i%16 == 0 {
			out = append(out, appendAudit(t, a, recs[i:i+8]...)...)
		} else {
			out = append(out, appendTx(t, s, recs[i:i+8]...)...)
		}
	}
	return out
}

// searchAll pages through a query with the given page size.
func searchAll(t testing.TB, a plinth.AuditStore, q plinth.AuditQuery) []plinth.AuditRecord {
	t.Helper()
	var out []plinth.AuditRecord
	for range 1000 {
		page, more, err := a.AuditRecords(context.Background(), q)
		if err != nil {
			t.Fatalf("AuditRecords(%+v): %v", q, err)
		}
		out = append(out, page...)
		if !more {
			return out
		}
		if len(page) == 0 {
			t.Fatalf("AuditRecords(%+v): an empty page with more", q)
		}
		q.After = page[len(page)-1].Sequence
	}
	t.Fatalf("AuditRecords(%+v): pagination does not end", q)
	return nil
}

func testAuditSearch(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	all := searchSet(t, s, a)
	base := all[0].Time
	filter := func(keep func(r plinth.AuditRecord) bool) []int64 {
		var seqs []int64
		for _, r := range all {
			if keep(r) {
				seqs = append(seqs, r.Sequence)
			}
		}
		return seqs
	}
	hasID := func(r plinth.AuditRecord, id string) bool {
		for _, x := range r.RecordIDs {
			if x == id {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		name string
		q    plinth.AuditQuery
		want []int64
	}{
		{"everything", plinth.AuditQuery{}, filter(func(plinth.AuditRecord) bool { return true })},
		{"user by subject", plinth.AuditQuery{User: "u-ana"}, filter(func(r plinth.AuditRecord) bool { return r.Principal.Subject == "u-ana" })},
		{"user by email", plinth.AuditQuery{User: "ben@example.org"}, filter(func(r plinth.AuditRecord) bool { return r.Principal.Subject == "u-ben" })},
		{"user by consumer", plinth.AuditQuery{User: "benefits-listener"}, filter(func(r plinth.AuditRecord) bool { return r.Principal.Subject == "svc-1" })},
		{"user matches exactly", plinth.AuditQuery{User: "ana"}, nil},
		{"entity id", plinth.AuditQuery{EntityID: "12345"}, filter(func(r plinth.AuditRecord) bool { return hasID(r, "12345") })},
		{"entity id and user", plinth.AuditQuery{EntityID: "1001", User: "ben@example.org"},
			filter(func(r plinth.AuditRecord) bool { return hasID(r, "1001") && r.Principal.Subject == "u-ben" })},
		{"entity id is exact", plinth.AuditQuery{EntityID: "1234"}, nil},
		{"domain", plinth.AuditQuery{Domain: "contacts"}, filter(func(r plinth.AuditRecord) bool { return r.Domain == "contacts" })},
		{"since inclusive, until exclusive", plinth.AuditQuery{Since: base.Add(5 * time.Hour), Until: base.Add(9 * time.Hour)},
			filter(func(r plinth.AuditRecord) bool { return r.Sequence >= 6 && r.Sequence <= 9 })},
		{"since and until in another zone", plinth.AuditQuery{Since: base.Add(5 * time.Hour).In(time.FixedZone("X", -5*3600)),
			Until: base.Add(9*time.Hour + time.Nanosecond).In(time.FixedZone("Y", 7200))},
			filter(func(r plinth.AuditRecord) bool { return r.Sequence >= 6 && r.Sequence <= 10 })},
		{"domain and time window", plinth.AuditQuery{Domain: "residents", Since: base.Add(10 * time.Hour), Until: base.Add(20 * time.Hour)},
			filter(func(r plinth.AuditRecord) bool {
				return r.Domain == "residents" && !r.Time.Before(base.Add(10*time.Hour)) && r.Time.Before(base.Add(20*time.Hour))
			})},
		{"who looked at 12345 in a window", plinth.AuditQuery{EntityID: "12345", User: "u-ana", Since: base, Until: base.Add(30 * time.Hour)},
			filter(func(r plinth.AuditRecord) bool {
				return hasID(r, "12345") && r.Principal.Subject == "u-ana" && r.Time.Before(base.Add(30*time.Hour))
			})},
		{"after", plinth.AuditQuery{After: 35}, []int64{36, 37, 38, 39, 40}},
		{"nothing", plinth.AuditQuery{Domain: "none"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, limit := range []int{0, 1, 3, 100} {
				q := tc.q
				q.Limit = limit
				got := searchAll(t, a, q)
				var seqs []int64
				for _, r := range got {
					seqs = append(seqs, r.Sequence)
					sameAudit(t, "search result", r, all[r.Sequence-1])
				}
				if !reflect.DeepEqual(seqs, tc.want) {
					t.Errorf("limit %d: sequences %v, want %v", limit, seqs, tc.want)
				}
			}
		})
	}
}

func testAuditPagination(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	searchSet(t, s, a)
	page, more, err := a.AuditRecords(t.Context(), plinth.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != plinth.DefaultLimit || !more || page[0].Sequence != 1 {
		t.Fatalf("default page: %d records from %d, more %v; want %d from 1, more", len(page), page[0].Sequence, more, plinth.DefaultLimit)
	}
	page, more, err = a.AuditRecords(t.Context(), plinth.AuditQuery{After: 30, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 10 || more || page[0].Sequence != 31 {
		t.Errorf("last full page: %d records, more %v; want 10, no more", len(page), more)
	}
	page, more, err = a.AuditRecords(t.Context(), plinth.AuditQuery{After: 40, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 0 || more {
		t.Errorf("past the end: %d records, more %v", len(page), more)
	}
	if page == nil {
		t.Errorf("an empty page is nil; want an empty slice")
	}
}

func testAuditScan(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	all := searchSet(t, s, a)
	var got []int64
	if err := a.ScanAudit(t.Context(), 37, func(r plinth.AuditRecord) error {
		got = append(got, r.Sequence)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []int64{38, 39, 40}) {
		t.Errorf("ScanAudit after 37: %v", got)
	}
	stop := errors.New("stop")
	n := 0
	err := a.ScanAudit(t.Context(), 0, func(plinth.AuditRecord) error {
		n++
		if n == 5 {
			return stop
		}
		return nil
	})
	if err != stop || n != 5 {
		t.Errorf("ScanAudit with fn failing at 5: %v after %d calls; want fn's error after 5", err, n)
	}
	stored := scanAll(t, a)
	verifyChain(t, stored)
	for i := range stored {
		sameAudit(t, "scanned", stored[i], all[i])
	}
}

// categoriesEntity returns the categories entity of Domains.
func categoriesEntity(t testing.TB) *plinth.Entity {
	t.Helper()
	for _, e := range Domains(t)[0].Entities {
		if e.Plural == "categories" {
			return e
		}
	}
	t.Fatal("storetest: no categories entity")
	return nil
}
