package postgres

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/storetest"
)

// TestBulkLoadStoresWhatInsertStores: the binary COPY encoder writes every
// column (every field type, the folded and values shadow columns, nulls,
// values that are not canonical) exactly as Insert does.
func TestBulkLoadStoresWhatInsertStores(t *testing.T) {
	ctx := context.Background()
	ds := storetest.Domains(t)
	s, _ := openStore(t, ds)
	e := entity(t, ds, "people")
	docs := []map[string]any{
		{
			"firstName": "Zoë 😀", "lastName": "O'Brien-Łukasz 李小龍 \"quoted\" back\\slash\ttab\nline",
			"status": "active", "age": int64(math.MaxInt64), "score": 6.02214076e23, "verified": false,
			"dateOfBirth": "1815-12-10", "lastSeen": "2024-05-01T09:30:00.123456Z",
			"externalId": "3f2b8c1e-7d4a-4f0e-9b1a-2c6d8e0f1a2b", "notes": strings.Repeat("abcdefghij", 30),
			"profile": map[string]any{"nickname": "Zoe\u0301", "height": 1.62, "visits": int64(9007199254740993),
				"preferences": map[string]any{"newsletter": false, "channels": []any{"email", "東京", "<b>&</b>"}}},
			"addresses": []any{
				map[string]any{"line1": "Flat 1, 10 Downing Street", "postCode": "SW1A 2AA", "since": "2020-02-29", "current": true, "rooms": int64(3)},
				map[string]any{"line1": "  Ulica   ŁÓDZKA 5 ", "postCode": "E8 1DY", "current": false, "rooms": int64(math.MinInt64)},
			},
			"tags": []any{"a", "ß", "", "🏳️‍🌈"},
		},
		{"firstName": "  Ann  Lee ", "lastName": "SMITH", "dateOfBirth": "0001-01-01", "lastSeen": "1969-12-31T23:59:59.999999Z",
			"score": -0.0, "verified": true, "addresses": []any{}, "tags": []any{}},
		// Not canonical: encode makes them so, on both paths.
		{"firstName": "Bo", "lastName": "Li", "age": 42, "score": int64(7), "dateOfBirth": "2000-02-29"},
		{"firstName": "Max", "lastName": "Mustermann", "dateOfBirth": "9999-12-31", "lastSeen": "0001-01-01T00:00:00Z",
			"addresses": []any{map[string]any{"line1": "1 Road"}}},
	}
	insert := func(d map[string]any) (plinth.Record, error) {
		var r plinth.Record
		err := s.Write(ctx, func(tx plinth.Tx) error {
			var err error
			r, err = tx.Insert(ctx, e, d)
			return err
		})
		return r, err
	}
	for _, d := range docs {
		if _, err := insert(d); err != nil {
			t.Fatalf("insert: %v", err)
		}
	}
	loaded := make([]map[string]any, len(docs))
	for i, d := range docs {
		loaded[i] = withValue(d, "personId", int64(100+i))
	}
	if err := s.BulkInsert(ctx, e, loaded); err != nil {
		t.Fatalf("bulk insert: %v", err)
	}
	tl := s.layout(e)
	var cols []string
	for _, c := range tl.cols[1 : len(tl.cols)-3] {
		cols = append(cols, "coalesce("+c.ident()+"::text, '<null>')")
	}
	rows := func(where string) []string {
		r, err := s.pool.Query(ctx, "SELECT concat_ws(' | ', "+strings.Join(cols, ", ")+") FROM "+tl.ident+" WHERE "+where+" ORDER BY "+tl.key.ident())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for r.Next() {
			var s string
			if err := r.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	inserted, bulk := rows("person_id < 100"), rows("person_id >= 100")
	if len(inserted) != len(docs) || len(bulk) != len(docs) {
		t.Fatalf("%d inserted and %d bulk-loaded rows, want %d each", len(inserted), len(bulk), len(docs))
	}
	for i := range inserted {
		if inserted[i] != bulk[i] {
			t.Errorf("record %d:\ninsert stored %s\nbulk stored   %s", i, inserted[i], bulk[i])
		}
	}
	// The identity moved past the explicit keys.
	r, err := insert(map[string]any{"firstName": "Next", "lastName": "One"})
	if err != nil || r.Data["personId"].(int64) <= 103 {
		t.Fatalf("insert after the bulk load: key %v, %v", r.Data["personId"], err)
	}
}

// TestBulkLoadRefusesNULAndWritesNothing: a value PostgreSQL cannot store
// fails the whole batch with a validation error naming the field.
func TestBulkLoadRefusesNUL(t *testing.T) {
	ctx := context.Background()
	ds := storetest.Domains(t)
	s, _ := openStore(t, ds)
	e := entity(t, ds, "people")
	for _, bad := range []map[string]any{
		{"firstName": "A\x00B", "lastName": "X"},
		{"firstName": "A", "lastName": "X", "tags": []any{"a\x00"}},
	} {
		docs := []map[string]any{{"firstName": "Fine", "lastName": "Row"}, bad}
		_, err := s.BulkLoad(ctx, e, docs, plinth.BulkOptions{})
		var ve *plinth.ValidationError
		if !errors.As(err, &ve) || len(ve.Errors) != 1 || !strings.Contains(err.Error(), "NUL") {
			t.Fatalf("bulk load of %v: %v, want a validation error about NUL", bad, err)
		}
		if n, err := s.Count(ctx, e); err != nil || n != 0 {
			t.Fatalf("%d records after the failed load (%v), want none", n, err)
		}
	}
}
