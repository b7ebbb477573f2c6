package legacy

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/plinthtest/mariadbtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/spec"
	"github.com/plinth-data/plinth/sqlite"
)

// templateChange is a source change and how many records it touches (a
// query that counts them).
type templateChange struct {
	what, change, count string
	// row is the changed row as change capture reads it, a query of the
	// columns that name its records.
	row string
	// table is the changed table.
	table string
	// pick, when set, reads the id the change (a format) is made to.
	pick string
}

// templateCases are the shipped templates with changes at every depth:
// a root row, a direct child, a lookup, and rows one and two joins down.
var templateCases = []struct {
	system, mapping string
	// nested says a loaded record holds data from a deep join.
	nested  func(data map[string]any) bool
	changes []templateChange
}{
	{"benefits", "benefits.academy.mapping.yaml", nil, []templateChange{
		{"a claim's status, a lookup", "UPDATE hbclaim SET status_ind = CASE WHEN status_ind = 4 THEN 1 ELSE 4 END WHERE claim_id = 10000002",
			"SELECT COUNT(*) FROM hbmember WHERE claim_id = 10000002", "SELECT claim_id FROM hbclaim WHERE claim_id = 10000002", "hbclaim", ""},
	}},
	{"housing", "housing.universal-housing.mapping.yaml", func(d map[string]any) bool {
		return strings.Contains(fmt.Sprint(d["householdMembers"]), "phoneNumbers:[map[number:07")
	}, []templateChange{
		{"a member", "UPDATE member SET surname = 'Changed' WHERE house_ref = '0000003' AND person_no = 1",
			"SELECT 1", "SELECT house_ref FROM member WHERE house_ref = '0000003' AND person_no = 1", "member", ""},
		// Two joins down: CCPhone, through CCContactLink, of a member.
		{"a member's phone", "UPDATE CCPhone SET PhoneNo = '07999 000111' WHERE PhoneID = %v",
			"SELECT 1", "SELECT ContactNo AS contactno FROM CCPhone WHERE PhoneNo = '07999 000111'", "ccphone",
			"SELECT MIN(PhoneID) FROM CCContactLink l JOIN CCPhone p ON p.ContactNo = l.ContactNo WHERE l.Key1 = '0000005'"},
		{"a member's email", "UPDATE CCEmailAddress SET Email = 'new.address@example.org' WHERE EmailID = %v",
			"SELECT 1", "SELECT ContactNo AS contactno FROM CCEmailAddress WHERE Email = 'new.address@example.org'", "ccemailaddress",
			"SELECT MIN(EmailID) FROM CCContactLink l JOIN CCEmailAddress e ON e.ContactNo = l.ContactNo WHERE l.Key1 IS NOT NULL AND e.Email IS NOT NULL"},
	}},
	{"benefits", "benefits.academy-council-tax.mapping.yaml", func(d map[string]any) bool {
		return strings.Contains(fmt.Sprint(d["occupations"]), "addressLine1:")
	}, []templateChange{
		{"an occupation", "UPDATE ctoccupation SET vacation_date = '2024-03-31' WHERE account_ref = 60000004",
			"SELECT 1", "SELECT DISTINCT account_ref FROM ctoccupation WHERE account_ref = 60000004", "ctoccupation", ""},
		// One join down from the occupations: every account that occupied
		// the property (the fixture shares some between two accounts).
		{"an occupied property", "UPDATE ctproperty SET uprn = '100023456789' WHERE property_ref = '%v'",
			"SELECT COUNT(*) FROM ctoccupation WHERE property_ref = (SELECT property_ref FROM ctproperty WHERE uprn = '100023456789')",
			"SELECT property_ref FROM ctproperty WHERE uprn = '100023456789'", "ctproperty",
			"SELECT MAX(property_ref) FROM (SELECT property_ref FROM ctoccupation GROUP BY property_ref HAVING COUNT(*) > 1) shared"},
	}},
}

