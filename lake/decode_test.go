package lake

import (
	"bytes"
	"time"

	"encoding/json"
	"fmt"
	"github.com/plinth-data/plinth"
	rt "github.com/plinth-data/plinth/report/reporttest"
	"reflect"
	"strings"
	"testing"
)

// The fast member scan and the decoder agree, on awkward values too.
func TestStripMembers(t *testing.T) {
	omit := map[string]bool{"ethnicity": true, "religion": true}
	for _, raw := range []string{
		`{}`,
		`{"ethnicity":"x"}`,
		`{"a":1,"ethnicity":"x","b":[1,{"c":"}]\\\"x"}],"religion":null,"d":{"e":[[]]},"f":-1.5e3,"g":true}`,
		`{"a":"\u2028","ethnicity":{"religion":"nested stays"},"h":false}`,
		`{"religion":"only"}`,
	} {
		fast, ok := stripMembers(nil, []byte(raw), omit, nil)
		if !ok {
			t.Fatalf("%s: the fast path gave up", raw)
		}
		slow := stripSlow([]byte(raw), omit, nil)
		var a, b any
		if err := json.Unmarshal(fast, &a); err != nil {
			t.Fatalf("%s: fast gave invalid JSON %s", raw, fast)
		}
		_ = json.Unmarshal(slow, &b)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: fast %s, slow %s", raw, fast, slow)
		}
		if m, _ := a.(map[string]any); m["ethnicity"] != nil || m["religion"] != nil {
			t.Fatalf("%s: left %s", raw, fast)
		}
	}
	if _, ok := stripMembers(nil, []byte(`{"a": 1`), omit, nil); ok {
		t.Fatal("broken JSON taken by the fast path")
	}
}

// TestStripIntoArena checks that what strip appends to an arena stays as
// it was while more is appended after it, across arena chunks: rows point
// into it until they are written.
func TestStripIntoArena(t *testing.T) {
	v := &entityView{omitted: map[string]bool{"religion": true}}
	var arena []byte
	var got [][]byte
	var want []string
	for i := range 3000 {
		raw := fmt.Sprintf(`{"n":%d,"religion":"x","name":"%s"}`, i, strings.Repeat("a", i%50))
		got = append(got, v.strip([]byte(raw), &arena))
		want = append(want, fmt.Sprintf(`{"n":%d,"name":"%s"}`, i, strings.Repeat("a", i%50)))
	}
	for i := range got {
		if string(got[i]) != want[i] {
			t.Fatalf("%d: %s, want %s", i, got[i], want[i])
		}
	}
	if len(arena) == 0 {
		t.Fatal("nothing went into the arena")
	}
}

// TestSubjectPlural checks the plural is the fourth of exactly five
// segments: plinth.<env>.<domain>.<plural>.<kind>.
func TestSubjectPlural(t *testing.T) {
	for subject, want := range map[string]string{
		"plinth.dev.population.residents.created": "residents",
		"plinth.dev.population.residents":         "",
		"plinth.dev.population.residents.a.b":     "",
		"plinth.dev.population..created":          "",
		"":                                        "",
		"a.b.c.d.e":                               "d",
	} {
		if got := subjectPlural(subject); got != want {
			t.Errorf("%q: %q, want %q", subject, got, want)
		}
	}
}

// TestScanAgreesWithDecoder checks that the envelope walk reads what the
// JSON decoder reads, special-category members left out of oldData and
// newData, on compact and indented events, and that it gives up (for the
// decoder) on envelopes it cannot walk.
func TestScanAgreesWithDecoder(t *testing.T) {
	e, recs := rt.Residents(t, 3)
	v := newEntityView(e, LakeEntity(e), EntityPrefix(e))
	if len(v.omitted) == 0 {
		t.Fatal("residents have no special-category field to leave out")
	}
	before, after := recs[0], recs[1]
	after.Data = plinth.MergePatch(after.Data, map[string]any{e.Key.Name: before.Data[e.Key.Name]})
	entry, _, ok := plinth.BuildEvent(e, plinth.EventUpdated, &before, &after, plinth.EventContext{Environment: "test", Now: time.Now(),
		CorrelationID: "c-1", Principal: plinth.Principal{Subject: "ann", Email: "ann@example.org"}})
	if !ok {
		t.Fatal("no event")
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, entry.Payload, "", "  "); err != nil {
		t.Fatal(err)
	}
	for _, payload := range [][]byte{entry.Payload, indented.Bytes()} {
		var arena []byte
		got, ok, err := v.scan(7, payload, &arena)
		if err != nil || !ok {
			t.Fatalf("not walked: %v", err)
		}
		want, err := v.decode(7, payload)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != want.ID || got.EventType != want.EventType || got.EntityID != want.EntityID ||
			got.EntityVersion != want.EntityVersion || !got.DateTime.Equal(want.DateTime) || got.UserEmail != want.UserEmail ||
			got.CorrelationID != want.CorrelationID || got.Sequence != 7 {
			t.Fatalf("walked %+v\ndecoded %+v", got, want)
		}
		for name, pair := range map[string][2][]byte{"oldData": {got.OldData, want.OldData}, "newData": {got.NewData, want.NewData}} {
			var a, b map[string]any
			if err := json.Unmarshal(pair[0], &a); err != nil {
				t.Fatalf("%s: %s: %v", name, pair[0], err)
			}
			_ = json.Unmarshal(pair[1], &b)
			if !reflect.DeepEqual(a, b) || len(a) == 0 {
				t.Fatalf("%s walked %s\ndecoded %s", name, pair[0], pair[1])
			}
			for f := range v.omitted {
				if _, there := a[f]; there {
					t.Fatalf("%s kept %s", name, f)
				}
			}
		}
	}
	for _, bad := range []string{
		`{"id":"x","eventType":"created","eventData":"nope"}`,
		`{"id":"x","eventType":"created","eventData":{"newData":{"a":1}}`,
		`{"id":"x","eventType":"created"} trailing`,
	} {
		if _, ok, _ := v.scan(1, []byte(bad), nil); ok {
			t.Fatalf("%s walked", bad)
		}
	}
}
