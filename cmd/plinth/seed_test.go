package main

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/spec"
)

// seeded reads every record of every shipped entity from the SQLite store
// plinth made in dir, by plural and key.
func seeded(t *testing.T, dir string) map[string]map[any]map[string]any {
	t.Helper()
	ctx := context.Background()
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	st, err := openStore(ctx, "sqlite://"+filepath.Join(dir, "plinth-data", "plinth.db"), ds)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := map[string]map[any]map[string]any{}
	for _, d := range ds {
		for _, e := range d.Entities {
			out[e.Plural] = map[any]map[string]any{}
			if _, err := st.Scan(ctx, e, plinth.ScanQuery{}, func(r plinth.Record) error {
				out[e.Plural][r.Data[e.Key.Name]] = r.Data
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// TestSeedJoinsAndRepeats: plinth seed fills every entity; every contact's
// residentId is a resident's mosaicId; the same --seed gives the same
// records in another store; seeding again appends the next records.
func TestSeedJoinsAndRepeats(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if out, err := run(t, dir, nil, "seed", "-n", "1500", "--seed", "42"); err != nil {
			t.Fatalf("seed: %v\n%s", err, out)
		}
	}
	da, db := seeded(t, a), seeded(t, b)
	if len(da["residents"]) != 1500 || len(da["contacts"]) != 1500 {
		t.Fatalf("seeded %d residents, %d contacts", len(da["residents"]), len(da["contacts"]))
	}
	if !reflect.DeepEqual(da, db) {
		t.Error("the same --seed gave different records")
	}
	refs := 0
	for _, c := range da["contacts"] {
		if id, ok := c["residentId"]; ok {
			refs++
			if da["residents"][id] == nil {
				t.Fatalf("contact residentId %v is no resident", id)
			}
		}
	}
	if refs < 1000 {
		t.Errorf("only %d contacts name a resident", refs)
	}
	if out, err := run(t, a, nil, "seed", "-n", "200", "--seed", "42", "--entity", "residents"); err != nil {
		t.Fatalf("seeding again: %v\n%s", err, out)
	}
	again := seeded(t, a)
	if len(again["residents"]) != 1700 {
		t.Errorf("%d residents after seeding 200 more", len(again["residents"]))
	}
	for k, v := range da["residents"] {
		if !reflect.DeepEqual(again["residents"][k], v) {
			t.Fatalf("resident %v changed when seeding again", k)
		}
	}
}
