package postgres

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/storetest"
)

// TestGetAudited: GetAudited reads what Get reads, in every form, and
// appends the record of the read in the same transaction, stored exactly
// as it returns it: status 200 for a record that exists, 404 for one that
// does not, the duration grown by the statement's time. A read that fails
// appends nothing, and says so.
func TestGetAudited(t *testing.T) {
	ds := loadDomains(t)
	s, _ := openStore(t, ds)
	e := entity(t, ds, "residents")
	ctx := context.Background()
	docs := []map[string]any{resident(t, e, 1), resident(t, e, 2)}
	if err := s.BulkInsert(ctx, e, docs); err != nil {
		t.Fatal(err)
	}
	page, err := s.List(ctx, e, plinth.Query{Limit: 10})
	if err != nil || len(page.Records) != 2 {
		t.Fatalf("list: %v, %d records", err, len(page.Records))
	}
	id := e.KeyOf(page.Records[0])
	rec := plinth.AuditRecord{Time: time.Now(), CorrelationID: "c-1", Environment: "development", Domain: "residents",
		Entity: e.Name, Operation: "view", Method: "GET", Route: "/api/v1/residents/{id}",
		Principal: plinth.Principal{Subject: "u-1", Groups: []string{"readers"}}, Decision: plinth.DecisionAllow,
		RecordIDs: []string{plinth.KeyString(id)}, Count: 1, DurationMs: 1.5, ClientAddress: "127.0.0.1", UserAgent: "test"}

	var appended []plinth.AuditRecord
	for _, form := range []struct {
		name string
		ctx  context.Context
	}{
		{"decoded", ctx},
		{"nested JSON", plinth.WithNestedJSON(ctx)},
		{"record JSON", plinth.WithRecordJSON(plinth.WithNestedJSON(ctx))},
	} {
		want, err := s.Get(form.ctx, e, id)
		if err != nil {
			t.Fatal(err)
		}
		got, stored, err := s.GetAudited(form.ctx, e, id, rec)
		if err != nil {
			t.Fatalf("%s: %v", form.name, err)
		}
		if !bytes.Equal(e.MarshalRecord(got), e.MarshalRecord(want)) || !bytes.Equal(got.JSON, want.JSON) ||
			!reflect.DeepEqual(got.Data, want.Data) || got.Version != want.Version {
			t.Fatalf("%s: GetAudited read\n%s\nGet reads\n%s", form.name, e.MarshalRecord(got), e.MarshalRecord(want))
		}
		if stored.Status != 200 || !stored.Stored() || stored.DurationMs < rec.DurationMs {
			t.Fatalf("%s: stored %+v", form.name, stored)
		}
		appended = append(appended, stored)
	}

	missing := plinth.KeyString(id) + "9"
	mk, err := e.ParseKey(missing)
	if err != nil {
		t.Fatal(err)
	}
	_, stored, err := s.GetAudited(ctx, e, mk, rec)
	if !errors.Is(err, plinth.ErrNotFound) || stored.Status != 404 || !stored.Stored() {
		t.Fatalf("a missing record: %v, stored %+v", err, stored)
	}
	appended = append(appended, stored)

	// A key of the wrong kind finds nothing and appends nothing.
	if _, stored, err := s.GetAudited(ctx, e, "not a number", rec); !errors.Is(err, plinth.ErrNotFound) || stored.Stored() {
		t.Fatalf("a key of the wrong kind: %v, stored %+v", err, stored)
	}
	// A failing read appends nothing, and says so.
	if _, err := s.pool.Exec(ctx, `ALTER TABLE `+s.layout(e).ident+` RENAME TO gone`); err != nil {
		t.Fatal(err)
	}
	if _, stored, err := s.GetAudited(ctx, e, id, rec); err == nil || stored.Stored() {
		t.Fatalf("a failing read: %v, stored %+v", err, stored)
	}

	logHolds(t, s, appended)
}

