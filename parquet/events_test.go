package parquet_test

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/plinth-data/plinth/parquet"
	rt "github.com/plinth-data/plinth/report/reporttest"
)

// TestEventRowsStayTheirOwn checks that rows made one after another by
// one EventRows keep their own values until they are written (the rows
// share the maker's allocations), and that a file of them holds each
// event once.
func TestEventRowsStayTheirOwn(t *testing.T) {
	e, recs := rt.Residents(t, 10)
	maker := parquet.NewEventRows(e)
	var rows []parquet.Row
	const n = 1000 // rows of several of the maker's allocations
	for i := range n {
		rec := recs[i%len(recs)]
		row, err := maker.Row(parquet.EventRow{Sequence: uint64(i + 1), ID: "ev-" + strconv.Itoa(i), EventType: "created",
			EntityID: "x", DateTime: time.Unix(int64(i), 0), State: &rec})
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
	var buf bytes.Buffer
	w, err := parquet.NewEventWriter(&buf, e, parquet.Options{Compression: parquet.FastZstd})
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if err := w.WriteRow(row); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seqs, err := parquet.ReadInt64Column(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "sequence")
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != n {
		t.Fatalf("%d rows, want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("row %d has sequence %d", i, s)
		}
	}
}
