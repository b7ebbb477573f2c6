package mssql

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/legacy"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/mariadbtest"
	"github.com/plinth-data/plinth/sqlite"
)

func caseMapping(t *testing.T) *legacy.Mapping {
	t.Helper()
	data, _ := domains.FS.ReadFile("residents.case.mapping.yaml")
	m, err := legacy.Parse("residents.case.mapping.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Resolve(plinthtest.Domains(t)); err != nil {
		t.Fatal(err)
	}
	return m
}

// caseSchema is the case system's schema as SQL Server would describe it.
func caseSchema() map[string]*legacy.TableInfo {
	return map[string]*legacy.TableInfo{
		"dm_persons":           {Name: "dm_persons", PrimaryKey: []string{"person_id"}, Ordered: []string{"person_id", "first_name"}},
		"dm_addresses":         {Name: "dm_addresses", PrimaryKey: []string{"ref_addresses_people_id"}, Ordered: []string{"ref_addresses_people_id", "person_id"}},
		"dm_telephone_numbers": {Name: "dm_telephone_numbers", PrimaryKey: []string{"telephone_number_id", "person_id"}, Ordered: []string{"telephone_number_id", "person_id", "telephone_number"}},
	}
}

func TestQueries(t *testing.T) {
	tables, err := TablesOf(caseMapping(t), caseSchema())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"SELECT ct.SYS_CHANGE_VERSION AS sys_change_version, ct.SYS_CHANGE_OPERATION AS sys_change_operation, ct.[person_id] AS [person_id] FROM CHANGETABLE(CHANGES [dbo].[dm_persons], @p1) AS ct LEFT JOIN [dbo].[dm_persons] AS t ON t.[person_id] = ct.[person_id] WHERE ct.SYS_CHANGE_VERSION <= @p2 ORDER BY ct.SYS_CHANGE_VERSION",
		// The address's key does not hold person_id: it comes from the row.
		"SELECT ct.SYS_CHANGE_VERSION AS sys_change_version, ct.SYS_CHANGE_OPERATION AS sys_change_operation, ct.[ref_addresses_people_id] AS [ref_addresses_people_id], t.[person_id] AS [person_id] FROM CHANGETABLE(CHANGES [dbo].[dm_addresses], @p1) AS ct LEFT JOIN [dbo].[dm_addresses] AS t ON t.[ref_addresses_people_id] = ct.[ref_addresses_people_id] WHERE ct.SYS_CHANGE_VERSION <= @p2 ORDER BY ct.SYS_CHANGE_VERSION",
		"SELECT ct.SYS_CHANGE_VERSION AS sys_change_version, ct.SYS_CHANGE_OPERATION AS sys_change_operation, ct.[telephone_number_id] AS [telephone_number_id], ct.[person_id] AS [person_id] FROM CHANGETABLE(CHANGES [dbo].[dm_telephone_numbers], @p1) AS ct LEFT JOIN [dbo].[dm_telephone_numbers] AS t ON t.[telephone_number_id] = ct.[telephone_number_id] AND t.[person_id] = ct.[person_id] WHERE ct.SYS_CHANGE_VERSION <= @p2 ORDER BY ct.SYS_CHANGE_VERSION",
	}
	for i, tb := range tables {
		if got := ChangesQuery(tb); got != want[i] {
			t.Errorf("%s:\n got %s\nwant %s", tb.Name, got, want[i])
		}
	}
	if got := CDCQuery(tables[2]); got != "SELECT __$start_lsn AS start_lsn, __$seqval AS seqval, __$operation AS operation, [telephone_number_id], [person_id], [telephone_number] FROM cdc.fn_cdc_get_all_changes_dbo_dm_telephone_numbers(@p1, @p2, N'all') ORDER BY __$start_lsn, __$seqval" {
		t.Errorf("cdc query: %s", got)
	}
}

