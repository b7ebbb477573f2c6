package jsonscan

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// Members and Text agree with encoding/json on awkward input.
func TestMembers(t *testing.T) {
	for _, raw := range []string{
		`{}`, ` { } `,
		`{"a":1,"b":"x\"y\\z\u2028","c":[1,{"d":"}]"}],"e":null,"f":{"g":[[]]},"h":-1.5e3,"i":true}`,
		`{ "a" : 1 , "b" : [ 1 , 2 ] }`,
	} {
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatal(err)
		}
		got := map[string]json.RawMessage{}
		if !Members([]byte(raw), func(name, value []byte) bool {
			got[string(name)] = append(json.RawMessage{}, value...)
			return true
		}) {
			t.Fatalf("%s: not walked", raw)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d members, want %d", raw, len(got), len(want))
		}
		for k, v := range want {
			var a, b any
			_ = json.Unmarshal(v, &a)
			if err := json.Unmarshal(got[k], &b); err != nil || !reflect.DeepEqual(a, b) {
				t.Fatalf("%s: member %s is %s, want %s", raw, k, got[k], v)
			}
			if s, ok := a.(string); ok {
				text, _, ok := Text(got[k], nil)
				if !ok || string(text) != s {
					t.Fatalf("%s: text of %s is %q, want %q", raw, k, text, s)
				}
			}
		}
	}
	for _, bad := range []string{``, `[]`, `{"a"}`, `{"a":1`, `{"a":1,}`, `{"a":"x}`, `{"a":1}x`} {
		if Members([]byte(bad), func(_, _ []byte) bool { return true }) {
			t.Fatalf("%q walked", bad)
		}
	}
}

// Strings with runs of backslashes before a quote end where JSON says.
func TestSkipStringBackslashes(t *testing.T) {
	for raw, want := range map[string]int{
		`"a"x`: 3, `"\\"x`: 4, `"\""x`: 4, `"\\\""x`: 6, `"\\\\"x`: 6, `"abc`: -1, `"\"`: -1,
	} {
		if got := SkipString([]byte(raw), 0); got != want {
			t.Errorf("SkipString(%s) = %d, want %d", raw, got, want)
		}
	}
}

// Object walks what Members walks, nested objects by the callback too,
// and says where the object ends.
func TestObject(t *testing.T) {
	for _, raw := range []string{
		`{}`, ` { } `,
		`{"a":1,"b":"x\"y\\z\u2028","c":[1,{"d":"}]"}],"e":null,"f":{"g":[[]],"h":{}},"h":-1.5e3,"i":true}`,
		`{ "a" : 1 , "f" : { "g" : [ 1 , 2 ] } }`,
	} {
		var want []string
		Members([]byte(raw), func(name, value []byte) bool {
			want = append(want, string(name)+"="+string(value))
			return true
		})
		var got []string
		var walk func(b []byte, i int) int
		walk = func(b []byte, i int) int {
			return Object(b, i, func(name []byte, at int) int {
				end := SkipValue(b, at)
				if b[at] == '{' {
					if end2 := walk(b, at); end2 != end {
						t.Fatalf("%s: the nested object at %d ends at %d, want %d", raw, at, end2, end)
					}
				}
				if i == 0 || i == skipSpace(b, 0) {
					got = append(got, string(name)+"="+string(b[at:end]))
				}
				return end
			})
		}
		end := walk([]byte(raw), 0)
		if end != len(strings.TrimRight(raw, " ")) {
			t.Fatalf("%s: ends at %d", raw, end)
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("%s: members %q, want %q", raw, got, want)
		}
	}
	if got := Object([]byte(`{"a":1}{"b":2}`), 0, func(_ []byte, at int) int { return at + 1 }); got != 7 {
		t.Fatalf("the first of two objects ends at %d, want 7", got)
	}
	for _, bad := range []string{``, `[]`, `{"a"}`, `{"a":1`, `{"a":1,}`, `{"a":"x}`, `{"a":}`} {
		if Object([]byte(bad), 0, func(_ []byte, at int) int { return SkipValue([]byte(bad), at) }) >= 0 {
			t.Fatalf("%q walked", bad)
		}
	}
	if Object([]byte(`{"a":1}`), 0, func([]byte, int) int { return -1 }) >= 0 {
		t.Fatal("a callback's failure did not fail the walk")
	}
}
