package legacy

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/mariadbtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
	"github.com/plinth-data/plinth/sqlite"
)

const fixtureRows = 400

// source makes a case-system fixture in a fresh database of the kind and
// returns it opened, with the shipped mapping checked against it.
func source(t *testing.T, kind Kind) (*Source, *Mapping) {
	t.Helper()
	ctx := context.Background()
	var url string
	if kind == KindPostgres {
		url = pgtest.Database(t)
	} else {
		url = mariadbtest.Database(t)
	}
	src, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	if err := Fixture(ctx, src, FixtureOptions{System: "case", Rows: fixtureRows, Seed: 42}); err != nil {
		t.Fatal(err)
	}
	m := shipped(t, "residents.case.mapping.yaml")
	if err := Check(ctx, src, m); err != nil {
		t.Fatal(err)
	}
	return src, m
}

// target opens an empty store: PostgreSQL or SQLite.
func target(t *testing.T, pg bool) plinth.Store {
	t.Helper()
	ctx := context.Background()
	var st plinth.Store
	var err error
	if pg {
		st, err = postgres.Open(ctx, pgtest.Database(t))
	} else {
		st, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "plinth.db"))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Prepare(ctx, plinthtest.Domains(t)); err != nil {
		t.Fatal(err)
	}
	return st
}

var errInterrupt = errors.New("interrupted")

// TestFullLoadResumesAndEqualsSource: a full load interrupted after two
// batches resumes from its checkpoint and ends equal to the source, by
// per-record hash; marked-for-deletion rows are not loaded.
func TestFullLoadResumesAndEqualsSource(t *testing.T) {
	for _, tc := range []struct {
		name     string
		kind     Kind
		pgTarget bool
	}{{"mariadb to postgres", KindMariaDB, true}, {"postgres to sqlite", KindPostgres, false}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			src, m := source(t, tc.kind)
			st := target(t, tc.pgTarget)
			res, err := Full(ctx, src, st, m, FullOptions{Batch: 50, AfterBatch: func(loaded int) error {
				if loaded >= 90 {
					return errInterrupt
				}
				return nil
			}})
			if !errors.Is(err, errInterrupt) {
				t.Fatalf("first run: %v", err)
			}
			n, _ := st.Count(ctx, m.Entity)
			if n == 0 || n >= fixtureRows {
				t.Fatalf("after the interruption the store holds %d records", n)
			}
			// Two batches committed, and perhaps the one being written
			// beside the second (loads commit in order).
			saved, _, err := st.Checkpoint(ctx, m.CheckpointName("full"))
			var cp fullCheckpoint
			if err != nil || decodeKeyJSON(saved.Value, &cp) != nil || cp.Loaded != 100 && cp.Loaded != 150 {
				t.Fatalf("checkpoint after the interruption: %s %v", saved.Value, err)
			}
			res, err = Full(ctx, src, st, m, FullOptions{Batch: 50})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Resumed || res.Read != fixtureRows-cp.Loaded {
				t.Fatalf("second run did not resume after the %d rows committed: %+v", cp.Loaded, res)
			}
			if len(res.Rejected) > 0 {
				t.Fatalf("rows rejected: %v", res.Rejected[:min(3, len(res.Rejected))])
			}
			checkLoaded(t, st, m)
			rep, err := Compare(ctx, src, st, m, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Clean() || rep.Filtered == 0 || rep.Source+rep.Filtered != fixtureRows || rep.Target != rep.Source {
				t.Fatalf("report %+v", rep)
			}
			// A change in the source shows as a mismatch by key.
			if _, err := src.DB.ExecContext(ctx, "UPDATE dm_telephone_numbers SET telephone_number = '020 7000 0001' WHERE person_id = 3"); err != nil {
				t.Fatal(err)
			}
			if _, err := src.DB.ExecContext(ctx, "UPDATE dm_persons SET last_name = 'Changed', marked_for_deletion = 'N' WHERE person_id = 4"); err != nil {
				t.Fatal(err)
			}
			rep, err = Compare(ctx, src, st, m, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(rep.Differ, "4") && !slices.Contains(rep.Missing, "4") {
				t.Fatalf("the change to person 4 is not reported: %+v", rep)
			}
		})
	}
}

