package legacy

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/plinthtest/mariadbtest"
	"github.com/plinth-data/plinth/spec"
	"github.com/plinth-data/plinth/sqlite"
)

// TestTemplatesLoadCleanAndFollowLookups: the benefits and housing
// templates load their fixtures with no rejection and a clean report; a
// change to a row the record is decoded through (a claim's status, a
// household member) is applied by sync to every record that holds it.
func TestTemplatesLoadCleanAndFollowLookups(t *testing.T) {
	ds, err := spec.LoadFS(domains.FS, "templates")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		system, mapping, change string
		updated                 int
	}{
		{"benefits", "benefits.academy.mapping.yaml", "UPDATE hbclaim SET status_ind = 4 WHERE claim_id = 10000002 AND status_ind <> 4", -1},
		{"housing", "housing.universal-housing.mapping.yaml", "UPDATE member SET surname = 'Changed' WHERE house_ref = '0000003' AND person_no = 1", 1},
		{"benefits", "benefits.academy-council-tax.mapping.yaml", "UPDATE ctoccupation SET vacation_date = '2024-03-31' WHERE account_ref = 60000004", 1},
	} {
		t.Run(tc.mapping, func(t *testing.T) {
			ctx := context.Background()
			src, err := Open(ctx, mariadbtest.Database(t))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			if err := Fixture(ctx, src, FixtureOptions{System: tc.system, Rows: 200, Seed: 5}); err != nil {
				t.Fatal(err)
			}
			data, _ := domains.FS.ReadFile("templates/" + tc.mapping)
			m, err := Parse(tc.mapping, data)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Resolve(ds); err != nil {
				t.Fatal(err)
			}
			if err := Check(ctx, src, m); err != nil {
				t.Fatal(err)
			}
			st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if err := st.Prepare(ctx, ds); err != nil {
				t.Fatal(err)
			}
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
			var sample plinth.Record
			_, _ = st.Scan(ctx, m.Entity, plinth.ScanQuery{}, func(r plinth.Record) error {
				if sample.Data == nil {
					sample = r
				}
				return nil
			})
			t.Logf("a %s record: %v", m.Plural, sample.Data)
			want := tc.updated
			if want < 0 { // every member of the claim
				_ = src.DB.QueryRow("SELECT COUNT(*) FROM hbmember WHERE claim_id = 10000002").Scan(&want)
			}
			if _, err := src.DB.Exec(tc.change); err != nil {
				t.Fatal(err)
			}
			w, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: st, Environment: "development", Events: true, Audit: true})
			if err != nil {
				t.Fatal(err)
			}
			sr, err := Sync(ctx, src, st, w, m, nil)
			if err != nil || sr.Updated != want || sr.Changes() != want {
				t.Fatalf("sync %+v %v, want %d updated", sr, err, want)
			}
			// Change capture names the same records from the changed row.
			changed := map[string]string{"benefits.academy.mapping.yaml": "hbclaim", "housing.universal-housing.mapping.yaml": "member",
				"benefits.academy-council-tax.mapping.yaml": "ctoccupation"}[tc.mapping]
			refs := m.ParentsOf([]Change{{Table: changed,
				After: Row{"claim_id": int64(10000002), "house_ref": "0000003", "person_no": int64(1), "account_ref": int64(60000004)}}})
			keys, err := m.rootKeys(ctx, src, refs)
			if err != nil || len(keys) != want {
				t.Fatalf("records named by the change: %v %v", keys, err)
			}
		})
	}
}
