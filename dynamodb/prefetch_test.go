package dynamodb_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/dynamodb"
	"github.com/plinth-data/plinth/plinthtest/ddbtest"
	"github.com/plinth-data/plinth/storetest"
)

// TestScanPrefetch: with ?scan_prefetch=true a scan reads the shards
// concurrently, a page ahead, and sends exactly what it sends without: every
// record once, in key order, with the same Queries; it stops on fn's error
// and on a cancelled context.
func TestScanPrefetch(t *testing.T) {
	defer dynamodb.SetScanPage(7)() // 120 records, 4 shards: several pages per shard
	ds := storetest.Domains(t)
	url := ddbtest.URL(t)
	plain, err := dynamodb.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.Prepare(t.Context(), ds); err != nil {
		t.Fatal(err)
	}
	people := entity(t, ds, "people")
	var data []map[string]any
	for i := range 120 {
		d, err := people.Validate(map[string]any{"firstName": fmt.Sprint("P", i), "lastName": "Scan"}, true)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, d)
	}
	if err := plain.BulkInsert(t.Context(), people, data); err != nil {
		t.Fatal(err)
	}
	ahead, err := dynamodb.Open(t.Context(), url+"&scan_prefetch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer ahead.Close()
	if err := ahead.Prepare(t.Context(), ds); err != nil {
		t.Fatal(err)
	}
	scan := func(s *dynamodb.Store) ([]string, int64) {
		before := s.Calls()["Query"].Calls
		var keys []string
		_, err := s.Scan(t.Context(), people, plinth.ScanQuery{}, func(r plinth.Record) error {
			keys = append(keys, plinth.KeyString(people.KeyOf(r)))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return keys, s.Calls()["Query"].Calls - before
	}
	want, wantCalls := scan(plain)
	got, calls := scan(ahead)
	if len(want) != 120 || !slices.Equal(got, want) || calls != wantCalls || calls < 8 {
		t.Fatalf("prefetching scan: %d records in %d Queries; without: %d in %d", len(got), calls, len(want), wantCalls)
	}
	if !slices.IsSortedFunc(got, func(a, b string) int { return cmpKey(a, b) }) {
		t.Fatalf("not in key order: %v", got)
	}
	stop := errors.New("stop")
	n := 0
	_, err = ahead.Scan(t.Context(), people, plinth.ScanQuery{}, func(plinth.Record) error {
		if n++; n == 37 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 37 {
		t.Fatalf("fn failing at 37: %v after %d", err, n)
	}
	ctx, cancel := context.WithCancel(t.Context())
	n = 0
	_, err = ahead.Scan(ctx, people, plinth.ScanQuery{}, func(plinth.Record) error {
		if n++; n == 20 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 20 {
		t.Fatalf("cancelled at 20: %v after %d", err, n)
	}
}

// cmpKey orders integer keys given as text.
func cmpKey(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
