package audit

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/sqlite"
)

// openStore opens a prepared SQLite store in a temporary folder and
// returns it with the path of its file.
func openStore(t *testing.T) (*sqlite.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plinth.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Prepare(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return s, path
}

// rawDB opens the store's file directly, as someone tampering with it would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t *testing.T, db *sql.DB, queries ...string) {
	t.Helper()
	for _, q := range queries {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// sample is the audit record of the i-th request of a test.
func sample(i int) plinth.AuditRecord {
	return plinth.AuditRecord{
		CorrelationID: fmt.Sprintf("corr-%d", i),
		Domain:        "residents", Entity: "residents", Operation: "view", Method: "GET",
		Route:     "/api/v1/residents/{id}",
		Filters:   map[string]string{"last_name": "Smith", "date_of_birth": "1970-01-01"},
		Principal: plinth.Principal{Subject: fmt.Sprintf("user-%d", i%3), Email: fmt.Sprintf("user%d@example.gov.uk", i%3), Groups: []string{"readers"}},
		Decision:  plinth.DecisionAllow, Status: 200, RecordIDs: []string{fmt.Sprint(12340 + i)}, Count: 1,
		DurationMs: 1.25, ClientAddress: "10.0.0.1", UserAgent: "test",
	}
}

// fill records n sample records through an Auditor, one after another,
// chains them and returns them as chained.
func fill(t *testing.T, st plinth.AuditStore, n int) []plinth.AuditRecord {
	t.Helper()
	a := New(st, Config{Environment: plinth.EnvProduction, FailClosed: true})
	for i := 1; i <= n; i++ {
		r, err := a.Record(context.Background(), sample(i))
		if err != nil {
			t.Fatal(err)
		}
		if !r.Stored() || r.Chained() {
			t.Fatalf("Record returned %+v; want it stored, unchained", r)
		}
	}
	a.Close()
	all := chainAll(t, st)
	return all[len(all)-n:]
}

// chainAll chains whatever waits in the audit log and returns the chain.
func chainAll(t testing.TB, st plinth.AuditStore) []plinth.AuditRecord {
	t.Helper()
	if _, err := ChainPending(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if n, err := st.CountUnchainedAudit(context.Background()); err != nil || n != 0 {
		t.Fatalf("%d records left unchained, %v", n, err)
	}
	var out []plinth.AuditRecord
	if err := st.ScanAudit(context.Background(), 0, func(r plinth.AuditRecord) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func verify(t *testing.T, st plinth.AuditStore, anchors ...Anchor) Report {
	t.Helper()
	rep, err := Verify(context.Background(), st, nil, anchors...)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// gatedStore holds AppendAudit calls until released, and counts them.
type gatedStore struct {
	plinth.AuditStore
	mu      sync.Mutex
	batches []int
	entered chan struct{} // receives once per call
	release chan struct{} // closed to let calls through
}

func (g *gatedStore) AppendAudit(ctx context.Context, recs []plinth.AuditRecord) ([]plinth.AuditRecord, error) {
	g.mu.Lock()
	g.batches = append(g.batches, len(recs))
	g.mu.Unlock()
	g.entered <- struct{}{}
	<-g.release
	return g.AuditStore.AppendAudit(ctx, recs)
}

func TestGroupCommit(t *testing.T) {
	st, _ := openStore(t)
	gate := &gatedStore{AuditStore: st, entered: make(chan struct{}, 64), release: make(chan struct{})}
	var mirror bytes.Buffer
	a := New(gate, Config{Environment: plinth.EnvProduction, FailClosed: true, Mirror: &mirror})

	// The first record commits alone and holds the writer; the other 31
	// gather meanwhile and commit together in the next batch.
	const n = 32
	results := make([]plinth.AuditRecord, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = a.Record(context.Background(), sample(i))
		}()
	}
	start(0)
	<-gate.entered
	for i := 1; i < n; i++ {
		start(i)
	}
	plinthtest.Eventually(t, 0, func() bool { return len(a.queue) >= n-1 },
		"fewer than %d records queued", n-1)
	close(gate.release)
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gate.batches, []int{1, n - 1}) {
		t.Errorf("batches %v, want [1 %d]", gate.batches, n-1)
	}

	// Each caller got its own record as stored, unchained.
	byLogID := map[string]plinth.AuditRecord{}
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("record %d: %v", i, errs[i])
		}
		if r.CorrelationID != fmt.Sprintf("corr-%d", i) || r.Environment != plinth.EnvProduction || r.Time.IsZero() {
			t.Errorf("caller %d got %+v", i, r)
		}
		if r.LogID == "" || r.Sequence != 0 || r.Hash != "" {
			t.Errorf("caller %d: log id %q, sequence %d, hash %s; want a log id, unchained", i, r.LogID, r.Sequence, r.Hash)
		}
		byLogID[r.LogID] = r
	}
	if len(byLogID) != n {
		t.Fatalf("%d distinct log ids, want %d", len(byLogID), n)
	}
	if rep := verify(t, st); rep.Broken != nil || rep.Records != 0 || rep.Unchained != n {
		t.Fatalf("verify before chaining: %+v %v", rep, rep.Broken)
	}
	// Once chained, the chain holds what the callers got, in log order.
	stored := chainAll(t, st)
	if len(stored) != n {
		t.Fatalf("%d records chained, want %d", len(stored), n)
	}
	inLogOrder := slices.Clone(results)
	slices.SortFunc(inLogOrder, func(a, b plinth.AuditRecord) int {
		x, _ := strconv.Atoi(a.LogID)
		y, _ := strconv.Atoi(b.LogID)
		return x - y
	})
	for i, r := range stored {
		if r.CorrelationID != inLogOrder[i].CorrelationID {
			t.Errorf("record %d is %s, want %s (log order)", r.Sequence, r.CorrelationID, inLogOrder[i].CorrelationID)
		}
		got := inLogOrder[i]
		got.Sequence, got.PrevHash, got.Hash, got.LogID = r.Sequence, r.PrevHash, r.Hash, ""
		if got.ComputeHash() != r.Hash {
			t.Errorf("record %d: what the caller got does not hash to what the chain holds", r.Sequence)
		}
	}
	rep := verify(t, st)
	if rep.Broken != nil || rep.Records != n || rep.HeadSequence != n || rep.Unchained != 0 {
		t.Fatalf("verify: %+v %v", rep, rep.Broken)
	}

	// The mirror holds every record, in commit order, as appended.
	var ids []string
	sc := bufio.NewScanner(&mirror)
	for sc.Scan() {
		var r plinth.AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("mirror line %q: %v", sc.Text(), err)
		}
		if want, ok := byLogID[r.LogID]; !ok || want.CorrelationID != r.CorrelationID || r.Filters["last_name"] != "Smith" {
			t.Errorf("mirrored record %s differs", r.LogID)
		}
		ids = append(ids, r.LogID)
	}
	if len(ids) != n || ids[0] != results[0].LogID {
		t.Errorf("mirrored log ids %v", ids)
	}
}

func TestConcurrentRecordsWithoutGate(t *testing.T) {
	st, _ := openStore(t)
	a := New(st, Config{Environment: plinth.EnvDevelopment, FailClosed: true, MaxBatch: 8})
	var wg sync.WaitGroup
	const n = 200
	ids := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := a.Record(context.Background(), sample(i))
			if err != nil {
				t.Error(err)
			}
			ids[i] = r.LogID
		}()
	}
	wg.Wait()
	a.Close()
	slices.Sort(ids)
	if len(slices.Compact(ids)) != n || ids[0] == "" {
		t.Fatalf("log ids %v", ids)
	}
	chainAll(t, st)
	if rep := verify(t, st); rep.Broken != nil || rep.Records != n {
		t.Fatalf("verify: %+v %v", rep, rep.Broken)
	}
}

