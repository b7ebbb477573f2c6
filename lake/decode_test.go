package lake

import (
	"encoding/json"
	"reflect"
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
		fast, ok := stripMembers([]byte(raw), omit, nil)
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
	if _, ok := stripMembers([]byte(`{"a": 1`), omit, nil); ok {
		t.Fatal("broken JSON taken by the fast path")
	}
}
