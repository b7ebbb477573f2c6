package plinth_test

import (
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
)

// generatedResidents are 64 generated residents, keyed 1 to 64.
func generatedResidents(b *testing.B, e *plinth.Entity) []plinth.Record {
	g := datasafety.NewGenerator(7)
	recs := make([]plinth.Record, 64)
	for i := range recs {
		data, err := e.Validate(g.Record(e), true)
		if err != nil {
			b.Fatal(err)
		}
		data["mosaicId"] = int64(i + 1)
		recs[i] = plinth.Record{Data: data, Version: 1, CreatedAt: plinth.Now(), UpdatedAt: plinth.Now()}
	}
	return recs
}

func BenchmarkMarshalRecord(b *testing.B) {
	e := residentB(b)
	recs := generatedResidents(b, e)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = e.MarshalRecord(recs[i%len(recs)])
	}
}

// BenchmarkBuildEvent is a create's event: the envelope around the
// record's JSON, written once as the state and once as the new data.
func BenchmarkBuildEvent(b *testing.B) {
	e := residentB(b)
	recs := generatedResidents(b, e)
	c := plinth.EventContext{Environment: "development", CorrelationID: "3f2b8c1e-7d4a-4f0e-9b1a-2c6d8e0f1a2b",
		Principal: plinth.Principal{Subject: "dev", Name: "Developer", Groups: []string{"writers"}}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, _, _ = plinth.BuildEvent(e, plinth.EventCreated, nil, &recs[i%len(recs)], c)
		i++
	}
}
