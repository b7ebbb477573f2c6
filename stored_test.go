package plinth_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/plinth-data/plinth/datasafety"
)

// TestDecodeStoredRoundTrip checks that nested values written as JSON read
// back to exactly the canonical values they were.
func TestDecodeStoredRoundTrip(t *testing.T) {
	e := resident(t)
	g := datasafety.NewGenerator(3)
	for i := 0; i < 300; i++ {
		data, err := e.Validate(g.Record(e), true)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"addresses", "phoneNumbers", "otherNames"} {
			v, ok := data[name]
			if !ok {
				continue
			}
			raw, _ := json.Marshal(v)
			got, err := e.Field(name).DecodeStored(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, v) {
				t.Fatalf("%s: %#v came back as %#v", name, v, got)
			}
		}
	}
	big, err := e.Field("addresses").DecodeStored([]byte(`[{"addressLine1":"x","gone":{"a":[1,2]},"isContactAddress":true}]`))
	if err != nil || !reflect.DeepEqual(big, []any{map[string]any{"addressLine1": "x", "isContactAddress": true}}) {
		t.Fatalf("unknown member not skipped: %#v %v", big, err)
	}
	if _, err := e.Field("addresses").DecodeStored([]byte(`[{"addressLine1":`)); err == nil {
		t.Fatal("truncated JSON decoded")
	}
}

func BenchmarkDecodeStored(b *testing.B) {
	e := residentB(b)
	raw := []byte(`[{"addressLine1":"11 Dummy Crescent","addressLine2":"Haggerston","addressLine3":"Birmingham","postCode":"M2 5EL","uprn":"100035529097","startDate":"2007-10-01","endDate":"2011-10-16","isContactAddress":false,"isDisplayAddress":false},{"addressLine1":"3 Dummy Road","postCode":"E8 1DY"}]`)
	f := e.Field("addresses")
	b.Run("jsontext", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := f.DecodeStored(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
