package parquet_test

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/plinth-data/plinth/parquet"
)

// TestFastZstdRoundTripsWithSmallEncoders: FastZstd's frames decode to
// what was encoded, and a new encoder costs well under the 16 MiB of
// history that zstd's default window takes (the lake inside plinth serve
// made one after every garbage collection, BENCHMARKS.md).
func TestFastZstdRoundTripsWithSmallEncoders(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	page := make([]byte, 300<<10) // a little over a page: repeats far apart
	words := []string{"Smith", "Jones", "Taylor", "Brown", "Williams", "B13 7DB", "M19 0XT", "2026-11-30T19:12:00Z"}
	for i := 0; i < len(page); {
		i += copy(page[i:], words[rng.IntN(len(words))])
	}
	// Each run uses a fresh codec, so its encoder is made in the run.
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	out, err := parquet.NewFastZstd().Encode(nil, page)
	runtime.ReadMemStats(&ms1)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 4<<20 {
		t.Errorf("compressing a page with a new encoder allocated %d bytes, want under 4 MiB", alloc)
	}
	if len(out) >= len(page)/4 {
		t.Errorf("%d bytes compressed to %d: the page's repeats were not found", len(page), len(out))
	}
	back, err := parquet.FastZstd.Decode(nil, out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, page) {
		t.Error("the page did not decode to what was encoded")
	}
}
