package lake

import (
	"bytes"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/parquet"
	rt "github.com/plinth-data/plinth/report/reporttest"
)

// BenchmarkDecodeAndWrite is the lander's work per event without the bus:
// decode a resident create event and write it into an events file.
func BenchmarkDecodeAndWrite(b *testing.B) {
	e, recs := rt.Residents(b, 1000)
	payloads := make([][]byte, len(recs))
	for i := range recs {
		entry, _, _ := plinth.BuildEvent(e, plinth.EventCreated, nil, &recs[i], plinth.EventContext{Now: time.Now()})
		payloads[i] = entry.Payload
	}
	v := newEntityView(e, LakeEntity(e), EntityPrefix(e))
	var buf bytes.Buffer
	w, err := parquet.NewEventWriter(&buf, v.e, parquet.Options{Compression: parquet.FastZstd})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		row, err := v.row(uint64(i+1), payloads[i%len(payloads)])
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Write(row); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}