// replay is a test driver: it answers the capture's queries with recorded
// CHANGETABLE and CDC rows, and records what it was asked.
type replay struct {
	mu      sync.Mutex
	answers map[string][]legacy.Row // by query (for changes: query + from)
	asked   []string
}

func (r *replay) set(key string, rows ...legacy.Row) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answers[key] = rows
}

func (r *replay) Rows(_ context.Context, q string, args ...any) ([]legacy.Row, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := q
	if strings.Contains(q, "CHANGETABLE") || strings.Contains(q, "fn_cdc_get_all_changes") || q == MinValidQuery || q == MinLSNQuery {
		key = fmt.Sprintf("%s|%v", q, args[0])
	}
	r.asked = append(r.asked, key)
	return r.answers[key], nil
}

func newReplay() *replay { return &replay{answers: map[string][]legacy.Row{}} }

func TestReplayChangeTrackingOrdersAndNamesRecords(t *testing.T) {
	m := caseMapping(t)
	tables, _ := TablesOf(m, caseSchema())
	r := newReplay()
	r.set(CurrentVersionQuery, legacy.Row{"v": int64(12)})
	r.set(ChangesQuery(tables[0])+"|10",
		legacy.Row{"sys_change_version": int64(11), "sys_change_operation": "I", "person_id": int64(500)},
		legacy.Row{"sys_change_version": int64(12), "sys_change_operation": []byte("D"), "person_id": int64(7)})
	r.set(ChangesQuery(tables[1])+"|10",
		legacy.Row{"sys_change_version": int64(11), "sys_change_operation": "U", "ref_addresses_people_id": int64(9), "person_id": int64(8)})
	r.set(ChangesQuery(tables[2])+"|10",
		legacy.Row{"sys_change_version": int64(12), "sys_change_operation": "D", "telephone_number_id": int64(4), "person_id": int64(9)})
	c := NewWith(r, ChangeTracking, tables)
	s, _ := c.Open(context.Background(), "10")
	b, err := s.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if b.Position != "12" {
		t.Fatalf("position %q", b.Position)
	}
	var order []string
	for _, ch := range b.Changes {
		op := "write"
		if ch.After == nil {
			op = "delete"
		}
		order = append(order, ch.Table+" "+op)
	}
	if strings.Join(order, ", ") != "dm_persons write, dm_addresses write, dm_persons delete, dm_telephone_numbers delete" {
		t.Fatalf("order %v", order)
	}
	var keys []string
	for _, k := range m.ParentsOf(b.Changes) {
		keys = append(keys, k.Values.Text("-"))
	}
	if strings.Join(keys, " ") != "500 8 7 9" {
		t.Fatalf("records named %v", keys)
	}
	// Retention passed the position: re-snapshot, never skip.
	r.set(MinValidQuery+"|dbo.dm_addresses", legacy.Row{"v": int64(11)})
	if _, err := s.Next(context.Background()); !errors.Is(err, legacy.ErrResnapshot) {
		t.Fatalf("retention: %v", err)
	}
}

func TestReplayCDC(t *testing.T) {
	m := caseMapping(t)
	tables, _ := TablesOf(m, caseSchema())
	lsn := func(n byte) []byte { return []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, n} }
	r := newReplay()
	r.set(MaxLSNQuery, legacy.Row{"v": lsn(9)})
	r.set(IncrementLSNQuery, legacy.Row{"v": lsn(6)})
	r.set(CDCQuery(tables[2])+"|"+fmt.Sprint(lsn(6)),
		legacy.Row{"start_lsn": lsn(8), "seqval": lsn(2), "operation": int64(4), "telephone_number_id": int64(1), "person_id": int64(20)},
		legacy.Row{"start_lsn": lsn(8), "seqval": lsn(1), "operation": int64(3), "telephone_number_id": int64(1), "person_id": int64(20)},
		legacy.Row{"start_lsn": lsn(7), "seqval": lsn(1), "operation": int64(1), "telephone_number_id": int64(2), "person_id": int64(21)})
	c := NewWith(r, CDC, tables)
	s, _ := c.Open(context.Background(), hex.EncodeToString(lsn(5)))
	b, err := s.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if b.Position != hex.EncodeToString(lsn(9)) || len(b.Changes) != 2 || b.Changes[0].After != nil || b.Changes[1].After["person_id"] != int64(20) {
		t.Fatalf("batch %+v", b)
	}
	r.set(MinLSNQuery+"|dbo_dm_persons", legacy.Row{"v": lsn(7)})
	if _, err := s.Next(context.Background()); !errors.Is(err, legacy.ErrResnapshot) {
		t.Fatalf("retention: %v", err)
	}
}