// TestSyncAppliesExactlyTheDiff: after a full load, a scripted set of
// source changes is applied by sync as exactly those changes, each with
// one event naming the legacy system and one audit record; a second run
// writes nothing.
func TestSyncAppliesExactlyTheDiff(t *testing.T) {
	ctx := context.Background()
	src, m := source(t, KindMariaDB)
	st := target(t, false)
	if _, err := Full(ctx, src, st, m, FullOptions{}); err != nil {
		t.Fatal(err)
	}
	var commits, events int
	w, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: st, Environment: "development", Events: true, Audit: true,
		OnCommit: func(a plinth.AuditRecord, evented bool) {
			commits++
			if evented {
				events++
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	live := livePersons(t, src, 4)
	a, b, c, d := live[0], live[1], live[2], live[3]
	for _, q := range []string{
		"UPDATE dm_persons SET first_name = 'Zebedee' WHERE person_id = " + a,
		"INSERT INTO dm_persons (person_id, first_name, last_name, marked_for_deletion) VALUES (100001, 'New', 'Person', 'N')",
		"DELETE FROM dm_persons WHERE person_id = " + b,
		"UPDATE dm_persons SET marked_for_deletion = 'Y' WHERE person_id = " + c,
		"INSERT INTO dm_telephone_numbers (telephone_number_id, person_id, telephone_number, telephone_number_type) VALUES (900001, " + d + ", '07700 900123', 'Mobile')",
	} {
		if _, err := src.DB.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	res, err := Sync(ctx, src, st, w, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 1 || res.Updated != 2 || res.Deleted != 2 || len(res.Rejected) > 0 {
		t.Fatalf("sync %+v, want 1 created, 2 updated (name, phone), 2 deleted (row gone, marked)", res)
	}
	if commits != 5 || events != 5 {
		t.Fatalf("%d commits, %d events; want one audit record and one event per change", commits, events)
	}
	pending, err := st.(plinth.OutboxStore).PendingEvents(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, p := range pending {
		var ev struct {
			EventType, SourceSystem string
			EventData               struct{ NewData map[string]any }
		}
		if err := json.Unmarshal(p.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.SourceSystem != "Mosaic" {
			t.Errorf("event sourceSystem %q", ev.SourceSystem)
		}
		kinds[ev.EventType]++
		if _, phones := ev.EventData.NewData["phoneNumbers"]; ev.EventType == "ResidentUpdatedEvent" && phones && !strings.Contains(string(p.Payload), "07700 900123") {
			t.Errorf("the phone update does not carry the new number: %s", p.Payload)
		}
	}
	if kinds["ResidentCreatedEvent"] != 1 || kinds["ResidentUpdatedEvent"] != 2 || kinds["ResidentDeletedEvent"] != 2 {
		t.Fatalf("events %v", kinds)
	}
	commits, events = 0, 0
	res, err = Sync(ctx, src, st, w, m, nil)
	if err != nil || res.Changes() != 0 || commits != 0 {
		t.Fatalf("second sync: %+v %v, %d commits", res, err, commits)
	}
	rep, err := Compare(ctx, src, st, m, nil)
	if err != nil || !rep.Clean() {
		t.Fatalf("after sync: %+v %v", rep, err)
	}
}

// livePersons returns n person ids that are not marked for deletion.
func livePersons(t *testing.T, src *Source, n int) []string {
	rows, err := src.DB.Query("SELECT person_id FROM dm_persons WHERE marked_for_deletion = 'N' ORDER BY person_id LIMIT 4")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		out = append(out, id)
	}
	if len(out) < n {
		t.Fatal("too few live persons")
	}
	return out
}

// TestCheckReportsEverySourceProblem: a mapping that does not fit the live
// source stops with every problem, each with its line.
func TestCheckReportsEverySourceProblem(t *testing.T) {
	ctx := context.Background()
	src, _ := source(t, KindMariaDB)
	if _, err := src.DB.ExecContext(ctx, "CREATE TABLE no_pk (person_ref BIGINT, forename VARCHAR(50), surname VARCHAR(50))"); err != nil {
		t.Fatal(err)
	}
	if _, err := src.DB.ExecContext(ctx, "INSERT INTO no_pk VALUES (1, 'a', 'b'), (1, 'c', 'd'), (2, 'e', 'f')"); err != nil {
		t.Fatal(err)
	}
	bad := `domain: residents
entity: residents
source: {system: Mosaic, kind: mariadb, connection: PLINTH_LEGACY_CASE}
table: dm_persons
key: {columns: [first_name]}
where:
  - {column: deleted_flag, in: ["N"]}
fields:
  firstName: {column: first_nme}
  lastName: last_name
  dateOfBirth: {column: date_of_birth}
  restricted: {column: restricted}
children:
  phoneNumbers:
    table: dm_phones
    join: [person_id]
    fields:
      number: telephone_number
`
	m, err := Parse("bad.mapping.yaml", []byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Resolve(plinthtest.Domains(t)); err != nil {
		t.Fatal(err)
	}
	err = Check(ctx, src, m)
	if err == nil {
		t.Fatal("no problems found")
	}
	for _, want := range []string{
		"bad.mapping.yaml:5: residents's key mosaicId is an integer but key column first_name is varchar",
		"bad.mapping.yaml:5: table dm_persons's primary key (person_id) is not within the key columns (first_name)",
		"bad.mapping.yaml:7: where column deleted_flag is not a column of dm_persons",
		"bad.mapping.yaml:9: column first_nme is not a column of dm_persons",
		"bad.mapping.yaml:11: field dateOfBirth is date but date_of_birth is text: add a date transform",
		"bad.mapping.yaml:12: field restricted is boolean but restricted is text: decode it with a lookup",
		"bad.mapping.yaml:14: table dm_phones is not in the source",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%s", want, err)
		}
	}
	// A declared unique key is verified in the source.
	m2, err := Parse("nopk.mapping.yaml", []byte(`domain: residents
entity: residents
source: {system: Mosaic, kind: mariadb, connection: PLINTH_LEGACY_CASE}
table: no_pk
key: {columns: [person_ref], unique: true}
fields:
  firstName: forename
  lastName: surname
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Resolve(plinthtest.Domains(t)); err != nil {
		t.Fatal(err)
	}
	if err := Check(ctx, src, m2); err == nil || !strings.Contains(err.Error(), "nopk.mapping.yaml:5: key.unique: 1 value(s) of (person_ref) are held by more than one row of no_pk") {
		t.Fatalf("unique check: %v", err)
	}
}

// checkLoaded checks that loaded records carry what the source holds, not
// just keys: names, child collections, a derived UPRN.
func checkLoaded(t *testing.T, st plinth.Store, m *Mapping) {
	t.Helper()
	var names, addresses, phones, uprns int
	_, err := st.Scan(context.Background(), m.Entity, plinth.ScanQuery{}, func(r plinth.Record) error {
		if s, _ := r.Data["firstName"].(string); s != "" && s == strings.TrimSpace(s) {
			names++
		}
		if _, ok := r.Data["addresses"]; ok {
			addresses++
		}
		if _, ok := r.Data["phoneNumbers"]; ok {
			phones++
		}
		if _, ok := r.Data["uprn"]; ok {
			uprns++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := st.Count(context.Background(), m.Entity)
	if int64(names) != n || int64(addresses) != n || phones == 0 || uprns == 0 || phones == int(n) {
		t.Fatalf("of %d records: %d named, %d with addresses, %d with phones, %d with a UPRN", n, names, addresses, phones, uprns)
	}
}
