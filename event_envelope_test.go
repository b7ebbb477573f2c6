package plinth_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
)

func canonical(t testing.TB, e *plinth.Entity, doc map[string]any) map[string]any {
	t.Helper()
	data, err := e.Validate(doc, false)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var (
	created = time.Date(2024, 5, 1, 9, 30, 0, 123456000, time.UTC)
	later   = created.Add(time.Hour)
)

// viaJSON encodes v and decodes it with numbers as json.Number.
func viaJSON(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// decodeJSON decodes b with numbers as json.Number.
func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return m
}

func TestBuildCreated(t *testing.T) {
	ds := plinthtest.Domains(t)
	e := plinthtest.Entity(t, ds, "residents")
	rec := plinth.Record{
		Data: canonical(t, e, map[string]any{
			"mosaicId": int64(9007199254740993), "firstName": "Ada", "lastName": "Lovelace",
			"phoneNumbers": []any{map[string]any{"number": "020 7946 0000", "type": "home"}},
		}),
		Version: 1, CreatedAt: created, UpdatedAt: created,
	}
	c := plinth.EventContext{
		Environment:   "staging",
		SourceSystem:  "plinth residents API",
		CorrelationID: "3f2b8c1e-7d4a-4f0e-9b1a-2c6d8e0f1a2b",
		Principal:     plinth.Principal{Subject: "u-1", Name: "Grace Hopper", Email: "grace@example.gov.uk", Groups: []string{"g"}},
		Now:           created,
	}
	entry, ev, ok := plinth.BuildEvent(e, plinth.EventCreated, nil, &rec, c)
	if !ok {
		t.Fatal("no event for a create")
	}
	if entry.Subject != "plinth.staging.residents.residents.created" || entry.Domain != "residents" || entry.EventID != ev.ID || entry.Sequence != 0 ||
		entry.Record != "residents/residents/"+ev.EntityID {
		t.Fatalf("entry %+v", entry)
	}
	if id, err := uuid.Parse(ev.ID); err != nil || id.Version() != 7 {
		t.Fatalf("id %q is not a UUID v7", ev.ID)
	}
	if ev.EventType != "ResidentCreatedEvent" || ev.SourceDomain != "residents" || ev.SourceSystem != "plinth residents API" ||
		ev.Version != "v1" || ev.CorrelationID != c.CorrelationID || !ev.DateTime.Equal(created) ||
		ev.User != (plinth.EventUser{Name: "Grace Hopper", Email: "grace@example.gov.uk"}) ||
		ev.EntityID != "9007199254740993" || ev.EntityVersion != 1 {
		t.Fatalf("event %+v", ev)
	}
	// The payload is the event; state and newData are the record as the
	// API returns it, exactly (integers beyond 2^53 too).
	got := decodeJSON(t, entry.Payload)
	api := decodeJSON(t, e.MarshalRecord(rec))
	if !reflect.DeepEqual(got["state"], api) {
		t.Fatalf("state %v\nwant %v", got["state"], api)
	}
	data := got["eventData"].(map[string]any)
	if data["oldData"] != nil || !reflect.DeepEqual(data["newData"], api) {
		t.Fatalf("eventData %v", data)
	}
	if !reflect.DeepEqual(viaJSON(t, ev.State), any(api)) || ev.EventData.OldData != nil || !reflect.DeepEqual(viaJSON(t, ev.EventData.NewData), any(api)) {
		t.Fatalf("event state %v", ev.State)
	}
	for _, k := range []string{"id", "eventType", "sourceDomain", "sourceSystem", "version", "correlationId", "dateTime", "user", "entityId", "eventData", "entityVersion", "state"} {
		if _, ok := got[k]; !ok {
			t.Errorf("payload has no %s", k)
		}
	}
	if got["dateTime"] != "2024-05-01T09:30:00.123456Z" {
		t.Errorf("dateTime %v", got["dateTime"])
	}
	// State keeps the API's field order.
	if !bytes.Contains(entry.Payload, []byte(`"state":{"mosaicId":9007199254740993,"title":null,"firstName":"Ada"`)) {
		t.Errorf("state is not in spec order: %s", entry.Payload)
	}
	// Decode reads it back.
	back, err := plinth.DecodeEvent(entry.Payload)
	if err != nil || back.ID != ev.ID || !reflect.DeepEqual(any(back.State), viaJSON(t, ev.State)) || back.EntityVersion != 1 {
		t.Fatalf("decode: %+v, %v", back, err)
	}
}

func TestBuildUpdatedCarriesOnlyChangedFields(t *testing.T) {
	ds := plinthtest.Domains(t)
	e := plinthtest.Entity(t, ds, "residents")
	before := plinth.Record{
		Data: canonical(t, e, map[string]any{
			"mosaicId": int64(7), "title": "Dr", "firstName": "Ada", "lastName": "Lovelace",
			"phoneNumbers": []any{map[string]any{"number": "020 7946 0000", "type": "home"}},
		}),
		Version: 3, CreatedAt: created, UpdatedAt: created,
	}
	after := plinth.Record{
		Data: canonical(t, e, map[string]any{
			"mosaicId": int64(7), "firstName": "Ada", "lastName": "King",
			"phoneNumbers": []any{map[string]any{"number": "020 7946 0000", "type": "home"}, map[string]any{"number": "07700 900000", "type": "mobile"}},
			"gender":       "F",
		}),
		Version: 4, CreatedAt: created, UpdatedAt: later,
	}
	svc := plinth.Principal{Subject: "svc", TokenID: "t-1", Consumer: "housing-benefits-listener"}
	entry, ev, ok := plinth.BuildEvent(e, plinth.EventUpdated, &before, &after, plinth.EventContext{Environment: "production", Principal: svc})
	if !ok {
		t.Fatal("no event for an update")
	}
	if entry.Subject != "plinth.production.residents.residents.updated" || ev.EventType != "ResidentUpdatedEvent" || ev.EntityVersion != 4 {
		t.Fatalf("entry %+v event %+v", entry, ev)
	}
	if ev.User.Name != "housing-benefits-listener" || ev.SourceSystem != "plinth residents API" {
		t.Fatalf("user %+v, source %q", ev.User, ev.SourceSystem)
	}
	got := decodeJSON(t, entry.Payload)["eventData"].(map[string]any)
	wantOld := map[string]any{"title": "Dr", "lastName": "Lovelace", "gender": nil,
		"phoneNumbers": []any{map[string]any{"number": "020 7946 0000", "type": "home"}}}
	wantNew := map[string]any{"title": nil, "lastName": "King", "gender": "F",
		"phoneNumbers": []any{map[string]any{"number": "020 7946 0000", "type": "home"}, map[string]any{"number": "07700 900000", "type": "mobile"}}}
	if !reflect.DeepEqual(got["oldData"], wantOld) || !reflect.DeepEqual(got["newData"], wantNew) {
		t.Fatalf("eventData\n old %v\n new %v", got["oldData"], got["newData"])
	}
	if !reflect.DeepEqual(viaJSON(t, ev.EventData.OldData), any(wantOld)) || !reflect.DeepEqual(viaJSON(t, ev.EventData.NewData), any(wantNew)) {
		t.Fatalf("event data %+v", ev.EventData)
	}
	if !bytes.Contains(entry.Payload, []byte(`"oldData":{"title":"Dr","lastName":"Lovelace","gender":null,"phoneNumbers":[`)) {
		t.Errorf("changed fields are not in spec order: %s", entry.Payload)
	}
	if ev.State["lastName"] != "King" || ev.State["version"] != int64(4) {
		t.Fatalf("state %v", ev.State)
	}

	// Nothing changed but the version and timestamps: no event.
	same := before
	same.Version, same.UpdatedAt = 4, later
	if _, _, ok := plinth.BuildEvent(e, plinth.EventUpdated, &before, &same, plinth.EventContext{}); ok {
		t.Fatal("an update that changes nothing has an event")
	}
}

func TestBuildDeleted(t *testing.T) {
	ds := plinthtest.Domains(t)
	e := plinthtest.Entity(t, ds, "contacts")
	id := "3f2b8c1e-7d4a-4f0e-9b1a-2c6d8e0f1a2b"
	before := plinth.Record{
		Data:    canonical(t, e, map[string]any{"id": id, "firstName": "Ada", "lastName": "Lovelace"}),
		Version: 2, CreatedAt: created, UpdatedAt: later,
	}
	entry, ev, ok := plinth.BuildEvent(e, plinth.EventDeleted, &before, nil, plinth.EventContext{
		SourceSystem: "Mosaic", Principal: plinth.Principal{Subject: "u-9", Email: "u9@example.gov.uk"},
	})
	if !ok {
		t.Fatal("no event for a delete")
	}
	if entry.Subject != "plinth.development.contacts.contacts.deleted" || ev.EventType != "ContactDeletedEvent" ||
		ev.EntityID != id || ev.EntityVersion != 3 || ev.SourceSystem != "Mosaic" {
		t.Fatalf("entry %+v event %+v", entry, ev)
	}
	if ev.User != (plinth.EventUser{Name: "u-9", Email: "u9@example.gov.uk"}) {
		t.Fatalf("user %+v", ev.User)
	}
	got := decodeJSON(t, entry.Payload)
	if got["state"] != nil {
		t.Fatalf("state on delete: %v", got["state"])
	}
	data := got["eventData"].(map[string]any)
	if data["newData"] != nil || !reflect.DeepEqual(data["oldData"], decodeJSON(t, e.MarshalRecord(before))) {
		t.Fatalf("eventData %v", data)
	}
	if ev.State != nil || ev.EventData.NewData != nil || !reflect.DeepEqual(viaJSON(t, ev.EventData.OldData), any(decodeJSON(t, e.MarshalRecord(before)))) {
		t.Fatalf("event data %+v, state %v", ev.EventData, ev.State)
	}
	if !strings.Contains(string(entry.Payload), `"state":null`) || time.Since(ev.DateTime) > time.Minute {
		t.Fatalf("payload %s", entry.Payload)
	}
}

func TestBuildNeedsTheRecords(t *testing.T) {
	e := plinthtest.Entity(t, plinthtest.Domains(t), "residents")
	rec := plinth.Record{Data: map[string]any{"mosaicId": int64(1)}, Version: 1}
	for _, tc := range []struct {
		kind          plinth.EventKind
		before, after *plinth.Record
	}{
		{plinth.EventCreated, &rec, nil},
		{plinth.EventUpdated, nil, &rec},
		{plinth.EventDeleted, nil, &rec},
		{"renamed", &rec, &rec},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s without the records it needs did not panic", tc.kind)
				}
			}()
			plinth.BuildEvent(e, tc.kind, tc.before, tc.after, plinth.EventContext{})
		}()
	}
}
