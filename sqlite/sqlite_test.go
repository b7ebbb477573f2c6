package sqlite_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/spec"
	"github.com/plinth-data/plinth/sqlite"
	"github.com/plinth-data/plinth/storetest"
)

// openAt opens the store at path and closes it when the test ends.
func openAt(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func prepare(t testing.TB, s plinth.Store, ds []*plinth.Domain) {
	t.Helper()
	if err := s.Prepare(context.Background(), ds); err != nil {
		t.Fatalf("prepare: %v", err)
	}
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) plinth.Store {
		s := openAt(t, filepath.Join(t.TempDir(), "nested", "dir", "plinth.db"))
		prepare(t, s, storetest.Domains(t))
		return s
	})
}

func TestAccessContract(t *testing.T) {
	storetest.RunAccess(t, func(t *testing.T) plinth.AccessStore {
		s := openAt(t, filepath.Join(t.TempDir(), "plinth.db"))
		prepare(t, s, storetest.Domains(t))
		return s
	})
}

func TestAuditContract(t *testing.T) {
	storetest.RunAudit(t, func(t *testing.T) plinth.Store {
		s := openAt(t, filepath.Join(t.TempDir(), "plinth.db"))
		prepare(t, s, storetest.Domains(t))
		return s
	})
}

func TestOutboxContract(t *testing.T) {
	storetest.RunOutbox(t, func(t *testing.T) plinth.Store {
		s := openAt(t, filepath.Join(t.TempDir(), "plinth.db"))
		prepare(t, s, storetest.Domains(t))
		return s
	})
}

func entity(t testing.TB, ds []*plinth.Domain, plural string) *plinth.Entity {
	return plinthtest.Entity(t, ds, plural)
}

func insert(t testing.TB, s plinth.Store, e *plinth.Entity, doc map[string]any) plinth.Record {
	t.Helper()
	data, err := e.Validate(doc, true)
	if err != nil {
		t.Fatal(err)
	}
	var r plinth.Record
	err = s.Write(context.Background(), func(tx plinth.Tx) error {
		r, err = tx.Insert(context.Background(), e, data)
		return err
	})
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	return r
}

