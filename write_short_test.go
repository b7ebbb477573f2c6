package plinth_test

import (
	"context"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/sqlite"
)

// markingStore notes, for each Write, whether its context was marked
// plinth.ShortWrite.
type markingStore struct {
	plinth.Store
	marks []bool
}

func (s *markingStore) Write(ctx context.Context, fn func(plinth.Tx) error) error {
	s.marks = append(s.marks, plinth.IsShortWrite(ctx))
	return s.Store.Write(ctx, fn)
}

// TestWriterMarksItsWritesShort: every change through the Writer may be
// grouped by a store (sqlite's group commit); a Write the Writer does not
// make stays unmarked.
func TestWriterMarksItsWritesShort(t *testing.T) {
	ds := plinthtest.Domains(t)
	e := plinthtest.Entity(t, ds, "residents")
	ctx := context.Background()
	lite, err := sqlite.Open(ctx, t.TempDir()+"/w.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lite.Close() })
	if err := lite.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	st := &markingStore{Store: lite}
	w, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: st, Environment: "development", Events: true, Audit: true})
	if err != nil {
		t.Fatal(err)
	}
	st.marks = nil
	o := plinth.Origin{CorrelationID: "short"}
	data, _ := e.Validate(map[string]any{"firstName": "Ada", "lastName": "Lovelace"}, true)
	made, err := w.Create(ctx, e, data, o)
	if err != nil {
		t.Fatal(err)
	}
	id := e.KeyOf(made.Record)
	upd, err := w.Update(ctx, e, id, 1, func(cur plinth.Record) (map[string]any, error) {
		d := map[string]any{}
		for k, v := range cur.Data {
			d[k] = v
		}
		d["lastName"] = "King"
		return d, nil
	}, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Apply(ctx, e, []plinth.BatchChange{{Data: map[string]any{"mosaicId": 900, "firstName": "B", "lastName": "C"}}}, o, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Delete(ctx, e, id, upd.Record.Version, o); err != nil {
		t.Fatal(err)
	}
	if len(st.marks) != 4 {
		t.Fatalf("%d Writes, want 4", len(st.marks))
	}
	for i, m := range st.marks {
		if !m {
			t.Errorf("Write %d (create, update, apply, delete) was not marked short", i)
		}
	}
	if plinth.IsShortWrite(ctx) {
		t.Error("a context nobody marked reads as marked")
	}
}
