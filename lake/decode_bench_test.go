package lake

import (
	"bytes"
	"syscall"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/parquet"
	rt "github.com/plinth-data/plinth/report/reporttest"
)

// BenchmarkDecodeAndWrite is the lander's work per event without the bus:
// decode a resident create event and write it into an events file, as
// the lander does (rows made by a view's pooled row maker).
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
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		_, row, err := v.parquetRow(uint64(i+1), payloads[i%len(payloads)])
		if err != nil {
			b.Fatal(err)
		}
		if err := w.WriteRow(row); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	// CPU time, which a loaded machine changes less than the time taken.
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// processCPU is the user and system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