func list(t testing.TB, s plinth.Store, e *plinth.Entity, raw string) []plinth.Record {
	t.Helper()
	v, err := url.ParseQuery(raw + "&limit=100")
	if err != nil {
		t.Fatal(err)
	}
	q, err := e.ParseQuery(v)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.List(context.Background(), e, q)
	if err != nil {
		t.Fatalf("list ?%s: %v", raw, err)
	}
	return p.Records
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plinth.db")
	ds := storetest.Domains(t)
	people := entity(t, ds, "people")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	prepare(t, s, ds)
	r := insert(t, s, people, map[string]any{"firstName": "Zoë", "lastName": "Kept", "lastSeen": "2024-05-01T09:30:00.25Z",
		"addresses": []any{map[string]any{"line1": "1 Road", "postCode": "E8 1DY"}}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	ds = storetest.Domains(t) // as a restarted server would load them
	people = entity(t, ds, "people")
	s = openAt(t, path)
	prepare(t, s, ds)
	got, err := s.Get(context.Background(), people, people.KeyOf(r))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Data, r.Data) || got.Version != 1 || !got.CreatedAt.Equal(r.CreatedAt) {
		t.Errorf("after reopening: %+v, want %+v", got, r)
	}
	if n := len(list(t, s, people, "postcode=E8+1DY&first_name=zoe")); n != 1 {
		t.Errorf("filters after reopening found %d records, want 1", n)
	}
}

func TestKeysNeverReused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plinth.db")
	ds := storetest.Domains(t)
	people := entity(t, ds, "people")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	prepare(t, s, ds)
	var last plinth.Record
	for range 3 {
		last = insert(t, s, people, map[string]any{"firstName": "A", "lastName": "B"})
	}
	err = s.Write(context.Background(), func(tx plinth.Tx) error {
		return tx.Delete(context.Background(), people, people.KeyOf(last), 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	next := insert(t, s, people, map[string]any{"firstName": "C", "lastName": "D"})
	if people.KeyOf(next).(int64) <= people.KeyOf(last).(int64) {
		t.Errorf("after deleting key %v, the next insert got %v", people.KeyOf(last), people.KeyOf(next))
	}
	// Also across a restart.
	err = s.Write(context.Background(), func(tx plinth.Tx) error {
		return tx.Delete(context.Background(), people, people.KeyOf(next), 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openAt(t, path)
	prepare(t, s, ds)
	again := insert(t, s, people, map[string]any{"firstName": "E", "lastName": "F"})
	if people.KeyOf(again).(int64) <= people.KeyOf(next).(int64) {
		t.Errorf("after deleting key %v and reopening, the next insert got %v", people.KeyOf(next), people.KeyOf(again))
	}
}

const evolveV1 = `
domain: evolve
description: A domain whose spec changes.
owner: {serviceArea: Test, productOwner: test@example.org}
entities:
  - name: member
    plural: club-members
    key: {name: memberId, type: integer, generated: true, pii: none}
    fields:
      - {name: fullName, type: string, required: true, pii: personal}
      - name: addresses
        type: array
        pii: personal
        items:
          type: object
          fields:
            - {name: postCode, type: string, format: ukPostcode}
`

// evolveV2 adds a field with a filter, a prefix filter on an existing field
// and a filter into an existing array.
const evolveV2 = evolveV1 + `
      - {name: nickname, type: string, pii: personal}
      - {name: joined, type: date, pii: none}
    filters:
      - {param: full_name, field: fullName, match: prefix}
      - {param: postcode, field: addresses.postCode, match: exact}
      - {param: nickname, field: nickname, match: contains}
      - {param: joined, field: joined, match: range}
`

// evolveV3 drops two of the filters again.
const evolveV3 = evolveV1 + `
      - {name: nickname, type: string, pii: personal}
      - {name: joined, type: date, pii: none}
    filters:
      - {param: nickname, field: nickname, match: contains}
`

func parse(t testing.TB, src string) ([]*plinth.Domain, *plinth.Entity) {
	t.Helper()
	d, err := spec.Parse("evolve.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return []*plinth.Domain{d}, d.Entities[0]
}

func TestPrepareIsAdditive(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plinth.db")
	ds1, e1 := parse(t, evolveV1)
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	prepare(t, s, ds1)
	prepare(t, s, ds1) // idempotent
	zoe := insert(t, s, e1, map[string]any{"fullName": "Zoë Smith", "addresses": []any{map[string]any{"postCode": "E8 1DY"}}})
	insert(t, s, e1, map[string]any{"fullName": "Bob Jones", "addresses": []any{map[string]any{"postCode": "N1 9GU"}}})
	s.Close()

	// The new filters find the rows that were there before them.
	ds2, e2 := parse(t, evolveV2)
	s = openAt(t, path)
	prepare(t, s, ds2)
	prepare(t, s, ds2)
	names := func(e *plinth.Entity, q string) []string {
		t.Helper()
		var out []string
		for _, r := range list(t, s, e, q) {
			out = append(out, r.Data["fullName"].(string))
		}
		return out
	}
	expect := func(e *plinth.Entity, q string, want ...string) {
		t.Helper()
		if got := names(e, q); !reflect.DeepEqual(got, want) {
			t.Errorf("?%s: got %q, want %q", q, got, want)
		}
	}
	expect(e2, "full_name=zoe", "Zoë Smith")
	expect(e2, "postcode=e8+1dy", "Zoë Smith")
	expect(e2, "postcode=N1+9GU", "Bob Jones")
	got, err := s.Get(ctx, e2, e2.KeyOf(zoe))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Data["nickname"]; ok || got.Data["fullName"] != "Zoë Smith" {
		t.Errorf("an old row read with the new spec: %v", got.Data)
	}
	insert(t, s, e2, map[string]any{"fullName": "Ann Lee", "nickname": "Annie", "joined": "2024-03-01"})
	expect(e2, "nickname=NNI", "Ann Lee")
	expect(e2, "joined_from=2024-01-01", "Ann Lee")

	// Filters dropped, a row changed while nothing maintains their data,
	// and the filters added back: they must see the change.
	ds3, e3 := parse(t, evolveV3)
	prepare(t, s, ds3)
	err = s.Write(ctx, func(tx plinth.Tx) error {
		data, err := e3.Validate(map[string]any{"fullName": "Ann Smith", "addresses": []any{map[string]any{"postCode": "SW1A 2AA"}}}, false)
		if err != nil {
			return err
		}
		_, err = tx.Update(ctx, e3, e3.KeyOf(zoe), 1, data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ds2, e2 = parse(t, evolveV2)
	prepare(t, s, ds2)
	expect(e2, "full_name=zoe")
	expect(e2, "full_name=ann", "Ann Smith", "Ann Lee")
	expect(e2, "postcode=E8+1DY")
	expect(e2, "postcode=SW1A+2AA", "Ann Smith")
}

func TestNotPreparedIsAnError(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "plinth.db"))
	e := entity(t, storetest.Domains(t), "people")
	_, err := s.Get(context.Background(), e, int64(1))
	if err == nil || errors.Is(err, plinth.ErrNotFound) {
		t.Errorf("get from an unprepared table: %v; want an error other than not found", err)
	}
}

func TestPurgeSentEvents(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, filepath.Join(t.TempDir(), "plinth.db"))
	prepare(t, s, nil)
	for _, id := range []string{"e1", "e2", "e3"} {
		if err := s.Write(ctx, func(tx plinth.Tx) error {
			return tx.(plinth.EventTx).AppendEvent(ctx, plinth.OutboxEntry{EventID: id, Payload: []byte("{}")})
		}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := s.PendingEvents(ctx, 10)
	if err != nil || len(es) != 3 {
		t.Fatalf("pending: %v, %v", es, err)
	}
	if err := s.MarkEventsSent(ctx, []string{es[0].EventID, es[1].EventID}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeSentEvents(ctx, time.Hour); err != nil || n != 0 {
		t.Errorf("purge of events sent over an hour ago: %d, %v; want 0", n, err)
	}
	time.Sleep(10 * time.Millisecond) // not a wait: the clock moves past sent_at, so age 0 purges them
	if n, err := s.PurgeSentEvents(ctx, 0); err != nil || n != 2 {
		t.Errorf("purge of every sent event: %d, %v; want 2", n, err)
	}
	if es, err := s.PendingEvents(ctx, 10); err != nil || len(es) != 1 || es[0].EventID != "e3" {
		t.Errorf("pending after the purge: %v, %v", es, err)
	}
}

// TestDatabaseFilesAreTheOwnersOnly: the files hold personal data.
func TestDatabaseFilesAreTheOwnersOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "plinth.db")
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Prepare(context.Background(), plinthtest.Domains(t)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", f, fi.Mode().Perm())
		}
	}
}

// A chainer handed the records its process appended chains them from
// memory (storetest.RunChainerHoldsRecords).
func TestChainerChainsHeldRecords(t *testing.T) {
	storetest.RunChainerHoldsRecords(t, func(t *testing.T) plinth.Store {
		s := openAt(t, filepath.Join(t.TempDir(), "plinth.db"))
		prepare(t, s, storetest.Domains(t))
		return s
	})
}
