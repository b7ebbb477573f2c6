package postgres

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/plinth-data/plinth"
)

// TestScanDecodesBinaryRows: a scan decodes rows from their binary form
// (the fast path is taken) into exactly the records Get reads through pgx.
func TestScanDecodesBinaryRows(t *testing.T) {
	ds := loadDomains(t)
	s, _ := openStore(t, ds)
	e := entity(t, ds, "residents")
	ctx := context.Background()
	docs := make([]map[string]any, 50)
	for i := range docs {
		docs[i] = resident(t, e, i)
	}
	if err := s.BulkInsert(ctx, e, docs); err != nil {
		t.Fatal(err)
	}
	for _, nested := range []bool{false, true} {
		before := rawScans.Load()
		n := 0
		// With nested JSON, records come in field order (Values) too.
		q := plinth.ScanQuery{NestedJSON: nested, FieldValues: nested}
		if _, err := s.Scan(ctx, e, q, func(r plinth.Record) error {
			if (r.Values != nil) != nested || (r.Data != nil) == nested {
				t.Fatalf("FieldValues %v gave Values %v, Data %v", nested, r.Values != nil, r.Data != nil)
			}
			n++
			got, err := s.Get(ctx, e, e.KeyOf(r))
			if err != nil {
				return err
			}
			if a, b := e.MarshalRecord(r), e.MarshalRecord(got); !bytes.Equal(a, b) {
				t.Errorf("scan (nested JSON %v) reads\n%s\nGet reads\n%s", nested, a, b)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != len(docs) {
			t.Errorf("scan gave %d records, want %d", n, len(docs))
		}
		if rawScans.Load() == before {
			t.Errorf("the scan did not decode the binary form of its rows")
		}
	}
}

// A scan whose consumer stops early cancels its query instead of reading
// the rest of the table to close it (what the client is sent is measured
// on the wire), and the store goes on working.
func TestScanStoppedEarlyReadsNoFurther(t *testing.T) {
	ds := loadDomains(t)
	s, dbURL := openStore(t, ds)
	e := entity(t, ds, "residents")
	ctx := context.Background()
	const total = 20_000
	docs := make([]map[string]any, total)
	for i := range docs {
		docs[i] = resident(t, e, i)
	}
	if err := s.BulkInsert(ctx, e, docs); err != nil {
		t.Fatal(err)
	}
	var received atomic.Int64
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	dialer := &net.Dialer{}
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		return countingConn{c, &received}, err
	}
	s.pool.Close()
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	scan := func(q plinth.ScanQuery, fn func(plinth.Record) error) (int64, error) {
		before := received.Load()
		_, err := s.Scan(ctx, e, q, fn)
		return received.Load() - before, err
	}
	full, err := scan(plinth.ScanQuery{}, func(plinth.Record) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("consumer stopped")
	n := 0
	var first any
	stopped, err := scan(plinth.ScanQuery{NestedJSON: true, ReuseData: true}, func(r plinth.Record) error {
		if n == 0 {
			first = e.KeyOf(r)
		}
		if n++; n == 10 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("Scan returned %v, want the consumer's error unchanged", err)
	}
	if stopped >= full/2 {
		t.Errorf("a scan stopped after 10 of %d records received %d bytes, a whole scan %d", total, stopped, full)
	}
	if _, err := s.Get(ctx, e, first); err != nil {
		t.Errorf("the store after a stopped scan: %v", err)
	}
	count := 0
	if _, err := s.Scan(ctx, e, plinth.ScanQuery{}, func(plinth.Record) error { count++; return nil }); err != nil || count != total {
		t.Errorf("a scan after a stopped one: %d records, %v", count, err)
	}
}

// countingConn counts the bytes a connection receives.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}
