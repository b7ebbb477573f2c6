package parquet

import (
	"bytes"
	"testing"

	pq "github.com/parquet-go/parquet-go"

	"github.com/plinth-data/plinth/internal/jsonscan"
	rt "github.com/plinth-data/plinth/report/reporttest"
)

// A record given as the API's JSON maps to exactly the values of the
// record decoded, for every type and the awkward values of the report
// tests.
func TestJSONColumnsMatchRecordColumns(t *testing.T) {
	re, rrecs := rt.Residents(t, 300)
	se, srecs := rt.Sample(t, 300)
	for name, tc := range map[string]struct {
		m    *Mapping
		json func(i int) []byte
		n    int
	}{
		"residents": {NewMapping(re), func(i int) []byte { return re.MarshalRecord(rrecs[i]) }, len(rrecs)},
		"samples":   {NewMapping(se), func(i int) []byte { return se.MarshalRecord(srecs[i]) }, len(srecs)},
		// Members in another order than the columns': looked up by name.
		"residents reversed": {NewMapping(re), func(i int) []byte { return reversed(re.MarshalRecord(rrecs[i])) }, len(rrecs)},
	} {
		recs := rrecs
		if name == "samples" {
			recs = srecs
		}
		for i := 0; i < tc.n; i++ {
			want, err := tc.m.appendColumns(nil, recs[i], 3)
			if err != nil {
				t.Fatal(err)
			}
			got, ok, err := tc.m.appendJSON(nil, tc.json(i), 3)
			if err != nil || !ok {
				t.Fatalf("%s %d: %v %v", name, i, ok, err)
			}
			if len(got) != len(want) {
				t.Fatalf("%s %d: %d values, want %d", name, i, len(got), len(want))
			}
			for j := range want {
				if !pq.Equal(got[j], want[j]) || got[j].Column() != want[j].Column() || got[j].DefinitionLevel() != want[j].DefinitionLevel() {
					t.Fatalf("%s %d column %d: %v, want %v", name, i, j, got[j], want[j])
				}
			}
		}
	}
}

// reversed returns a JSON object with its members in reverse order.
func reversed(raw []byte) []byte {
	var members [][]byte
	jsonscan.Members(raw, func(name, value []byte) bool {
		members = append([][]byte{append([]byte(`"`+string(name)+`":`), value...)}, members...)
		return true
	})
	return append(append([]byte("{"), bytes.Join(members, []byte(","))...), '}')
}