// templateSource makes a template's fixture in a fresh database of the kind.
func templateSource(t testing.TB, kind Kind, system string) *Source {
	t.Helper()
	ctx := context.Background()
	url := mariadbtest.Database(t)
	if kind == KindPostgres {
		url = pgtest.Database(t)
	}
	src, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	if err := Fixture(ctx, src, FixtureOptions{System: system, Rows: 200, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	return src
}

// templateMapping loads a shipped template mapping, resolved and checked.
func templateMapping(t testing.TB, src *Source, name string) (*Mapping, []*plinth.Domain) {
	t.Helper()
	ds, err := spec.LoadFS(domains.FS, "templates")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := domains.FS.ReadFile("templates/" + name)
	m, err := Parse(name, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Resolve(ds); err != nil {
		t.Fatal(err)
	}
	if err := Check(context.Background(), src, m); err != nil {
		t.Fatal(err)
	}
	return m, ds
}

func templateTarget(t *testing.T, ds []*plinth.Domain) plinth.Store {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	return st
}

// queryRow reads one row of the source as change capture gives it (lower
// case column names, the source's values).
func queryRow(t *testing.T, src *Source, q string) Row {
	t.Helper()
	snap, err := src.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	rows, err := snap.Query(context.Background(), q)
	if err != nil || len(rows) != 1 {
		t.Fatalf("%s: %v %v", q, rows, err)
	}
	return rows[0]
}

// TestTemplatesLoadCleanAndFollowJoins: the benefits and housing templates
// load their fixtures (MariaDB and PostgreSQL) with no rejection and a
// clean report, with data from their deepest joins; a change at any depth
// (a root row, a lookup, a phone two joins down, a property one join below
// the occupations) is applied by sync to exactly the records that hold
// it, and change capture names the same records from the changed row.
func TestTemplatesLoadCleanAndFollowJoins(t *testing.T) {
	for _, kind := range []Kind{KindMariaDB, KindPostgres} {
		for _, tc := range templateCases {
			t.Run(string(kind)+"/"+tc.mapping, func(t *testing.T) {
				ctx := context.Background()
				src := templateSource(t, kind, tc.system)
				m, ds := templateMapping(t, src, tc.mapping)
				st := templateTarget(t, ds)
				res, err := Full(ctx, src, st, m, FullOptions{Batch: 64})
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Rejected) > 0 || res.Loaded == 0 {
					t.Fatalf("%+v; first rejection: %v", res, res.Rejected[:min(1, len(res.Rejected))])
				}
				rep, err := Compare(ctx, src, st, m, nil)
				if err != nil || !rep.Clean() {
					t.Fatalf("report %+v %v", rep, err)
				}
				if tc.nested != nil {
					found := 0
					_, _ = st.Scan(ctx, m.Entity, plinth.ScanQuery{}, func(r plinth.Record) error {
						if tc.nested(r.Data) {
							found++
						}
						return nil
					})
					if found == 0 {
						t.Fatal("no record holds data from the deep joins")
					}
				}
				w, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: st, Environment: "development", Events: true, Audit: true})
				if err != nil {
					t.Fatal(err)
				}
				for _, ch := range tc.changes {
					if ch.pick != "" {
						var id string
						if err := src.DB.QueryRow(ch.pick).Scan(&id); err != nil {
							t.Fatal(ch.what, err)
						}
						ch.change = fmt.Sprintf(ch.change, id)
					}
					if _, err := src.DB.Exec(ch.change); err != nil {
						t.Fatal(ch.what, err)
					}
					var want int
					if err := src.DB.QueryRow(ch.count).Scan(&want); err != nil || want == 0 {
						t.Fatalf("%s: %d records to change %v", ch.what, want, err)
					}
					sr, err := Sync(ctx, src, st, w, m, nil)
					if err != nil || sr.Updated != want || sr.Changes() != want {
						t.Fatalf("%s: sync %+v %v, want %d updated", ch.what, sr, err, want)
					}
					// Change capture names the same records from the row.
					keys, err := m.rootKeys(ctx, src, m.ParentsOf([]Change{{Table: ch.table, After: queryRow(t, src, ch.row)}}))
					if err != nil || len(keys) != want {
						t.Fatalf("%s: records named by the change: %v %v, want %d", ch.what, keys, err, want)
					}
				}
				rep, err = Compare(ctx, src, st, m, nil)
				if err != nil || !rep.Clean() {
					t.Fatalf("after the changes: %+v %v", rep, err)
				}
			})
		}
	}
}

