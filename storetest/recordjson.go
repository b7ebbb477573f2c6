package storetest

import (
	"bytes"
	"testing"

	"github.com/plinth-data/plinth"
)

// testRecordJSON: a read asked for the API's JSON (Query.RecordJSON,
// WithRecordJSON) gives records the API writes byte for byte as it writes
// them decoded, with their keys, versions and times, on every type and
// key kind, with text that needs escaping and values absent or zero. A
// store may ignore the request; one that writes the JSON itself must
// write exactly what Entity.MarshalRecord would.
func (su *suite) testRecordJSON(t *testing.T) {
	s := su.open(t)
	awkward := "quote \" backslash \\ slash / tab \t newline \n nul-ish \u0001 del \u007f line sep \u2028 para \u2029 é 😀 <>&"
	for _, doc := range []map[string]any{
		{"firstName": awkward, "lastName": "Ünïcödé", "status": "active", "age": -7, "score": 1e21, "verified": true,
			"dateOfBirth": "0001-01-01", "lastSeen": "2024-02-29T23:59:59.999999Z", "externalId": "6f1c2b9e-0d3a-4e8b-9c7d-1a2b3c4d5e6f",
			"notes": "", "tags": []any{awkward, "b"},
			"profile": map[string]any{"nickname": "q\" \\ \u2028 \u0001 😀", "height": 1.5e-7, "visits": 9007199254740993,
				"preferences": map[string]any{"channels": []any{"sms", awkward}}},
			"addresses": []any{map[string]any{"line1": "1 Road", "postCode": "e8 1dy", "since": "2001-02-03", "current": false, "rooms": 0}}},
		{"firstName": "Min", "lastName": "Imal"},
		{"firstName": "", "lastName": "", "age": 0, "score": 0.0, "verified": false, "profile": map[string]any{}, "addresses": []any{}, "tags": []any{}},
		{"firstName": "Big", "lastName": "Numbers", "age": 9007199254740993, "score": -123456.789, "dateOfBirth": "9999-12-31", "lastSeen": "1970-01-01T00:00:00Z"},
	} {
		insert(t, s, su.people, doc)
	}
	insert(t, s, su.cards, map[string]any{"label": "Łódź 😀", "holderId": -42, "issuedAt": "2024-02-29T23:59:59.999999Z", "active": true})
	insert(t, s, su.cards, map[string]any{"label": "bare"})
	insert(t, s, su.categories, map[string]any{"code": "Łódź/😀 \"ключ\"", "title": awkward, "rank": 0})
	insert(t, s, su.categories, map[string]any{"code": "plain", "title": "t"})

	for _, e := range []*plinth.Entity{su.people, su.cards, su.categories} {
		listed := listAll(t, s, e, nil, 100)
		var asJSON []plinth.Record
		for q := (plinth.Query{Limit: 3, NestedJSON: true, RecordJSON: true}); ; {
			page, err := s.List(t.Context(), e, q)
			if err != nil {
				t.Fatalf("list %s with RecordJSON: %v", e.Plural, err)
			}
			asJSON = append(asJSON, page.Records...)
			if !page.More || len(page.Records) == 0 {
				break
			}
			q.After = e.KeyOf(page.Records[len(page.Records)-1])
		}
		if len(asJSON) != len(listed) || len(listed) == 0 {
			t.Fatalf("list %s with RecordJSON: %d records, without: %d", e.Plural, len(asJSON), len(listed))
		}
		for i, want := range listed {
			checkRecordJSON(t, "list "+e.Plural+" with RecordJSON", e, asJSON[i], want)
			got, err := s.Get(plinth.WithRecordJSON(plinth.WithNestedJSON(t.Context())), e, e.KeyOf(want))
			if err != nil {
				t.Fatalf("get %s %v with WithRecordJSON: %v", e.Name, e.KeyOf(want), err)
			}
			checkRecordJSON(t, "get "+e.Name+" with WithRecordJSON", e, got, want)
		}
	}
}

// checkRecordJSON: got, read as JSON, is written as want (read decoded)
// is, and has its key, version and times.
func checkRecordJSON(t *testing.T, what string, e *plinth.Entity, got, want plinth.Record) {
	t.Helper()
	if a, b := e.MarshalRecord(got), e.MarshalRecord(want); !bytes.Equal(a, b) {
		t.Errorf("%s writes\n%s\nwithout\n%s", what, a, b)
	}
	if plinth.KeyString(e.KeyOf(got)) != plinth.KeyString(e.KeyOf(want)) || got.Version != want.Version ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("%s: key %v, version %d, %v, %v; want %v, %d, %v, %v", what, e.KeyOf(got), got.Version, got.CreatedAt, got.UpdatedAt,
			e.KeyOf(want), want.Version, want.CreatedAt, want.UpdatedAt)
	}
}
