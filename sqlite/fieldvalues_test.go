package sqlite_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
)

// A scan asked for FieldValues gives records in field order (Values, no
// Data), written out exactly as the same records read by Get.
func TestScanFieldValues(t *testing.T) {
	ds, e := residentsEntity(t)
	s := openAt(t, filepath.Join(t.TempDir(), "plinth.db"))
	prepare(t, s, ds)
	ctx := context.Background()
	if err := s.BulkInsert(ctx, e, datasafety.NewGenerator(3).Records(e, 40)); err != nil {
		t.Fatal(err)
	}
	n := 0
	q := plinth.ScanQuery{NestedJSON: true, ReuseData: true, FieldValues: true}
	if _, err := s.Scan(ctx, e, q, func(r plinth.Record) error {
		n++
		if r.Values == nil || r.Data != nil {
			t.Fatalf("FieldValues gave Values %v, Data %v", r.Values != nil, r.Data != nil)
		}
		got, err := s.Get(ctx, e, e.KeyOf(r))
		if err != nil {
			return err
		}
		if a, b := e.MarshalRecord(r), e.MarshalRecord(got); !bytes.Equal(a, b) {
			t.Errorf("scan reads\n%s\nGet reads\n%s", a, b)
		}
		return nil
	}); err != nil || n != 40 {
		t.Fatalf("scan: %v after %d records", err, n)
	}
}