func TestCancelledCallerKeepsItsRecord(t *testing.T) {
	st, _ := openStore(t)
	gate := &gatedStore{AuditStore: st, entered: make(chan struct{}, 4), release: make(chan struct{})}
	var mirror bytes.Buffer
	a := New(gate, Config{Environment: plinth.EnvProduction, FailClosed: true, Mirror: &mirror})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := a.Record(ctx, sample(1))
		done <- err
	}()
	<-gate.entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Record after cancel: %v", err)
	}
	close(gate.release)
	a.Close()
	chainAll(t, st)
	var n int
	if err := st.ScanAudit(context.Background(), 0, func(r plinth.AuditRecord) error {
		n++
		if r.CorrelationID != "corr-1" {
			t.Errorf("stored %+v", r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 || strings.Count(mirror.String(), "\n") != 1 {
		t.Fatalf("%d records stored and %d mirrored, want 1 each", n, strings.Count(mirror.String(), "\n"))
	}

	// A context that has already ended still gets its record written once.
	a = New(st, Config{Environment: plinth.EnvProduction, FailClosed: true})
	ended, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if r, err := a.Record(ended, sample(2)); err == nil && !r.Stored() {
		t.Fatalf("got %+v", r)
	}
	a.Close()
	chainAll(t, st)
	if rep := verify(t, st); rep.Records != 2 || rep.Broken != nil {
		t.Fatalf("verify: %+v", rep)
	}
}

func TestFailClosed(t *testing.T) {
	for _, c := range []struct {
		name   string
		break_ func(t *testing.T, st *sqlite.Store, path string)
	}{
		{"store closed", func(t *testing.T, st *sqlite.Store, _ string) { st.Close() }},
		{"table read-only", func(t *testing.T, _ *sqlite.Store, path string) {
			exec(t, rawDB(t, path), `CREATE TRIGGER audit_read_only BEFORE INSERT ON plinth_audit_log
				BEGIN SELECT RAISE(ABORT, 'the audit trail is read-only'); END`)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, path := openStore(t)
			fill(t, st, 2)
			c.break_(t, st, path)
			var logs bytes.Buffer
			a := New(st, Config{Environment: plinth.EnvProduction, FailClosed: true,
				Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			defer a.Close()
			_, err := a.Record(context.Background(), sample(3))
			if !errors.Is(err, plinth.ErrUnavailable) {
				t.Fatalf("Record: %v, want an error wrapping ErrUnavailable", err)
			}
			if strings.Contains(err.Error(), "Smith") || strings.Contains(logs.String(), "Smith") ||
				strings.Contains(logs.String(), "1970-01-01") {
				t.Errorf("a filter value leaked: %v\n%s", err, logs.String())
			}
			if !strings.Contains(logs.String(), "corr-3") {
				t.Errorf("the failure is not logged with its correlation id:\n%s", logs.String())
			}
		})
	}
}

func TestFailOpenLogsAWarning(t *testing.T) {
	st, path := openStore(t)
	exec(t, rawDB(t, path), `CREATE TRIGGER audit_read_only BEFORE INSERT ON plinth_audit_log
		BEGIN SELECT RAISE(ABORT, 'the audit trail is read-only'); END`)
	var logs bytes.Buffer
	a := New(st, Config{Environment: plinth.EnvDevelopment, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	r, err := a.Record(context.Background(), sample(7))
	if err != nil {
		t.Fatalf("Record: %v, want no error when not failing closed", err)
	}
	if r.Stored() || r.CorrelationID != "corr-7" {
		t.Errorf("got %+v", r)
	}
	a.Close()
	var entry map[string]any
	if err := json.Unmarshal(logs.Bytes(), &entry); err != nil {
		t.Fatalf("log %q: %v", logs.String(), err)
	}
	if entry["level"] != "WARN" || entry["correlationId"] != "corr-7" || !strings.Contains(fmt.Sprint(entry["error"]), "read-only") {
		t.Errorf("log entry %v", entry)
	}
	for _, secret := range []string{"Smith", "1970-01-01", "12347"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %q: %s", secret, logs.String())
		}
	}

	// After Close, Record fails the same way.
	if _, err := a.Record(context.Background(), sample(8)); err != nil {
		t.Errorf("Record after Close: %v", err)
	}
	closed := New(st, Config{FailClosed: true, Logger: slog.New(slog.DiscardHandler)})
	closed.Close()
	if _, err := closed.Record(context.Background(), sample(9)); !errors.Is(err, plinth.ErrUnavailable) || !errors.Is(err, ErrClosed) {
		t.Errorf("Record after Close, failing closed: %v", err)
	}
}

func TestCommittedMirrorsTransactionRecords(t *testing.T) {
	st, _ := openStore(t)
	var mirror bytes.Buffer
	a := New(st, Config{Environment: plinth.EnvProduction, Mirror: &mirror})
	defer a.Close()
	first, err := a.Record(context.Background(), sample(1))
	if err != nil {
		t.Fatal(err)
	}
	var inTx plinth.AuditRecord
	err = st.Write(context.Background(), func(tx plinth.Tx) error {
		rec := sample(2)
		rec.Operation, rec.Method, rec.Status = "update", "PATCH", 200
		inTx, err = tx.(plinth.AuditTx).AppendAudit(context.Background(), rec)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	a.Committed(inTx)
	lines := strings.Split(strings.TrimSpace(mirror.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("mirror:\n%s", mirror.String())
	}
	for i, want := range []plinth.AuditRecord{first, inTx} {
		var got plinth.AuditRecord
		if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
			t.Fatal(err)
		}
		if got.LogID == "" || got.LogID != want.LogID || got.CorrelationID != want.CorrelationID || got.Filters["last_name"] != "Smith" {
			t.Errorf("line %d: %+v, want record %s", i, got, want.LogID)
		}
	}
	chainAll(t, st)
	if rep := verify(t, st); rep.Broken != nil || rep.Records != 2 {
		t.Fatalf("verify: %+v", rep)
	}
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestMirrorFailureDoesNotFailTheRequest(t *testing.T) {
	st, _ := openStore(t)
	var logs bytes.Buffer
	a := New(st, Config{FailClosed: true, Mirror: failingWriter{}, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if _, err := a.Record(context.Background(), sample(1)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if !strings.Contains(logs.String(), "disk full") || strings.Contains(logs.String(), "Smith") {
		t.Errorf("logs:\n%s", logs.String())
	}
}

func TestVerifyCleanChain(t *testing.T) {
	st, _ := openStore(t)
	if rep := verify(t, st); rep.Records != 0 || rep.Broken != nil || rep.HeadSequence != 0 {
		t.Fatalf("empty chain: %+v", rep)
	}
	anchor := Anchor{Sequence: 3, Hash: strings.Repeat("a", 64)}
	if rep := verify(t, st, anchor); rep.Broken == nil || rep.Broken.Sequence != 3 || !strings.Contains(rep.Broken.Problem, "empty") {
		t.Fatalf("empty chain with an anchor: %+v", rep.Broken)
	}
	recs := fill(t, st, 10)
	var calls []int64
	rep, err := Verify(context.Background(), st, func(done int64) { calls = append(calls, done) })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Broken != nil || rep.Records != 10 || rep.HeadSequence != 10 || rep.HeadHash != recs[9].Hash {
		t.Fatalf("report %+v %v", rep, rep.Broken)
	}
	if rep.Head() != fmt.Sprintf("10:%s", recs[9].Hash) {
		t.Errorf("head %s", rep.Head())
	}
	if len(calls) == 0 || calls[len(calls)-1] != 10 {
		t.Errorf("progress calls %v", calls)
	}
}

func TestVerifyReportsReadErrors(t *testing.T) {
	st, _ := openStore(t)
	fill(t, st, 3)
	st.Close()
	if _, err := Verify(context.Background(), st, nil); err == nil || !strings.Contains(err.Error(), "reading the chain") {
		t.Fatalf("Verify on a closed store: %v", err)
	}
	if _, _, err := Head(context.Background(), st); err == nil {
		t.Fatal("Head on a closed store: no error")
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	// forge returns the INSERT of a copy of record 4 with the given
	// sequence, correlation id, prev_hash and hash.
	forge := func(seq int, prev, hash string) string {
		return fmt.Sprintf(`INSERT INTO plinth_audit (sequence, time, correlation_id, environment, domain, entity, operation,
			method, route, filters, principal, decision, reason, status, record_ids, count, duration_ms, client_address,
			user_agent, prev_hash, hash)
			SELECT %d, time, 'forged', environment, domain, entity, operation, method, route, filters, principal, decision,
			reason, status, record_ids, count, duration_ms, client_address, user_agent, %s, %s
			FROM plinth_audit WHERE sequence = 4`, seq, prev, hash)
	}
	// renumber moves the records from seq on up by one, making room.
	renumber := []string{
		`UPDATE plinth_audit SET sequence = -(sequence + 1) WHERE sequence >= 5`,
		`UPDATE plinth_audit SET sequence = -sequence WHERE sequence < 0`,
	}
	for _, c := range []struct {
		name    string
		tamper  func(t *testing.T, db *sql.DB, recs []plinth.AuditRecord)
		seq     int64
		problem string
	}{
		{"edit a field of record 5", func(t *testing.T, db *sql.DB, _ []plinth.AuditRecord) {
			exec(t, db, `UPDATE plinth_audit SET principal = json_set(principal, '$.email', 'someone.else@example.gov.uk') WHERE sequence = 5`)
		}, 5, "record 5 was changed after it was written: its hash does not match its content"},
		{"edit record 5 and recompute its hash", func(t *testing.T, db *sql.DB, recs []plinth.AuditRecord) {
			r := recs[4]
			r.Status = 404
			exec(t, db, fmt.Sprintf(`UPDATE plinth_audit SET status = 404, hash = '%s' WHERE sequence = 5`, r.ComputeHash()))
		}, 6, "the link from record 5 to record 6 is broken"},
		{"delete record 5", func(t *testing.T, db *sql.DB, _ []plinth.AuditRecord) {
			exec(t, db, `DELETE FROM plinth_audit WHERE sequence = 5`)
		}, 5, "record 5 is missing: record 6 follows record 4"},
		{"delete records 5 to 7", func(t *testing.T, db *sql.DB, _ []plinth.AuditRecord) {
			exec(t, db, `DELETE FROM plinth_audit WHERE sequence BETWEEN 5 AND 7`)
		}, 5, "records 5–7 are missing"},
		{"delete record 5 and renumber the rest", func(t *testing.T, db *sql.DB, _ []plinth.AuditRecord) {
			exec(t, db, `DELETE FROM plinth_audit WHERE sequence = 5`,
				`UPDATE plinth_audit SET sequence = -(sequence - 1) WHERE sequence > 5`,
				`UPDATE plinth_audit SET sequence = -sequence WHERE sequence < 0`)
		}, 5, "record 5 was changed after it was written: it was written as record 6 and renumbered"},
		{"delete record 1", func(t *testing.T, db *sql.DB, _ []plinth.AuditRecord) {
			exec(t, db, `DELETE FROM plinth_audit WHERE sequence = 1`)
		}, 1, "record 1 is missing: the chain starts at record 2"},
		{"insert a forged record between 4 and 5", func(t *testing.T, db *sql.DB, recs []plinth.AuditRecord) {
			exec(t, db, renumber...)
			exec(t, db, forge(5, "prev_hash", "hash"))
		}, 5, "record 5 was changed after it was written"},
		{"insert a forged record with a valid hash between 4 and 5", func(t *testing.T, db *sql.DB, recs []plinth.AuditRecord) {
			forged := recs[3]
			forged.Sequence, forged.CorrelationID, forged.PrevHash = 5, "forged", recs[3].Hash
			exec(t, db, renumber...)
			exec(t, db, forge(5, "'"+forged.PrevHash+"'", "'"+forged.ComputeHash()+"'"))
		}, 6, "record 6 was changed after it was written: it was written as record 5 and renumbered"},
		{"swap records 4 and 5", func(t *testing.T, db *sql.DB, _ []plinth.AuditRecord) {
			exec(t, db, `UPDATE plinth_audit SET sequence = -4 WHERE sequence = 4`,
				`UPDATE plinth_audit SET sequence = 4 WHERE sequence = 5`,
				`UPDATE plinth_audit SET sequence = 5 WHERE sequence = -4`)
		}, 4, "record 4 was changed after it was written: it was written as record 5 and renumbered"},
		{"swap records 4 and 5 and recompute their hashes", func(t *testing.T, db *sql.DB, recs []plinth.AuditRecord) {
			a, b := recs[4], recs[3] // the new 4 and 5
			a.Sequence, a.PrevHash = 4, recs[2].Hash
			a.Hash = a.ComputeHash()
			b.Sequence, b.PrevHash = 5, a.Hash
			b.Hash = b.ComputeHash()
			exec(t, db, `UPDATE plinth_audit SET sequence = -4 WHERE sequence = 4`,
				`UPDATE plinth_audit SET sequence = 4 WHERE sequence = 5`,
				`UPDATE plinth_audit SET sequence = 5 WHERE sequence = -4`,
				fmt.Sprintf(`UPDATE plinth_audit SET prev_hash = '%s', hash = '%s' WHERE sequence = 4`, a.PrevHash, a.Hash),
				fmt.Sprintf(`UPDATE plinth_audit SET prev_hash = '%s', hash = '%s' WHERE sequence = 5`, b.PrevHash, b.Hash))
		}, 6, "the link from record 5 to record 6 is broken"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, path := openStore(t)
			recs := fill(t, st, 10)
			c.tamper(t, rawDB(t, path), recs)
			rep := verify(t, st)
			if rep.Broken == nil {
				t.Fatalf("verify found nothing wrong: %+v", rep)
			}
			if rep.Broken.Sequence != c.seq || !strings.Contains(rep.Broken.Problem, c.problem) {
				t.Fatalf("broken at %d: %q; want %d: %q", rep.Broken.Sequence, rep.Broken.Problem, c.seq, c.problem)
			}
			t.Logf("broken at %d: %s", rep.Broken.Sequence, rep.Broken.Problem)
		})
	}
}

func TestAnchors(t *testing.T) {
	st, path := openStore(t)
	recs := fill(t, st, 10)
	head := Anchor{Sequence: 10, Hash: recs[9].Hash}
	mid := Anchor{Sequence: 7, Hash: recs[6].Hash}

	if rep := verify(t, st, head, mid); rep.Broken != nil {
		t.Fatalf("anchored heads not found: %v", rep.Broken)
	}
	if rep := verify(t, st, Anchor{Sequence: 7, Hash: recs[5].Hash}); rep.Broken == nil || rep.Broken.Sequence != 7 ||
		!strings.Contains(rep.Broken.Problem, "does not have the anchored hash") {
		t.Fatalf("a wrong anchored hash: %+v", rep.Broken)
	}

	// Truncation leaves an intact chain; only the anchor shows it.
	db := rawDB(t, path)
	exec(t, db, `DELETE FROM plinth_audit WHERE sequence > 8`)
	if rep := verify(t, st); rep.Broken != nil || rep.HeadSequence != 8 {
		t.Fatalf("a truncated chain without an anchor: %+v", rep)
	}
	rep := verify(t, st, head)
	if rep.Broken == nil || rep.Broken.Sequence != 10 || !strings.Contains(rep.Broken.Problem, "truncated") {
		t.Fatalf("truncation with an anchor: %+v", rep.Broken)
	}

	// A rewrite from record 6 on, with every hash recomputed, also leaves an
	// intact chain that only the anchor exposes.
	exec(t, db, `DELETE FROM plinth_audit WHERE sequence > 5`,
		fmt.Sprintf(`UPDATE plinth_audit_head SET sequence = 5, hash = '%s'`, recs[4].Hash))
	a := New(st, Config{Environment: plinth.EnvProduction, FailClosed: true})
	for i := 6; i <= 10; i++ {
		r := sample(i)
		r.Principal.Email = "innocent@example.gov.uk"
		if _, err := a.Record(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	chainAll(t, st)
	if rep := verify(t, st); rep.Broken != nil || rep.Records != 10 {
		t.Fatalf("a rewritten chain without an anchor: %+v", rep)
	}
	rep = verify(t, st, mid)
	if rep.Broken == nil || rep.Broken.Sequence != 7 || !strings.Contains(rep.Broken.Problem, "rewritten") {
		t.Fatalf("a rewrite with an anchor: %+v", rep.Broken)
	}
	if rep := verify(t, st, Anchor{Sequence: 5, Hash: recs[4].Hash}); rep.Broken != nil {
		t.Fatalf("an anchor before the rewrite: %v", rep.Broken)
	}
}

func TestParseAnchor(t *testing.T) {
	h := strings.Repeat("ab", 32)
	a, err := ParseAnchor(" 42:" + strings.ToUpper(h) + "\n")
	if err != nil || a.Sequence != 42 || a.Hash != h || a.String() != "42:"+h {
		t.Fatalf("ParseAnchor: %+v %v", a, err)
	}
	for _, bad := range []string{"", "42", "42:", ":" + h, "0:" + h, "-1:" + h, "x:" + h, "42:" + h[:63], "42:" + h + "0", "42:" + strings.Repeat("g", 64)} {
		if _, err := ParseAnchor(bad); err == nil {
			t.Errorf("ParseAnchor(%q) accepted", bad)
		}
	}
}

func TestHead(t *testing.T) {
	st, path := openStore(t)
	if _, ok, err := Head(context.Background(), st); ok || err != nil {
		t.Fatalf("empty chain: %v %v", ok, err)
	}
	ctx := context.Background()
	total := 0
	for _, n := range []int{1, 9, 1014, 1024, 2500} { // 1, 10, 1024, 2048, 4548
		batch := make([]plinth.AuditRecord, n)
		for i := range batch {
			batch[i] = sample(total + i)
		}
		for len(batch) > 0 {
			k := min(len(batch), st.MaxAtomicBatch())
			if _, err := st.AppendAudit(ctx, batch[:k]); err != nil {
				t.Fatal(err)
			}
			batch = batch[k:]
		}
		total += n
		chained := chainAll(t, st)
		head, ok, err := Head(ctx, st)
		last := chained[len(chained)-1]
		if err != nil || !ok || head.Sequence != int64(total) || head.Hash != last.Hash {
			t.Fatalf("after %d records: %+v %v %v", total, head, ok, err)
		}
	}
	// With gaps, the head is still the newest record.
	exec(t, rawDB(t, path), `DELETE FROM plinth_audit WHERE sequence BETWEEN 100 AND 4000 OR sequence = 4548`)
	head, _, err := Head(ctx, st)
	if err != nil || head.Sequence != 4547 {
		t.Fatalf("head with gaps: %+v %v", head, err)
	}
}

func TestSearch(t *testing.T) {
	st, _ := openStore(t)
	fill(t, st, 30)
	recs, more, err := Search(context.Background(), st, plinth.AuditQuery{User: "user1@example.gov.uk"})
	if err != nil || more || len(recs) != 10 {
		t.Fatalf("by user: %d records, more %v, %v", len(recs), more, err)
	}
	var seqs []int64
	err = SearchAll(context.Background(), st, plinth.AuditQuery{Limit: 3, Domain: "residents"}, func(r plinth.AuditRecord) error {
		seqs = append(seqs, r.Sequence)
		return nil
	})
	if err != nil || len(seqs) != 30 || !slices.IsSorted(seqs) {
		t.Fatalf("SearchAll: %v %v", seqs, err)
	}
	recs, _, err = Search(context.Background(), st, plinth.AuditQuery{EntityID: "12345"})
	if err != nil || len(recs) != 1 || recs[0].CorrelationID != "corr-5" {
		t.Fatalf("by entity id: %+v %v", recs, err)
	}
	now := time.Now()
	_, _, err = Search(context.Background(), st, plinth.AuditQuery{Since: now, Until: now.Add(-time.Hour)})
	var ve *plinth.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("until before since: %v", err)
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-11-01":                time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		"2026-11-01T09:30:00+01:00": time.Date(2026, 11, 1, 8, 30, 0, 0, time.UTC),
		"2026-11-01T09:30:00.5Z":    time.Date(2026, 11, 1, 9, 30, 0, 500000000, time.UTC),
		"720h":                      now.Add(-720 * time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
	} {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2026-13-01", "-5h", "01/11/2026"} {
		if _, err := ParseTime(bad, now); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}

func TestGatherWait(t *testing.T) {
	for _, c := range []struct {
		last      int
		took, max time.Duration
		want      time.Duration
	}{
		{0, time.Second, time.Hour, 0},               // the first batch
		{1, time.Second, time.Hour, 0},               // a lone request commits at once
		{2, time.Second, time.Hour, 0},               // and so do two
		{3, time.Second, time.Hour, time.Second / 2}, // at most half the last commit
		{50, time.Second, 4 * time.Millisecond, 4 * time.Millisecond},
		{50, time.Second, -1, -1}, // negative: never
	} {
		if got := gatherWait(c.last, c.took, c.max); got != c.want {
			t.Errorf("gatherWait(%d, %v, %v) = %v, want %v", c.last, c.took, c.max, got, c.want)
		}
	}
}

// stepStore lets one AppendAudit through per token on release.
type stepStore struct {
	plinth.AuditStore
	mu      sync.Mutex
	batches []int
	entered chan int
	release chan struct{}
}

func (g *stepStore) AppendAudit(ctx context.Context, recs []plinth.AuditRecord) ([]plinth.AuditRecord, error) {
	g.mu.Lock()
	g.batches = append(g.batches, len(recs))
	g.mu.Unlock()
	g.entered <- len(recs)
	<-g.release
	return g.AuditStore.AppendAudit(ctx, recs)
}

// After a batch of four, the next batch waits for four records rather
// than committing the first alone: under load, fewer and larger commits.
func TestGroupCommitGathersUnderLoad(t *testing.T) {
	st, _ := openStore(t)
	g := &stepStore{AuditStore: st, entered: make(chan int, 64), release: make(chan struct{})}
	a := New(g, Config{FailClosed: true, GatherWait: time.Hour})
	var wg sync.WaitGroup
	record := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Record(context.Background(), sample(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	record(0)
	<-g.entered // a batch of one, held
	for i := 1; i <= 4; i++ {
		record(i)
	}
	plinthtest.Eventually(t, 0, func() bool { return len(a.queue) == 4 }, "4 records queued")
	g.release <- struct{}{}
	if n := <-g.entered; n != 4 {
		t.Fatalf("second batch %d, want 4", n)
	}
	// The batch of four takes a while to commit, so the next may wait up
	// to half that for four records.
	time.Sleep(time.Second)
	g.release <- struct{}{}
	record(5)
	// The writer has taken record 5; without gathering it would commit
	// it alone now.
	plinthtest.Eventually(t, 0, func() bool { return len(a.queue) == 0 }, "record 5 taken")
	time.Sleep(50 * time.Millisecond)
	for i := 6; i <= 8; i++ {
		record(i)
	}
	if n := <-g.entered; n != 4 {
		t.Fatalf("third batch %d, want 4 (gathered)", n)
	}
	g.release <- struct{}{}
	wg.Wait()
	close(g.release)
	a.Close()
	if !slices.Equal(g.batches, []int{1, 4, 4}) {
		t.Errorf("batches %v, want [1 4 4]", g.batches)
	}
	chainAll(t, st)
	if rep := verify(t, st); rep.Broken != nil || rep.Records != 9 {
		t.Fatalf("verify: %+v %v", rep, rep.Broken)
	}
}

// Direct lets a request append its own record only while fewer than
// directMax records are in the auditor's hands: waiting, being committed,
// or appended directly. After Close it never does.
func TestDirectOnlyWhileNearlyIdle(t *testing.T) {
	st, _ := openStore(t)
	gate := &gatedStore{AuditStore: st, entered: make(chan struct{}, 4), release: make(chan struct{})}
	a := New(gate, Config{Environment: plinth.EnvProduction, FailClosed: true})

	done1, ok1 := a.Direct()
	done2, ok2 := a.Direct()
	_, ok3 := a.Direct()
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("with nothing waiting: %v %v %v, want two of three", ok1, ok2, ok3)
	}
	done1()
	done2()

	// A record being committed counts: one more may go direct, not two.
	recorded := make(chan error, 1)
	go func() {
		_, err := a.Record(context.Background(), sample(1))
		recorded <- err
	}()
	<-gate.entered
	done, ok := a.Direct()
	if _, again := a.Direct(); !ok || again {
		t.Fatalf("with one record committing: %v then %v, want true then false", ok, again)
	}
	done()
	close(gate.release)
	if err := <-recorded; err != nil {
		t.Fatal(err)
	}
	plinthtest.Eventually(t, 0, func() bool { return a.busy.Load() == 0 }, "the committed record still counts")

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Direct(); ok {
		t.Fatal("Direct after Close")
	}
}
