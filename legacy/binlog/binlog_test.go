package binlog

import (
	"context"
	"encoding/json"
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

type fixture struct {
	src *legacy.Source
	url string
	m   *legacy.Mapping
	st  plinth.Store
	w   *plinth.Writer
}

// setup starts a private MariaDB with a row binlog, fills it with the case
// system's fixture and opens an empty SQLite target with its write path.
func setup(t testing.TB, persons int) *fixture {
	t.Helper()
	ctx := context.Background()
	srv := mariadbtest.StartServer(t)
	src, err := legacy.Open(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	if err := legacy.Fixture(ctx, src, legacy.FixtureOptions{System: "case", Rows: persons, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	data, _ := domains.FS.ReadFile("residents.case.mapping.yaml")
	m, err := legacy.Parse("residents.case.mapping.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	ds := plinthtest.Domains(t)
	if err := m.Resolve(ds); err != nil {
		t.Fatal(err)
	}
	if err := legacy.Check(ctx, src, m); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "plinth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	w, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: st, Environment: "development", Events: true, Audit: true})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{src: src, url: srv.URL, m: m, st: st, w: w}
}

func (f *fixture) exec(t *testing.T, qs ...string) {
	t.Helper()
	for _, q := range qs {
		if _, err := f.src.DB.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// run starts change capture on a goroutine; stop ends it and returns its error.
func (f *fixture) run(t *testing.T, opts legacy.CDCOptions) (stop func() error) {
	t.Helper()
	c, err := New(context.Background(), f.src, f.url, f.m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr = legacy.RunCDC(ctx, f.src, f.st, f.w, f.m, c, opts)
	}()
	return func() error { cancel(); wg.Wait(); return runErr }
}

// events counts the outbox's events by type and entity id.
func (f *fixture) events(t *testing.T) map[string]int {
	t.Helper()
	pending, err := f.st.(plinth.OutboxStore).PendingEvents(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, p := range pending {
		var ev struct {
			EventType, EntityID, SourceSystem string
		}
		_ = json.Unmarshal(p.Payload, &ev)
		if ev.SourceSystem != "Mosaic" {
			t.Errorf("event from %q", ev.SourceSystem)
		}
		out[ev.EventType+" "+ev.EntityID]++
	}
	return out
}

func (f *fixture) clean(t *testing.T) bool {
	rep, err := legacy.Compare(context.Background(), f.src, f.st, f.m, nil)
	if err != nil || !rep.Clean() {
		t.Logf("%s not yet: %v missing %v extra %v differ %v", time.Now().Format("15:04:05.000"), err, rep.Missing[:min(3, len(rep.Missing))], rep.Extra, rep.Differ)
	}
	return err == nil && rep.Clean()
}

// TestCaptureAfterSnapshotNoGapNoDouble: writes made to the source while
// the initial snapshot loads, and after, reach the target through the
// binlog; a child row's change gives exactly one update event of its
// parent; a restart resumes from the stored position without doubling.
func TestCaptureAfterSnapshotNoGapNoDouble(t *testing.T) {
	f := setup(t, 300)
	f.exec(t, "UPDATE dm_persons SET marked_for_deletion = 'N' WHERE person_id BETWEEN 10 AND 13")
	stop := f.run(t, legacy.CDCOptions{DuringSnapshot: func() {
		f.exec(t,
			"UPDATE dm_persons SET last_name = 'Duringsnapshot', marked_for_deletion = 'N' WHERE person_id = 10",
			"INSERT INTO dm_persons (person_id, first_name, last_name, marked_for_deletion) VALUES (5001, 'Newly', 'Inserted', 'N')",
			"DELETE FROM dm_persons WHERE person_id = 11")
	}})
	plinthtest.Eventually(t, 20*time.Second, func() bool { return f.clean(t) }, "the target did not catch up with the writes made during the snapshot")
	f.exec(t, "UPDATE dm_persons SET marked_for_deletion = 'N', first_name = 'Phoney' WHERE person_id = 12")
	plinthtest.Eventually(t, 10*time.Second, func() bool { return f.clean(t) }, "person 12")
	f.exec(t, "INSERT INTO dm_telephone_numbers (telephone_number_id, person_id, telephone_number, telephone_number_type) VALUES (99001, 12, '07700 900999', 'Mobile')")
	plinthtest.Eventually(t, 10*time.Second, func() bool { return f.clean(t) }, "the phone change did not arrive")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	r, err := f.st.Get(context.Background(), f.m.Entity, int64(12))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(r.Data["phoneNumbers"])
	if !strings.Contains(string(b), "07700 900999") {
		t.Fatalf("person 12's phones: %s", b)
	}
	want := map[string]int{"ResidentUpdatedEvent 10": 1, "ResidentCreatedEvent 5001": 1, "ResidentDeletedEvent 11": 1, "ResidentUpdatedEvent 12": 2}
	got := f.events(t)
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d events, want %d (all: %v)", k, got[k], n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("events %v, want only %v", got, want)
	}
	// Restart: nothing is applied twice, and new changes arrive.
	f.exec(t, "UPDATE dm_persons SET last_name = 'Afterrestart', marked_for_deletion = 'N' WHERE person_id = 13")
	before := len(got)
	stop = f.run(t, legacy.CDCOptions{})
	plinthtest.Eventually(t, 10*time.Second, func() bool { return f.clean(t) }, "after the restart")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got = f.events(t)
	if got["ResidentUpdatedEvent 13"] != 1 || len(got) != before+1 || got["ResidentUpdatedEvent 12"] != 2 {
		t.Fatalf("after the restart: %v", got)
	}
}
