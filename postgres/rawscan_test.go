package postgres

import (
	"bytes"
	"context"
	"testing"

	"github.com/plinth-data/plinth"
)

// TestScanDecodesBinaryRows: a scan decodes rows from their binary form
// (the fast path is taken) into exactly the records Get reads through pgx.
func TestScanDecodesBinaryRows(t *testing.T) {
	ds := loadDomains(t)
	s, _ := openStore(t, ds)
	e := entity(t, ds, "residents")
	ctx := context.Background()
	docs := make([]map[string]any, 50)
	for i := range docs {
		docs[i] = resident(t, e, i)
	}
	if err := s.BulkInsert(ctx, e, docs); err != nil {
		t.Fatal(err)
	}
	for _, nested := range []bool{false, true} {
		before := rawFetches.Load()
		n := 0
		if _, err := s.Scan(ctx, e, plinth.ScanQuery{NestedJSON: nested}, func(r plinth.Record) error {
			n++
			got, err := s.Get(ctx, e, e.KeyOf(r))
			if err != nil {
				return err
			}
			if a, b := e.MarshalRecord(r), e.MarshalRecord(got); !bytes.Equal(a, b) {
				t.Errorf("scan (nested JSON %v) reads\n%s\nGet reads\n%s", nested, a, b)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != len(docs) {
			t.Errorf("scan gave %d records, want %d", n, len(docs))
		}
		if rawFetches.Load() == before {
			t.Errorf("the scan did not decode the binary form of its rows")
		}
	}
}
