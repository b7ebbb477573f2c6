package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
)

// RunAudit runs the contract suite of plinth.AuditStore. open must return
// a fresh, empty store, prepared with Domains(t), that also implements
// plinth.AuditStore and whose Tx implements plinth.AuditTx; and arrange for
// it to be closed when the test ends. The suite chains with
// audit.ChainPending, the one-shot form of audit.Chainer.
//
// What the suite holds a store to, beyond the AuditStore documentation:
//
//   - Appends return records unchained (Stored, Sequence 0, a LogID), and
//     they are not in ScanAudit or AuditRecords until chained.
//   - Once chained, sequences are 1, 2, 3 … with no gaps, also when appends
//     come from many goroutines at once, some through AppendAudit and some
//     through Tx.AppendAudit inside Write; every PrevHash is the Hash of
//     the record before ("" for the first), and every Hash is
//     ComputeHash(). Every record is chained exactly once, and the records
//     of one writer in the order it committed them.
//   - A Write whose fn fails leaves no audit record, in the log or the
//     chain, and no gap.
//   - Records appended in a Write through plinth.AuditAtCommitTx (where
//     the Tx has it) are filled in as stored by the time Write returns,
//     and are chained in the order appended, among those appended through
//     Tx.AppendAudit.
//   - A record of a transaction that began before others and commits after
//     them is chained once it commits, never skipped.
//   - ChainAudit is conditional: a batch that does not follow on from the
//     head, or names a record no longer in the log, changes nothing and
//     fails with plinth.ErrConflict.
//   - Appends return the records as stored: Time in UTC, truncated to
//     microseconds (a zero Time becomes the time of the append); ScanAudit
//     and AuditRecords return exactly that, with the chain fields.
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
		{"AppendedAtCommit", testAuditAtCommit},
		{"UnstorableTextIsReplaced", testAuditUnstorableText},
		{"AppendedHashesAsStored", testAuditAppendedHashesAsStored},
		{"Search", testAuditSearch},
		{"SearchPagination", testAuditPagination},
		{"Scan", testAuditScan},
		{"LateCommitIsChainedNotSkipped", testAuditLateCommit},
		{"ChainAuditIsConditional", testAuditChainConflict},
		{"AtomicBatchLimit", testAuditBatchLimit},
		{"TrimKeepsTheHead", testAuditTrim},
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

