package parquet

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestKeptZstdRoundTrips checks that what the kept codec writes is zstd
// that parquet-go's decoder reads back as it was.
func TestKeptZstdRoundTrips(t *testing.T) {
	c := newKeptZstd(zstd.SpeedFastest)
	for _, src := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte(`{"name":"Ada","city":"Utrecht"}`), 5000)} {
		enc, err := c.Encode(nil, src)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := c.Decode(nil, enc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dec, src) {
			t.Fatalf("%d bytes came back as %d", len(src), len(dec))
		}
	}
}

// TestKeptZstdSurvivesCollections checks that a collection does not cost
// the codec its encoder: one made afresh allocates its history and tables
// (a megabyte), which a writer of many pages paid after every collection.
func TestKeptZstdSurvivesCollections(t *testing.T) {
	c := newKeptZstd(zstd.SpeedFastest)
	src := bytes.Repeat([]byte("some page of values "), 1000)
	dst := make([]byte, 0, len(src))
	if _, err := c.Encode(dst, src); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC() // a sync.Pool is empty after two
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := c.Encode(dst, src); err != nil {
			t.Fatal(err)
		}
		runtime.GC()
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 256<<10 {
		t.Fatalf("10 pages, each after a collection, allocated %d bytes: an encoder was made again", n)
	}
}
