package plinth_test

import (
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
)

// BenchmarkStoredAddresses: a resident's addresses as PostgreSQL's jsonb
// gives them back (keys reordered), to the API's JSON text.
func BenchmarkStoredAddresses(b *testing.B) {
	var f *plinth.Field
	for _, d := range plinthtest.Domains(b) {
		for _, e := range d.Entities {
			if e.Plural == "residents" {
				f = e.Field("addresses")
			}
		}
	}
	raw := []byte(`[{"uprn": "100081439524", "endDate": "2013-04-18", "postCode": "B13 7DB", "startDate": "2007-10-23", "addressLine1": "74 Dummy Close", "addressLine2": "Hoxton", "addressLine3": "Cardiff", "isContactAddress": false}, {"uprn": "100081439525", "postCode": "E8 1DY", "startDate": "2013-04-18", "addressLine1": "Flat 3, 12 Mare Street", "addressLine2": "Hackney", "isContactAddress": true}]`)
	b.Run("decode+encode", func(b *testing.B) {
		var out []byte
		for b.Loop() {
			v, _ := f.DecodeStored(raw)
			out = f.AppendJSON(out[:0], v)
		}
	})
	b.Run("transcode", func(b *testing.B) {
		var out []byte
		for b.Loop() {
			out, _ = f.AppendStoredJSON(out[:0], raw)
		}
	})
	b.Run("transcode-valid", func(b *testing.B) {
		data := map[string]any{}
		for b.Loop() {
			_, _ = f.PutStoredJSON(data, nil, raw, true)
		}
	})
}
