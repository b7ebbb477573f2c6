package parquet_test

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	pq "github.com/parquet-go/parquet-go"

	"github.com/plinth-data/plinth/parquet"
	rt "github.com/plinth-data/plinth/report/reporttest"
)

// TestEventRowsStayTheirOwn checks that rows made one after another by
// one EventRows keep their own values until they are written (the rows
// share the maker's allocations), and that a file of them holds each
// event once, with bounds (min and max) for a column a reader filters on
// but none for the JSON texts oldData and newData.
func TestEventRowsStayTheirOwn(t *testing.T) {
	e, recs := rt.Residents(t, 10)
	maker := parquet.NewEventRows(e)
	var rows []parquet.Row
	const n = 1000 // rows of several of the maker's allocations
	for i := range n {
		rec := recs[i%len(recs)]
		row, err := maker.Row(parquet.EventRow{Sequence: uint64(i + 1), ID: "ev-" + strconv.Itoa(i), EventType: "created",
			EntityID: "x", DateTime: time.Unix(int64(i), 0), State: &rec, NewData: []byte(`{"n":` + strconv.Itoa(i) + `}`)})
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
	// Bounds for what a reader may filter on, none for the JSON texts.
	f, err := pq.OpenFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range f.Metadata().RowGroups[0].Columns {
		name, st := c.MetaData.PathInSchema[0], c.MetaData.Statistics
		json := name == "oldData" || name == "newData"
		if has := len(st.MaxValue) > 0; has == json && (json || i < 3) {
			t.Errorf("column %s: bounds %q…%q", name, st.MinValue, st.MaxValue)
		}
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
