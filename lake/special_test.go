package lake_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/lake"
	"github.com/plinth-data/plinth/plinthtest"
	rt "github.com/plinth-data/plinth/report/reporttest"
	"github.com/plinth-data/plinth/spec"
	"github.com/plinth-data/plinth/sqlite"
)

const nestedSpecialSpec = `domain: clinic
description: Special-category members nested in personal fields.
owner:
  serviceArea: Test
  productOwner: test@example.org
  cloudAccount: test
sourceSystem: Test
entities:
  - name: patient
    plural: patients
    description: A patient.
    key:
      name: id
      type: uuid
      generated: true
      pii: none
    fields:
      - name: name
        type: string
        pii: personal
      - name: health
        type: object
        pii: personal
        fields:
          - name: gp
            type: string
            pii: personal
          - name: condition
            type: string
            pii: special
      - name: visits
        type: array
        pii: personal
        items:
          type: object
          fields:
            - name: place
              type: string
              pii: personal
            - name: faith
              type: string
              pii: special
`

// Special-category members nested in object and array fields stay out of
// the main datasets — events (state columns, oldData, newData) and
// snapshots — while their personal siblings land; a domain that opts in
// finds them in its special-category dataset.
func TestNestedSpecialCategory(t *testing.T) {
	ctx := context.Background()
	ds, err := spec.LoadFS(fstest.MapFS{"clinic.yaml": {Data: []byte(nestedSpecialSpec)}}, ".")
	if err != nil {
		t.Fatal(err)
	}
	e := plinthtest.Entity(t, ds, "patients")
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	var recs []plinth.Record
	for i := range 10 {
		doc := map[string]any{"name": fmt.Sprintf("name-%d", i),
			"health": map[string]any{"gp": fmt.Sprintf("gp-%d", i), "condition": fmt.Sprintf("SECRET-condition-%d", i)},
			"visits": []any{map[string]any{"place": fmt.Sprintf("place-%d", i), "faith": fmt.Sprintf("SECRET-faith-%d", i)}}}
		data, err := e.Validate(doc, true)
		if err != nil {
			t.Fatal(err)
		}
		err = st.Write(ctx, func(tx plinth.Tx) error {
			rec, err := tx.Insert(ctx, e, data)
			recs = append(recs, rec)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	b := newBus(t, e.Domain)
	b.publish(t, e, recs, time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	root := t.TempDir()
	land(t, b, e.Domain, lake.Dir(root), lake.Config{FlushInterval: 200 * time.Millisecond, Special: true})
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if _, err := lake.Snapshot(ctx, st, e, lake.Dir(root), day, lake.SnapshotOptions{Special: true}); err != nil {
		t.Fatal(err)
	}

	text := func(glob string) string {
		res := rt.DuckDB(t, "SELECT * FROM read_parquet("+rt.SQLString(filepath.Join(root, glob))+", union_by_name = true)")[0]
		var b strings.Builder
		for _, r := range res.Rows {
			fmt.Fprintln(&b, r...)
		}
		return b.String()
	}
	for _, glob := range []string{"clinic/patients/events/**/*.parquet", "clinic/patients/snapshot/**/*.parquet"} {
		got := text(glob)
		if strings.Contains(got, "SECRET") {
			t.Fatalf("%s holds a nested special-category value:\n%s", glob, got)
		}
		for _, want := range []string{"gp-3", "place-3", "name-3"} {
			if !strings.Contains(got, want) {
				t.Fatalf("%s lacks the personal value %s:\n%s", glob, want, got)
			}
		}
	}
	for _, glob := range []string{"_special/clinic/patients/events/**/*.parquet", "_special/clinic/patients/snapshot/**/*.parquet"} {
		got := text(glob)
		if !strings.Contains(got, "SECRET-condition-3") || !strings.Contains(got, "SECRET-faith-3") {
			t.Fatalf("the special-category dataset %s lacks the nested special values:\n%s", glob, got)
		}
	}
}
