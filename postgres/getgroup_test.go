package postgres

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
)

// TestGetsShareAQuery: while a table's query slots are taken, its Gets
// wait and the next query reads all of their rows at once; each gets its
// own record (in the form it asked for) or ErrNotFound, and a Get whose
// context ends stops waiting without keeping the others from their rows.
func TestGetsShareAQuery(t *testing.T) {
	ds := loadDomains(t)
	s, _ := openStore(t, ds)
	e := entity(t, ds, "residents")
	ctx := context.Background()
	docs := make([]map[string]any, 8)
	for i := range docs {
		docs[i] = resident(t, e, i)
	}
	if err := s.BulkInsert(ctx, e, docs); err != nil {
		t.Fatal(err)
	}
	page, err := s.List(ctx, e, plinth.Query{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	ids := []any{int64(987654321)} // no such record
	want := map[any][]byte{}
	for _, r := range page.Records {
		ids = append(ids, e.KeyOf(r))
		want[e.KeyOf(r)] = e.MarshalRecord(r)
	}
	ids = append(ids, ids[1]) // the same key twice

	tb := s.layout(e)
	tb.gets.mu.Lock()
	tb.gets.running = tb.gets.limit // every slot taken: Gets wait
	tb.gets.mu.Unlock()

	type answer struct {
		id  any
		r   plinth.Record
		err error
	}
	answers := make(chan answer, len(ids))
	for i, id := range ids {
		go func() {
			c := ctx
			switch i % 3 {
			case 1:
				c = plinth.WithNestedJSON(c)
			case 2:
				c = plinth.WithRecordJSON(plinth.WithNestedJSON(c))
			}
			r, err := s.Get(c, e, id)
			answers <- answer{id, r, err}
		}()
	}
	gone, cancel := context.WithCancel(ctx)
	abandoned := make(chan error, 1)
	go func() {
		_, err := s.Get(gone, e, ids[2])
		abandoned <- err
	}()
	waitFor(t, func() bool {
		tb.gets.mu.Lock()
		defer tb.gets.mu.Unlock()
		return len(tb.gets.waiting) == len(ids)+1
	})
	cancel()
	if err := <-abandoned; !errors.Is(err, context.Canceled) {
		t.Errorf("a waiting Get whose context ended: %v, want context.Canceled", err)
	}

	before := sharedGets.Load()
	tb.runWaiting(s.pool) // one slot frees: the waiting Gets share a query
	for range ids {
		a := <-answers
		switch {
		case want[a.id] == nil:
			if !errors.Is(a.err, plinth.ErrNotFound) {
				t.Errorf("get %v: %v, want ErrNotFound", a.id, a.err)
			}
		case a.err != nil:
			t.Errorf("get %v: %v", a.id, a.err)
		case !bytes.Equal(e.MarshalRecord(a.r), want[a.id]) || e.KeyOf(a.r) != a.id:
			t.Errorf("get %v read\n%s\nwant\n%s", a.id, e.MarshalRecord(a.r), want[a.id])
		}
	}
	if n := sharedGets.Load() - before; n != 1 {
		t.Errorf("%d shared queries for %d waiting Gets, want 1", n, len(ids)+1)
	}
	// The query's slot is freed once it has answered.
	waitFor(t, func() bool {
		tb.gets.mu.Lock()
		defer tb.gets.mu.Unlock()
		return tb.gets.running == tb.gets.limit-1 && len(tb.gets.waiting) == 0
	})
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
