package postgres

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
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

	log, err := s.UnchainedAudit(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != len(appended) {
		t.Fatalf("the log holds %d records, want %d", len(log), len(appended))
	}
	for i := range log {
		if !reflect.DeepEqual(log[i], appended[i]) {
			t.Fatalf("record %d as stored\n%+v\nas returned\n%+v", i, log[i], appended[i])
		}
	}
}