// atPosition is a Change Tracking capture whose snapshot position comes
// from the replay driver (the snapshot itself is read from MariaDB).
type atPosition struct {
	*Capture
	r *replay
}

func (a atPosition) SnapshotPosition(ctx context.Context, _ *legacy.Snapshot) (string, error) {
	rows, _ := a.r.Rows(ctx, CurrentVersionQuery)
	return a.Capture.position(rows[0]["v"])
}

// TestApplyReplayedChanges runs change capture with recorded CHANGETABLE
// rows describing changes made to a real source (MariaDB here): deletes
// and child updates are applied, a retention gap loads a new snapshot
// (catching a change no row described), and a restart resumes from the
// stored version.
func TestApplyReplayedChanges(t *testing.T) {
	ctx := context.Background()
	src, err := legacy.Open(ctx, mariadbtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := legacy.Fixture(ctx, src, legacy.FixtureOptions{System: "case", Rows: 50, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	m := caseMapping(t)
	if err := legacy.Check(ctx, src, m); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Prepare(ctx, plinthtest.Domains(t)); err != nil {
		t.Fatal(err)
	}
	w, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: st, Events: true, Audit: true, Environment: "development"})
	if err != nil {
		t.Fatal(err)
	}
	exec := func(q string) {
		if _, err := src.DB.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	exec("UPDATE dm_persons SET marked_for_deletion = 'N'")
	schema, _ := src.Schema(ctx)
	tables, err := TablesOf(m, schema)
	if err != nil {
		t.Fatal(err)
	}
	r := newReplay()
	r.set(CurrentVersionQuery, legacy.Row{"v": int64(10)})
	capture := atPosition{NewWith(r, ChangeTracking, tables), r}
	capture.Poll = 10 * time.Millisecond
	run := func() func() {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- legacy.RunCDC(cctx, src, st, w, m, capture, legacy.CDCOptions{}) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	clean := func() bool {
		rep, err := legacy.Compare(ctx, src, st, m, nil)
		return err == nil && rep.Clean()
	}
	stop := run()
	plinthtest.Eventually(t, 10*time.Second, clean, "initial load")
	exec("DELETE FROM dm_persons WHERE person_id = 3")
	exec("UPDATE dm_telephone_numbers SET telephone_number = '07700 900111' WHERE person_id = (SELECT MIN(person_id) FROM (SELECT person_id FROM dm_telephone_numbers) p)")
	var phonePerson int64
	_ = src.DB.QueryRow("SELECT person_id FROM dm_telephone_numbers WHERE telephone_number = '07700 900111' LIMIT 1").Scan(&phonePerson)
	r.set(ChangesQuery(tables[0])+"|10", legacy.Row{"sys_change_version": int64(11), "sys_change_operation": "D", "person_id": int64(3)})
	r.set(ChangesQuery(tables[2])+"|10", legacy.Row{"sys_change_version": int64(11), "sys_change_operation": "U", "telephone_number_id": int64(1), "person_id": phonePerson})
	r.set(CurrentVersionQuery, legacy.Row{"v": int64(11)})
	plinthtest.Eventually(t, 10*time.Second, clean, "the replayed delete and phone update")

	// Retention passes the stored version; a change no recorded row
	// describes is picked up by the new snapshot.
	exec("UPDATE dm_persons SET last_name = 'Resnapshot' WHERE person_id = 5")
	r.set(MinValidQuery+"|dbo.dm_persons", legacy.Row{"v": int64(15)})
	r.set(CurrentVersionQuery, legacy.Row{"v": int64(20)})
	var status legacy.CDCStatus
	plinthtest.Eventually(t, 10*time.Second, func() bool {
		c, _, _ := st.Checkpoint(ctx, m.CheckpointName("cdc"))
		_ = json.Unmarshal(c.Value, &status)
		return status.Position == "20" && status.SnapshotDone
	}, "no re-snapshot after the retention gap: %+v", plinthtest.Last(&status))
	stop()
	if !clean() {
		t.Fatal("the re-snapshot missed the change")
	}
	// Resume: the restarted capture asks for changes after version 20.
	r.set(MinValidQuery+"|dbo.dm_persons", legacy.Row{"v": int64(1)})
	r.set(CurrentVersionQuery, legacy.Row{"v": int64(21)})
	stop = run()
	plinthtest.Eventually(t, 10*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, q := range r.asked {
			if q == ChangesQuery(tables[0])+"|20" {
				return true
			}
		}
		return false
	}, "no query after version 20")
	stop()
	pending, _ := st.PendingEvents(ctx, 100)
	kinds := map[string]int{}
	for _, p := range pending {
		var ev struct{ EventType, EntityID string }
		_ = json.Unmarshal(p.Payload, &ev)
		kinds[ev.EventType+" "+ev.EntityID]++
	}
	// The change made in the retention gap is announced by the re-snapshot.
	if kinds["ResidentDeletedEvent 3"] != 1 || kinds[fmt.Sprintf("ResidentUpdatedEvent %d", phonePerson)] != 1 ||
		kinds["ResidentUpdatedEvent 5"] != 1 || len(pending) != 3 {
		t.Fatalf("events %v", kinds)
	}
}

// TestHolds: an interrupted initial load resumes under its position only
// while every table's retention still covers the changes after it.
func TestHolds(t *testing.T) {
	ctx := context.Background()
	tables, _ := TablesOf(caseMapping(t), caseSchema())
	r := newReplay()
	ct := NewWith(r, ChangeTracking, tables)
	if held, err := ct.Holds(ctx, "10"); err != nil || held {
		t.Fatalf("tables without Change Tracking hold the position: %v %v", held, err)
	}
	for _, tb := range tables {
		r.set(MinValidQuery+"|dbo."+tb.Name, legacy.Row{"v": int64(10)})
	}
	if held, err := ct.Holds(ctx, "10"); err != nil || !held {
		t.Fatalf("min valid 10, position 10: %v %v", held, err)
	}
	r.set(MinValidQuery+"|dbo.dm_addresses", legacy.Row{"v": int64(11)})
	if held, _ := ct.Holds(ctx, "10"); held {
		t.Fatal("dm_addresses' retention passed the position, yet it holds")
	}
	lsn := func(n byte) []byte { return []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, n} }
	cdc := NewWith(r, CDC, tables)
	r.set(IncrementLSNQuery, legacy.Row{"v": lsn(6)})
	for _, tb := range tables {
		r.set(MinLSNQuery+"|"+tb.Instance, legacy.Row{"v": lsn(6)})
	}
	if held, err := cdc.Holds(ctx, hex.EncodeToString(lsn(5))); err != nil || !held {
		t.Fatalf("low LSN 6, next after the position 6: %v %v", held, err)
	}
	r.set(MinLSNQuery+"|dbo_dm_telephone_numbers", legacy.Row{"v": lsn(7)})
	if held, _ := cdc.Holds(ctx, hex.EncodeToString(lsn(5))); held {
		t.Fatal("a capture instance's low LSN passed the position, yet it holds")
	}
}