// TestListAudited: ListAudited reads the page List reads and appends the
// record of the read in the same transaction, with the page's record ids
// (as the API writes keys) and their count, stored exactly as returned;
// integer, UUID and text keys alike.
func TestListAudited(t *testing.T) {
	ds := storetest.Domains(t)
	s, _ := openStore(t, ds)
	ctx := context.Background()
	people, cards, cats := entity(t, ds, "people"), entity(t, ds, "access-cards"), entity(t, ds, "categories")
	for e, docs := range map[*plinth.Entity][]map[string]any{
		people: peopleDocs(12), // keys 1 to 12: in text order 10 comes before 2
		cards:  {{"label": "one"}, {"label": "two"}, {"label": "three"}},
		cats:   {{"code": "c1", "title": "First"}, {"code": "c2", "title": "Second"}},
	} {
		if err := s.BulkInsert(ctx, e, docs); err != nil {
			t.Fatal(err)
		}
	}
	rec := plinth.AuditRecord{Time: time.Now(), CorrelationID: "c-2", Environment: "development", Domain: "store-test",
		Operation: "list", Method: "GET", Principal: plinth.Principal{Subject: "u-1"}, Decision: plinth.DecisionAllow,
		Filters: map[string]string{"limit": "2"}, DurationMs: 0.5}
	query := func(e *plinth.Entity, raw string) plinth.Query {
		v, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		q, err := e.ParseQuery(v)
		if err != nil {
			t.Fatal(err)
		}
		q.NestedJSON, q.RecordJSON = true, true // as the list route asks
		return q
	}
	var appended []plinth.AuditRecord
	for _, c := range []struct {
		e     *plinth.Entity
		query string
		after bool
	}{
		{people, "", false}, {people, "limit=2", false}, {people, "limit=2", true}, {people, "limit=30", true},
		{people, "limit=100", true},
		{cards, "", false}, {cards, "limit=2", true}, {cats, "", false},
	} {
		q := query(c.e, c.query)
		if c.after {
			first, err := s.List(ctx, c.e, q)
			if err != nil {
				t.Fatal(err)
			}
			q.After = c.e.KeyOf(first.Records[0])
			if q.Limit == 100 { // past the last record: an empty page
				q.After = c.e.KeyOf(first.Records[len(first.Records)-1])
			}
		}
		want, err := s.List(ctx, c.e, q)
		if err != nil {
			t.Fatal(err)
		}
		got, stored, err := s.ListAudited(ctx, c.e, q, rec)
		if err != nil {
			t.Fatalf("%s %q: %v", c.e.Plural, c.query, err)
		}
		var ids []string
		for _, r := range want.Records {
			ids = append(ids, plinth.KeyString(c.e.KeyOf(r)))
		}
		var gotIDs []string
		for i, r := range got.Records {
			gotIDs = append(gotIDs, plinth.KeyString(c.e.KeyOf(r)))
			if !bytes.Equal(r.JSON, want.Records[i].JSON) {
				t.Fatalf("%s %q: record %d reads %s, List reads %s", c.e.Plural, c.query, i, r.JSON, want.Records[i].JSON)
			}
		}
		if !slices.Equal(gotIDs, ids) || got.More != want.More {
			t.Fatalf("%s %q: page %v (more %v), List's %v (more %v)", c.e.Plural, c.query, gotIDs, got.More, ids, want.More)
		}
		if !stored.Stored() || stored.Status != 200 || !slices.Equal(stored.RecordIDs, ids) || stored.Count != len(ids) ||
			stored.DurationMs < rec.DurationMs {
			t.Fatalf("%s %q: stored %+v, ids %v", c.e.Plural, c.query, stored, ids)
		}
		appended = append(appended, stored)
	}
	// Filtered lists, and a page with a text key longer than an audit
	// record keeps, are read without appending.
	long := strings.Repeat("k", plinth.MaxAuditText+1)
	if err := s.BulkInsert(ctx, cats, []map[string]any{{"code": long, "title": "Long"}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		e     *plinth.Entity
		query string
		n     int
	}{{cats, "", 3}, {people, "first_name=Ann", 1}, {people, "first_name=Zed", 0}} {
		got, stored, err := s.ListAudited(ctx, c.e, query(c.e, c.query), rec)
		if err != nil || stored.Stored() || len(got.Records) != c.n {
			t.Fatalf("%s %q: %v, stored %+v, %d records, want %d", c.e.Plural, c.query, err, stored, len(got.Records), c.n)
		}
	}

	logHolds(t, s, appended)
}

// peopleDocs are n people of storetest's spec, the first named Ann.
func peopleDocs(n int) []map[string]any {
	docs := make([]map[string]any, n)
	for i := range docs {
		docs[i] = map[string]any{"firstName": string(rune('A'+i)) + "nn", "lastName": "L"}
	}
	return docs
}

// logHolds checks that the audit log holds exactly recs, as returned.
func logHolds(t *testing.T, s *Store, recs []plinth.AuditRecord) {
	t.Helper()
	log, err := s.UnchainedAudit(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != len(recs) {
		t.Fatalf("the log holds %d records, want %d", len(log), len(recs))
	}
	for i := range log {
		if !reflect.DeepEqual(log[i], recs[i]) {
			t.Fatalf("record %d as stored\n%+v\nas returned\n%+v", i, log[i], recs[i])
		}
	}
}
