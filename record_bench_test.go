package plinth_test

import (
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
)

func BenchmarkMarshalRecord(b *testing.B) {
	e := residentB(b)
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
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = e.MarshalRecord(recs[i%len(recs)])
	}
}
