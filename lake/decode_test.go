package lake

import (
	"encoding/json"
	"fmt"
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
