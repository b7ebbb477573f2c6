package postgres

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/plinth-data/plinth"
)

// TestGetNestedJSON: asked through the context (plinth.WithNestedJSON, as
// the view route asks), Get gives object and array fields as JSON text,
// which the API writes out exactly as it writes the decoded record; a
// transaction's Get, which writes work on, still decodes them. Get decodes
// the row from its binary form (rawGets), into exactly the record the
// transaction's Get reads through pgx's scan plans.
func TestGetNestedJSON(t *testing.T) {
	ds := loadDomains(t)
	s, _ := openStore(t, ds)
	e := entity(t, ds, "residents")
	ctx := context.Background()
	docs := make([]map[string]any, 20)
	for i := range docs {
		docs[i] = resident(t, e, i)
	}
	delete(docs[3], "phoneNumbers") // a NULL nested field
	if err := s.BulkInsert(ctx, e, docs); err != nil {
		t.Fatal(err)
	}
	page, err := s.List(ctx, e, plinth.Query{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != len(docs) {
		t.Fatalf("%d records, want %d", len(page.Records), len(docs))
	}
	texts := 0
	before := rawGets.Load()
	for _, r := range page.Records {
		id := e.KeyOf(r)
		decoded, err := s.Get(ctx, e, id)
		if err != nil {
			t.Fatal(err)
		}
		nested, err := s.Get(plinth.WithNestedJSON(ctx), e, id)
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range nested.Data {
			if _, ok := v.(plinth.JSONText); ok {
				texts++
				if _, ok := decoded.Data[name].(plinth.JSONText); ok {
					t.Errorf("%s: Get without WithNestedJSON gave JSON text", name)
				}
			}
		}
		if a, b := e.MarshalRecord(nested), e.MarshalRecord(decoded); !bytes.Equal(a, b) {
			t.Errorf("Get with nested JSON reads\n%s\nwithout\n%s", a, b)
		}
		// Asked for the API's JSON (WithRecordJSON, as the view route
		// asks), Get writes it from the row itself.
		asJSON, err := s.Get(plinth.WithRecordJSON(ctx), e, id)
		if err != nil {
			t.Fatal(err)
		}
		if asJSON.JSON == nil || asJSON.Data != nil || e.KeyOf(asJSON) != id {
			t.Errorf("Get with WithRecordJSON: JSON %q, Data %v", asJSON.JSON, asJSON.Data)
		}
		if a, b := e.MarshalRecord(asJSON), e.MarshalRecord(decoded); !bytes.Equal(a, b) {
			t.Errorf("Get with WithRecordJSON reads\n%s\nwithout\n%s", a, b)
		}
		var inTx plinth.Record
		rollback := errors.New("read only")
		if err := s.Write(plinth.WithNestedJSON(ctx), func(tx plinth.Tx) (err error) {
			if inTx, err = tx.Get(plinth.WithNestedJSON(ctx), e, id); err != nil {
				return err
			}
			return rollback
		}); !errors.Is(err, rollback) {
			t.Fatal(err)
		}
		for name, v := range inTx.Data {
			if _, ok := v.(plinth.JSONText); ok {
				t.Errorf("%s: a transaction's Get gave JSON text", name)
			}
		}
		if a, b := e.MarshalRecord(decoded), e.MarshalRecord(inTx); !bytes.Equal(a, b) {
			t.Errorf("Get reads\n%s\na transaction's Get reads\n%s", a, b)
		}
		if decoded.Version != inTx.Version || !decoded.CreatedAt.Equal(inTx.CreatedAt) || !decoded.UpdatedAt.Equal(inTx.UpdatedAt) {
			t.Errorf("Get reads version %d, %v, %v; the transaction's Get %d, %v, %v", decoded.Version, decoded.CreatedAt, decoded.UpdatedAt, inTx.Version, inTx.CreatedAt, inTx.UpdatedAt)
		}
	}
	if got := rawGets.Load() - before; got != 3*int64(len(docs)) {
		t.Errorf("%d of %d Gets decoded the binary form of their row", got, 3*len(docs))
	}
	// A list asked for the API's JSON (Query.RecordJSON) has it written
	// from the rows, each record's JSON its own (a later record's does
	// not overwrite it), with its key (Record.Key) and no map.
	listed, err := s.List(ctx, e, plinth.Query{Limit: 7, RecordJSON: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range listed.Records {
		if r.JSON == nil || r.Data != nil || e.KeyOf(r) != e.KeyOf(page.Records[i]) {
			t.Fatalf("list with RecordJSON: JSON %q, Data %v", r.JSON, r.Data)
		}
		if a, b := e.MarshalRecord(r), e.MarshalRecord(page.Records[i]); !bytes.Equal(a, b) {
			t.Errorf("list with RecordJSON writes\n%s\nwithout\n%s", a, b)
		}
	}
	if texts == 0 {
		t.Error("Get with WithNestedJSON gave no field as JSON text")
	}
}

// A Get of a key with no row is ErrNotFound on the binary path too.
func TestGetMissingIsNotFound(t *testing.T) {
	ds := loadDomains(t)
	s, _ := openStore(t, ds)
	e := entity(t, ds, "residents")
	for _, ctx := range []context.Context{context.Background(), plinth.WithNestedJSON(context.Background())} {
		if _, err := s.Get(ctx, e, int64(987654)); !errors.Is(err, plinth.ErrNotFound) {
			t.Errorf("Get of a missing key: %v, want ErrNotFound", err)
		}
	}
}