// TestCDCDeepChangeReemitsParent: change capture of one CCPhone row (two
// joins below the tenancy, through the member's contact link) writes
// exactly one update of its tenancy, whose new data holds the new number;
// deleting the member's contact link takes the number away again.
func TestCDCDeepChangeReemitsParent(t *testing.T) {
	for _, kind := range []Kind{KindMariaDB, KindPostgres} {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			src := templateSource(t, kind, "housing")
			m, ds := templateMapping(t, src, "housing.universal-housing.mapping.yaml")
			st := templateTarget(t, ds)
			w, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: st, Environment: "development", Events: true, Audit: true})
			if err != nil {
				t.Fatal(err)
			}
			capture := &scripted{}
			run := func() {
				t.Helper()
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- RunCDC(cctx, src, st, w, m, capture, CDCOptions{}) }()
				for position(t, st, m) != strconv.Itoa(len(capture.batches)) {
					select {
					case err := <-done:
						t.Fatalf("change capture stopped: %v", err)
					case <-time.After(20 * time.Millisecond):
					}
				}
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			run() // the initial load
			// A phone of the first member of household 0000007, by its link.
			link := queryRow(t, src, "SELECT MIN(ContactNo) AS contactno FROM CCContactLink WHERE Key1 = '0000007' AND Key2 = '1'")
			phone := Row{"phoneid": int64(990001), "contactno": link["contactno"], "phoneno": "07999 123456", "phonetype": "Mobile"}
			if _, err := src.DB.ExecContext(ctx, fmt.Sprintf("INSERT INTO CCPhone (PhoneID, ContactNo, PhoneNo, PhoneType) VALUES (990001, %v, '07999 123456', 'Mobile')", link["contactno"])); err != nil {
				t.Fatal(err)
			}
			capture.batches = append(capture.batches, Batch{Changes: []Change{{Table: "ccphone", After: phone}}})
			run()
			events := tenancyEvents(t, st)
			if len(events) != 1 || events[0].key != "0000007/01" || !strings.Contains(events[0].newData, "07999 123456") {
				t.Fatalf("events %+v, want one update of tenancy 0000007/01 with the new number", events)
			}
			// The link goes: the number is no longer the member's.
			if _, err := src.DB.ExecContext(ctx, fmt.Sprintf("DELETE FROM CCContactLink WHERE ContactNo = %v", link["contactno"])); err != nil {
				t.Fatal(err)
			}
			capture.batches = append(capture.batches, Batch{Changes: []Change{{Table: "cccontactlink",
				Before: Row{"contactno": link["contactno"], "key1": "0000007", "key2": "1"}}}})
			run()
			events = tenancyEvents(t, st)
			if len(events) != 2 || events[1].key != "0000007/01" || strings.Contains(events[1].state, "07999 123456") {
				t.Fatalf("events %+v, want a second update of tenancy 0000007/01 without the number", events)
			}
		})
	}
}

type tenancyEvent struct{ kind, key, newData, state string }

// tenancyEvents lists the events written, in order.
func tenancyEvents(t *testing.T, st plinth.Store) []tenancyEvent {
	t.Helper()
	pending, err := st.(plinth.OutboxStore).PendingEvents(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []tenancyEvent
	for _, p := range pending {
		var ev struct {
			EventType, EntityID string
			EventData           struct{ NewData json.RawMessage }
			State               json.RawMessage
		}
		_ = json.Unmarshal(p.Payload, &ev)
		out = append(out, tenancyEvent{ev.EventType, ev.EntityID, string(ev.EventData.NewData), string(ev.State)})
	}
	return out
}
