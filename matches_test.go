package plinth_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/sqlite"
)

// TestQueryMatchesAgreesWithTheStore: deciding a query in Go selects
// exactly the records the store's list selects.
func TestQueryMatchesAgreesWithTheStore(t *testing.T) {
	ctx := context.Background()
	ds := plinthtest.Domains(t)
	e := plinthtest.Entity(t, ds, "residents")
	st, err := sqlite.Open(ctx, t.TempDir()+"/m.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if err := st.BulkInsert(ctx, e, datasafety.NewGenerator(3).Records(e, 600)); err != nil {
		t.Fatal(err)
	}
	var all []plinth.Record
	if _, err := st.Scan(ctx, e, plinth.ScanQuery{}, func(r plinth.Record) error { all = append(all, r); return nil }); err != nil {
		t.Fatal(err)
	}
	sample := all[17].Data
	postcode := ""
	for _, r := range all {
		if as, _ := r.Data["addresses"].([]any); len(as) > 1 {
			if postcode, _ = as[1].(map[string]any)["postCode"].(string); postcode != "" {
				break
			}
		}
	}
	queries := []string{
		fmt.Sprintf("mosaic_id=%v", sample["mosaicId"]),
		"first_name=" + url.QueryEscape(string([]rune(fmt.Sprint(sample["firstName"]))[:2])),
		"last_name=son",
		"first_name=a",
		"last_name=" + url.QueryEscape(string([]rune(fmt.Sprint(sample["lastName"]))[1:4])),
		"date_of_birth_from=1960-01-01&date_of_birth_to=1975-12-31",
		fmt.Sprintf("date_of_birth=%v", sample["dateOfBirth"]),
		"postcode=" + url.QueryEscape(postcode),
		"last_name=a&date_of_birth_from=1990-01-01",
	}
	for _, raw := range queries {
		values, _ := url.ParseQuery(raw)
		q, err := e.ParseQuery(values)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		var byStore, byGo []string
		if _, err := st.Scan(ctx, e, plinth.ScanQuery{Conditions: q.Conditions}, func(r plinth.Record) error {
			byStore = append(byStore, plinth.KeyString(e.KeyOf(r)))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, r := range all {
			if q.Matches(r.Data) {
				byGo = append(byGo, plinth.KeyString(e.KeyOf(r)))
			}
		}
		if len(byStore) == 0 || !slices.Equal(byStore, byGo) {
			t.Errorf("%s: the store selects %d %v, Matches %d %v", raw, len(byStore), byStore, len(byGo), byGo)
		}
	}
}
