package storetest

import (
	"context"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/report"
)

// BenchScanReport runs every record of e through Scan and a report encoder
// of format f, as the Reporting API exports them (less HTTP), and reports
// records/s beside the process's CPU time per record: on a busy machine
// the CPU time is the steadier figure.
func BenchScanReport(b *testing.B, s plinth.Store, e *plinth.Entity, f report.Format) {
	ctx := context.Background()
	var n int
	cpu0 := cpuTime()
	for b.Loop() {
		enc, err := report.NewEncoder(f, io.Discard, e, report.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Scan(ctx, e, plinth.ScanQuery{NestedJSON: true, ReuseData: true, FieldValues: true}, func(r plinth.Record) error {
			n++
			return enc.Write(r)
		}); err != nil {
			b.Fatal(err)
		}
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/record")
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