// appendInTx appends recs within tx into out (as long as recs), through
// AppendAuditAtCommit when atCommit and the Tx has it (out is then filled
// in by the time the Write returns), else through AppendAudit.
func appendInTx(ctx context.Context, tx plinth.Tx, recs, out []plinth.AuditRecord, atCommit bool) error {
	if catx, ok := tx.(plinth.AuditAtCommitTx); ok && atCommit {
		for i, r := range recs {
			if err := catx.AppendAuditAtCommit(ctx, r, &out[i]); err != nil {
				return err
			}
		}
		return nil
	}
	atx, ok := tx.(plinth.AuditTx)
	if !ok {
		return fmt.Errorf("the Tx %T does not implement plinth.AuditTx", tx)
	}
	for i, r := range recs {
		var err error
		if out[i], err = atx.AppendAudit(ctx, r); err != nil {
			return err
		}
	}
	return nil
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

// chainAll chains everything in the audit log that can be chained now and
// returns the whole chain.
func chainAll(t testing.TB, a plinth.AuditStore) []plinth.AuditRecord {
	t.Helper()
	if _, err := audit.ChainPending(context.Background(), a); err != nil {
		t.Fatalf("chaining: %v", err)
	}
	return scanAll(t, a)
}

// unchainedCount returns how many records wait in the audit log.
func unchainedCount(t testing.TB, a plinth.AuditStore) int64 {
	t.Helper()
	n, err := a.CountUnchainedAudit(context.Background())
	if err != nil {
		t.Fatalf("CountUnchainedAudit: %v", err)
	}
	return n
}

// asChained is a record as an append returned it, with the chain fields
// of its chained copy: what the chain must hold.
func asChained(returned, chained plinth.AuditRecord) plinth.AuditRecord {
	returned.Sequence, returned.PrevHash, returned.Hash, returned.LogID = chained.Sequence, chained.PrevHash, chained.Hash, ""
	return returned
}

// checkUnchained fails unless r is as an append must return it.
func checkUnchained(t testing.TB, what string, r plinth.AuditRecord) {
	t.Helper()
	if !r.Stored() || r.Chained() || r.LogID == "" || r.PrevHash != "" || r.Hash != "" {
		t.Fatalf("%s returned sequence %d, log id %q, prevHash %q, hash %q; want a log id and no chain fields",
			what, r.Sequence, r.LogID, r.PrevHash, r.Hash)
	}
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
	checkUnchained(t, "AppendAudit", got)
	want := in
	want.Time = in.Time.UTC().Truncate(time.Microsecond)
	want.LogID = got.LogID
	if !reflect.DeepEqual(got, want) {
		t.Errorf("AppendAudit returned\n%+v\nwant\n%+v", got, want)
	}
	if n := len(scanAll(t, a)); n != 0 {
		t.Errorf("ScanAudit returns %d records before the chainer ran; want none", n)
	}
	if page, _, err := a.AuditRecords(t.Context(), plinth.AuditQuery{}); err != nil || len(page) != 0 {
		t.Errorf("AuditRecords before the chainer ran: %d records, %v; want none", len(page), err)
	}
	if n := unchainedCount(t, a); n != 1 {
		t.Errorf("CountUnchainedAudit %d, want 1", n)
	}
	if seq, hash, err := a.AuditHead(t.Context()); err != nil || seq != 0 || hash != "" {
		t.Errorf("AuditHead of an empty chain: %d %q %v", seq, hash, err)
	}
	first := chainAll(t, a)
	if len(first) != 1 || first[0].Sequence != 1 || first[0].PrevHash != "" || first[0].Hash != first[0].ComputeHash() {
		t.Fatalf("first record chained: %+v", first)
	}
	if unchainedCount(t, a) != 0 {
		t.Errorf("records left in the log after chaining")
	}
	if seq, hash, err := a.AuditHead(t.Context()); err != nil || seq != 1 || hash != first[0].Hash {
		t.Errorf("AuditHead: %d %q %v; want 1 and the first record's hash", seq, hash, err)
	}
	got = asChained(got, first[0])
	// A service principal, a denial, no filters and no record ids.
	svc := plinth.AuditRecord{
		Time: time.Date(2026, 7, 14, 11, 0, 0, 999, time.UTC), CorrelationID: "c2", Environment: plinth.EnvStaging,
		Operation: "view", Principal: plinth.Principal{Subject: "svc", TokenID: "grant-1", Consumer: "housing-benefits-listener"},
		Decision: plinth.DecisionDeny, Reason: "no grant for GET /api/v1/residents/{id}", Status: 403, DurationMs: 0.25,
	}
	got2 := appendTx(t, s, svc)[0]
	checkUnchained(t, "Tx.AppendAudit", got2)
	if got2.LogID == got.LogID {
		t.Errorf("two records with log id %q", got2.LogID)
	}
	if want := svc.Time.Truncate(time.Microsecond); !got2.Time.Equal(want) {
		t.Errorf("time %v, want %v", got2.Time, want)
	}
	stored := chainAll(t, a)
	if len(stored) != 2 {
		t.Fatalf("ScanAudit: %d records, want 2", len(stored))
	}
	verifyChain(t, stored)
	got2 = asChained(got2, stored[1])
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
	if n := len(chainAll(t, a)); n != 3 {
		t.Errorf("%d records after an empty append, want 3", n)
	}
	// Chaining nothing changes nothing.
	if err := a.ChainAudit(t.Context(), nil); err != nil {
		t.Errorf("ChainAudit(nil): %v", err)
	}
}

func testAuditConcurrentChain(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	const writers, total = 8, 50
	var (
		mu       sync.Mutex
		returned = map[string]plinth.AuditRecord{} // by correlation id
		byWriter = make([][]string, writers)       // correlation ids in commit order
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
					out = make([]plinth.AuditRecord, len(recs))
					err = s.Write(context.Background(), func(tx plinth.Tx) error {
						return appendInTx(context.Background(), tx, recs, out, (w+i)%4 == 3)
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
					if !r.Stored() || r.Chained() {
						errs <- fmt.Errorf("append returned record %q with sequence %d, log id %q; want it unchained", r.CorrelationID, r.Sequence, r.LogID)
					}
					returned[r.CorrelationID] = r
					byWriter[w] = append(byWriter[w], r.CorrelationID)
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
	if len(returned) != total {
		t.Fatalf("appends returned %d distinct records, want %d", len(returned), total)
	}
	stored := chainAll(t, a)
	if len(stored) != total {
		t.Fatalf("%d records chained, want %d", len(stored), total)
	}
	verifyChain(t, stored)
	seqOf := map[string]int64{}
	for _, r := range stored {
		if _, dup := seqOf[r.CorrelationID]; dup {
			t.Fatalf("record %s chained twice", r.CorrelationID)
		}
		seqOf[r.CorrelationID] = r.Sequence
		sameAudit(t, fmt.Sprintf("record %d as stored and as returned", r.Sequence), r, asChained(returned[r.CorrelationID], r))
	}
	// Each writer's records are chained in the order it committed them.
	for w, ids := range byWriter {
		for i := 1; i < len(ids); i++ {
			if seqOf[ids[i]] <= seqOf[ids[i-1]] {
				t.Errorf("writer %d committed %s before %s, but they are records %d and %d", w, ids[i-1], ids[i], seqOf[ids[i-1]], seqOf[ids[i]])
			}
		}
	}
}

func testAuditFailedWrite(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	appendAudit(t, a, fullAudit(0))
	first := chainAll(t, a)[0]
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
	if n := unchainedCount(t, a); n != 0 {
		t.Fatalf("%d records in the audit log after the failed write, want none", n)
	}
	if got := chainAll(t, a); len(got) != 1 {
		t.Fatalf("%d audit records after the failed write, want 1", len(got))
	}
	appendTx(t, s, fullAudit(2))
	appendAudit(t, a, fullAudit(3))
	all := chainAll(t, a)
	if len(all) != 3 || all[1].CorrelationID != "corr-2" || all[1].PrevHash != first.Hash || all[2].CorrelationID != "corr-3" {
		t.Errorf("the records after a failed write: %+v", all)
	}
	verifyChain(t, all)
}

func testAuditSeveralInOneWrite(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	appendTx(t, s, fullAudit(0), fullAudit(1), fullAudit(2))
	appendAudit(t, a, fullAudit(3), fullAudit(4))
	all := chainAll(t, a)
	verifyChain(t, all)
	for i, r := range all {
		if want := fmt.Sprintf("corr-%d", i); r.CorrelationID != want {
			t.Errorf("record %d is %s, want %s", r.Sequence, r.CorrelationID, want)
		}
	}
}

// testAuditAtCommit: records appended in a Write through
// AppendAuditAtCommit (where the Tx has it) are filled in as stored by the
// time Write returns, and keep their place among records appended through
// AppendAudit; a Write whose fn fails after such an append leaves none.
func testAuditAtCommit(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	ctx := t.Context()
	cats := categoriesEntity(t)
	boom := errors.New("boom")
	err := s.Write(ctx, func(tx plinth.Tx) error {
		if _, err := tx.Insert(ctx, cats, validate(t, cats, map[string]any{"code": "c1", "title": "One"}, true)); err != nil {
			return err
		}
		if err := appendInTx(ctx, tx, []plinth.AuditRecord{fullAudit(9)}, make([]plinth.AuditRecord, 1), true); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("Write returned %v, want fn's error", err)
	}
	if n := unchainedCount(t, a); n != 0 || count(t, s, cats) != 0 {
		t.Fatalf("%d records in the audit log after the failed write, want none", n)
	}
	in := []plinth.AuditRecord{fullAudit(0), fullAudit(1), fullAudit(2)}
	got := make([]plinth.AuditRecord, len(in))
	err = s.Write(ctx, func(tx plinth.Tx) error {
		for i := range in {
			if err := appendInTx(ctx, tx, in[i:i+1], got[i:i+1], i != 1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	for i, r := range got {
		checkUnchained(t, fmt.Sprintf("append %d", i), r)
		want := in[i]
		want.Time, want.LogID = want.Time.UTC().Truncate(time.Microsecond), r.LogID
		sameAudit(t, fmt.Sprintf("append %d as returned", i), r, want)
	}
	all := chainAll(t, a)
	if len(all) != 3 {
		t.Fatalf("%d records chained, want 3", len(all))
	}
	verifyChain(t, all)
	for i, r := range all {
		sameAudit(t, fmt.Sprintf("record %d", r.Sequence), r, asChained(got[i], r))
	}
}

func testAuditUnstorableText(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	r := fullAudit(0)
	r.UserAgent = "bad\x00agent \xff\xfe"
	r.Filters = map[string]string{"q": "a\x00b", "bad\xffkey": "v"}
	r.Principal.Subject = "sub\x00"
	r.RecordIDs = []string{"ok", "nul\x00id"}
	got := appendAudit(t, a, r)[0]
	stored := chainAll(t, a)
	if len(stored) != 1 {
		t.Fatalf("%d records", len(stored))
	}
	verifyChain(t, stored)
	sameAudit(t, "record with unstorable text", stored[0], asChained(got, stored[0]))
	if stored[0].UserAgent != "bad\uFFFDagent \uFFFD" || stored[0].Filters["q"] != "a\uFFFDb" || stored[0].Principal.Subject != "sub\uFFFD" ||
		stored[0].RecordIDs[1] != "nul\uFFFDid" || stored[0].Filters["bad\uFFFDkey"] != "v" {
		t.Errorf("text not replaced as documented: %+v", stored[0])
	}
}

// OddAudits are records whose content the store must normalise or that
// round-trip through a store's types (jsonb, text[], timestamptz; JSON
// text, REAL) in ways that could differ from what was sent.
func OddAudits() []plinth.AuditRecord {
	tz := time.FixedZone("odd", -(3*3600 + 1800))
	base := plinth.AuditRecord{
		Time: time.Date(2026, 11, 30, 23, 59, 59, 999999999, tz), CorrelationID: "c-1", Environment: "production",
		Domain: "residents", Entity: "residents", Operation: "list", Method: "GET", Route: "/api/v1/residents",
		Filters:   map[string]string{"last_name": "O’Brien <&> \u2028 ☂", "b": `"quoted" \ back`, "a": "😀"},
		Principal: plinth.Principal{Subject: "sub", Email: "ana@example.org", Name: "Ana López", Groups: []string{"g1", "g2"}},
		Decision:  plinth.DecisionAllow, Status: 200, RecordIDs: []string{"2", "1", "2"}, Count: 2,
		DurationMs: 12.345678901234567, ClientAddress: "::1", UserAgent: "日本\t\n",
	}
	bad := base
	bad.CorrelationID = "c-2\x00nul"
	bad.Filters = map[string]string{"k\xff": "v\x00", "x": "\xc3\x28"}
	bad.Principal = plinth.Principal{Subject: "s\x00", Email: "\xff", TokenID: "t", Consumer: "svc\x00"}
	bad.RecordIDs = []string{"a\x00", "\xfe"}
	bad.UserAgent = "\xff\xfe"
	empty := plinth.AuditRecord{ // zero time, empty non-nil collections
		Filters: map[string]string{}, RecordIDs: []string{}, Principal: plinth.Principal{Groups: []string{}},
		Decision: plinth.DecisionDeny, Status: 401, DurationMs: math.Copysign(0, -1),
	}
	big := base
	big.CorrelationID = "c-4"
	big.Time = time.Date(1901, 1, 1, 0, 0, 0, 1500, time.UTC)
	big.Status, big.Count, big.DurationMs = math.MaxInt32, math.MinInt32, 1.7976931348623157e308
	big.Filters, big.RecordIDs = nil, nil
	return []plinth.AuditRecord{base, bad, empty, big}
}

// testAuditAppendedHashesAsStored: what AppendAudit and Tx.AppendAudit
// return hashes exactly as what UnchainedAudit reads back. A chainer hashes
// the records its process appended from memory (audit.Chainer.Hold) when
// the store lists the log's ids alone (UnchainedAuditIDs), while
// ChainAudit stores the log's copy: they must agree.
func testAuditAppendedHashesAsStored(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	ctx := t.Context()
	appended, err := a.AppendAudit(ctx, OddAudits())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range OddAudits() {
		err := s.Write(ctx, func(x plinth.Tx) error {
			got, err := x.(plinth.AuditTx).AppendAudit(ctx, r)
			appended = append(appended, got)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	read, err := a.UnchainedAudit(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(read) != len(appended) {
		t.Fatalf("read %d records back, appended %d", len(read), len(appended))
	}
	for i, r := range read {
		w := appended[i]
		if w.LogID != r.LogID {
			t.Fatalf("record %d: log id %s appended, %s read", i, w.LogID, r.LogID)
		}
		w.Sequence, w.PrevHash = int64(i+1), "prev"
		r.Sequence, r.PrevHash = int64(i+1), "prev"
		if w.ComputeHash() != r.ComputeHash() {
			jw, _ := json.Marshal(w)
			jr, _ := json.Marshal(r)
			t.Errorf("record %d hashes differently as appended and as stored:\n%s\n%s", i, jw, jr)
		}
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
	for i := 0; i < len(recs); i += 8 {
		if i%16 == 0 {
			appendAudit(t, a, recs[i:i+8]...)
		} else {
			appendTx(t, s, recs[i:i+8]...)
		}
	}
	out := chainAll(t, a)
	for i, r := range out {
		if r.CorrelationID != recs[i].CorrelationID {
			t.Fatalf("record %d is %s, want %s", r.Sequence, r.CorrelationID, recs[i].CorrelationID)
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

// testAuditLateCommit: a transaction that appended its record first and
// commits last is chained once it commits, after the records committed
// before it; nothing is skipped, nothing chained twice.
func testAuditLateCommit(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	ctx := t.Context()
	appendAudit(t, a, fullAudit(0))
	appended := make(chan error, 1)
	commit := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Write(ctx, func(tx plinth.Tx) error {
			_, err := tx.(plinth.AuditTx).AppendAudit(ctx, fullAudit(1))
			appended <- err
			<-commit
			return err
		})
	}()
	if err := <-appended; err != nil {
		close(commit)
		t.Fatalf("AppendAudit in the long transaction: %v", err)
	}
	// While it is open, the audit log offers the chainer nothing of it.
	// (Chaining now would wait for the write lock on a store with one
	// writer; RunAuditConcurrentWriters chains during it.)
	pending, err := a.UnchainedAudit(ctx, 10)
	if err != nil {
		close(commit)
		t.Fatal(err)
	}
	for _, r := range pending {
		if r.CorrelationID == "corr-1" {
			close(commit)
			t.Fatalf("UnchainedAudit returned the record of a transaction still open")
		}
	}
	close(commit)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	appendTx(t, s, fullAudit(2))
	chained := chainAll(t, a)
	verifyChain(t, chained)
	var ids []string
	for _, r := range chained {
		ids = append(ids, r.CorrelationID)
	}
	if !reflect.DeepEqual(ids, []string{"corr-0", "corr-1", "corr-2"}) {
		t.Errorf("chained %v, want corr-0, corr-1, corr-2 (each once, the late commit not skipped)", ids)
	}
	if n := unchainedCount(t, a); n != 0 {
		t.Errorf("%d records left unchained", n)
	}
}

// testAuditChainConflict: ChainAudit changes nothing unless the batch
// follows on from the head and every record is still in the log.
func testAuditChainConflict(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	ctx := t.Context()
	appendAudit(t, a, fullAudit(0), fullAudit(1))
	chainAll(t, a)
	head, headHash, err := a.AuditHead(ctx)
	if err != nil || head != 2 {
		t.Fatalf("AuditHead: %d, %v", head, err)
	}
	appendAudit(t, a, fullAudit(2), fullAudit(3))
	pending, err := a.UnchainedAudit(ctx, 10)
	if err != nil || len(pending) != 2 {
		t.Fatalf("UnchainedAudit: %d records, %v", len(pending), err)
	}
	link := func(seq int64, hash string) []plinth.AuditRecord {
		recs := append([]plinth.AuditRecord(nil), pending...)
		for i := range recs {
			seq++
			recs[i].Sequence, recs[i].PrevHash = seq, hash
			recs[i].Hash = recs[i].ComputeHash()
			hash = recs[i].Hash
		}
		return recs
	}
	for name, recs := range map[string][]plinth.AuditRecord{
		"behind the head":   link(1, scanAll(t, a)[0].Hash),
		"beyond the head":   link(3, headHash),
		"another prev hash": link(2, "0000"),
	} {
		if err := a.ChainAudit(ctx, recs); !errors.Is(err, plinth.ErrConflict) {
			t.Errorf("ChainAudit %s: %v, want ErrConflict", name, err)
		}
	}
	gone := link(2, headHash)
	gone[1].LogID = "999999999"
	gone = gone[:2]
	if err := a.ChainAudit(ctx, gone); !errors.Is(err, plinth.ErrConflict) {
		t.Errorf("ChainAudit of a record not in the log: %v, want ErrConflict", err)
	}
	if n := len(scanAll(t, a)); n != 2 || unchainedCount(t, a) != 2 {
		t.Fatalf("a failed ChainAudit changed the store: %d chained, %d unchained", n, unchainedCount(t, a))
	}
	ok := link(2, headHash)
	if err := a.ChainAudit(ctx, ok); err != nil {
		t.Fatalf("ChainAudit: %v", err)
	}
	// The same batch again: the head has moved on and the records left the log.
	if err := a.ChainAudit(ctx, ok); !errors.Is(err, plinth.ErrConflict) {
		t.Errorf("ChainAudit twice: %v, want ErrConflict", err)
	}
	all := scanAll(t, a)
	verifyChain(t, all)
	if len(all) != 4 || unchainedCount(t, a) != 0 {
		t.Errorf("%d chained, %d unchained; want 4 and 0", len(all), unchainedCount(t, a))
	}
}

// testAuditBatchLimit: a store declares how many records it commits
// atomically, and takes that many in one append.
func testAuditBatchLimit(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	m := a.MaxAtomicBatch()
	if m < 1 {
		t.Fatalf("MaxAtomicBatch %d", m)
	}
	n := min(m, 300)
	recs := make([]plinth.AuditRecord, n)
	for i := range recs {
		recs[i] = fullAudit(i)
	}
	appendAudit(t, a, recs...)
	if got := len(chainAll(t, a)); got != n {
		t.Errorf("%d records chained, want %d", got, n)
	}
	if _, err := a.AppendAudit(t.Context(), make([]plinth.AuditRecord, m+1)); err == nil {
		t.Errorf("AppendAudit of MaxAtomicBatch+1 records: no error")
	}
}

// RunAuditConcurrentWriters holds a store whose writers do not wait for
// one another (PostgreSQL; not SQLite, which has one writer at a time) to
// appending audit records without contention: two write transactions that
// each append an audit record are open at once, and both commit without
// waiting for the other.
func RunAuditConcurrentWriters(t *testing.T, open func(t *testing.T) plinth.Store) {
	s := open(t)
	a := s.(plinth.AuditStore)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// Each transaction appends, then waits until the other has appended
	// too: with a lock every append shared, the second append would wait
	// for the first transaction to end, which never comes (until the
	// timeout fails the test).
	var both sync.WaitGroup
	both.Add(2)
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			errs <- s.Write(ctx, func(tx plinth.Tx) error {
				if _, err := tx.(plinth.AuditTx).AppendAudit(ctx, fullAudit(i)); err != nil {
					both.Done()
					return err
				}
				both.Done()
				waited := make(chan struct{})
				go func() { both.Wait(); close(waited) }()
				select {
				case <-waited:
					return nil
				case <-time.After(5 * time.Second):
					return errors.New("the other transaction did not append its audit record while this one was open: appends contend")
				}
			})
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	all := chainAll(t, a)
	verifyChain(t, all)
	if len(all) != 2 {
		t.Fatalf("%d records chained, want 2", len(all))
	}

	// A transaction that appended first and commits last: the record
	// appended and committed after it waits (the chain stays in log
	// order) and both are chained, in log order, once it commits.
	late := fullAudit(10)
	late.CorrelationID = "late"
	appended := make(chan error, 1)
	commit := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Write(ctx, func(tx plinth.Tx) error {
			_, err := tx.(plinth.AuditTx).AppendAudit(ctx, late)
			appended <- err
			<-commit
			return err
		})
	}()
	if err := <-appended; err != nil {
		close(commit)
		t.Fatal(err)
	}
	early := fullAudit(11)
	early.CorrelationID = "early"
	appendTx(t, s, early) // commits while the late transaction is open
	all = chainAll(t, a)
	pending, err := a.UnchainedAudit(ctx, 10)
	close(commit)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || len(pending) != 0 {
		t.Errorf("while a transaction with an earlier record is open: %d chained, %d offered to the chainer; want 2 and 0", len(all), len(pending))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	all = chainAll(t, a)
	verifyChain(t, all)
	if len(all) != 4 || all[2].CorrelationID != "late" || all[3].CorrelationID != "early" {
		t.Errorf("chain after the late commit: %d records, ending %v", len(all), all[len(all)-1].CorrelationID)
	}
}

// testAuditTrim: a store that trims its audit trail (plinth.AuditTrimmer)
// drops the oldest chained records only, never the head, and the chain
// goes on from the head.
func testAuditTrim(t *testing.T, s plinth.Store, a plinth.AuditStore) {
	trimmer, ok := s.(plinth.AuditTrimmer)
	if !ok {
		t.Skipf("%T does not trim its audit trail", s)
	}
	ctx := context.Background()
	for i := range 5 {
		appendAudit(t, a, fullAudit(i))
	}
	chainAll(t, a)
	n, err := trimmer.TrimAudit(ctx, 3)
	if err != nil || n != 3 {
		t.Fatalf("TrimAudit(3): %d, %v; want 3 deleted", n, err)
	}
	if n, err := trimmer.TrimAudit(ctx, 99); err != nil || n != 1 {
		t.Fatalf("TrimAudit(99) deleted %d (%v); want 1: the head stays", n, err)
	}
	appendAudit(t, a, fullAudit(6))
	recs := chainAll(t, a)
	if len(recs) != 2 || recs[0].Sequence != 5 || recs[1].Sequence != 6 || recs[1].PrevHash != recs[0].Hash {
		t.Fatalf("after trimming the chain holds %d records: %+v", len(recs), recs)
	}
	q := plinth.AuditQuery{EntityID: fullAudit(0).RecordIDs[0]}
	if got, _, err := a.AuditRecords(ctx, q); err != nil || len(got) != 2 || got[0].Sequence != 5 {
		t.Fatalf("search by record id after trimming: %d records, %v; want records 5 and 6", len(got), err)
	}
}
