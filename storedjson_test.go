package plinth

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// storedJSONField is a nested field with every shape AppendStoredJSON
// walks: scalars of each type, an object in an object, arrays of objects
// and of scalars.
func storedJSONField() *Field {
	scalar := func(name string, t Type) *Field { return &Field{Name: name, Type: t} }
	inner := &Field{Name: "inner", Type: TypeObject, Fields: []*Field{scalar("n", TypeInteger), scalar("s", TypeString)}}
	item := &Field{Type: TypeObject, Fields: []*Field{
		scalar("line", TypeString), scalar("count", TypeInteger), scalar("ratio", TypeNumber),
		scalar("flag", TypeBoolean), inner,
		{Name: "tags", Type: TypeArray, Items: scalar("", TypeString)},
	}}
	return &Field{Name: "things", Type: TypeArray, Items: item}
}

// randomStoredJSON writes a random JSON text for f the way a store may
// hold it: members in any order, unknown members, nulls, escapes,
// whitespace, numbers in any notation, and now and then a value of
// another shape than the spec's.
func randomStoredJSON(r *rand.Rand, f *Field, depth int) string {
	if r.IntN(12) == 0 {
		return "null"
	}
	if depth < 3 && r.IntN(25) == 0 { // a shape the spec does not expect
		return []string{`{"x":1}`, `[1,"a",null]`, `"text"`, `true`, `12.5`}[r.IntN(5)]
	}
	ws := func() string { return []string{"", "", " ", "\n\t"}[r.IntN(4)] }
	switch f.Type {
	case TypeObject:
		var members []string
		for _, sf := range f.Fields {
			if r.IntN(5) > 0 {
				members = append(members, strconv.Quote(sf.Name)+ws()+":"+ws()+randomStoredJSON(r, sf, depth+1))
			}
		}
		if r.IntN(4) == 0 {
			members = append(members, `"unknown`+strconv.Itoa(r.IntN(3))+`":{"deep":[1,{"a":"}"}]}`)
		}
		if r.IntN(10) == 0 && len(f.Fields) > 0 { // an escaped member name
			members = append(members, `"\u006c`+f.Fields[0].Name[min(1, len(f.Fields[0].Name)):]+`":"esc"`)
		}
		r.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
		return "{" + ws() + strings.Join(members, ","+ws()) + ws() + "}"
	case TypeArray:
		n := r.IntN(4)
		items := make([]string, n)
		for i := range items {
			items[i] = randomStoredJSON(r, f.Items, depth+1)
		}
		return "[" + strings.Join(items, ws()+","+ws()) + "]"
	case TypeInteger, TypeNumber:
		return []string{"0", "-0", "7", "-12", "1.0", "2.50", "1e3", "1E-7", "123456789012345678901", "9223372036854775807", "0.1", "3.14159"}[r.IntN(12)]
	case TypeBoolean:
		return []string{"true", "false"}[r.IntN(2)]
	}
	return []string{`""`, `"plain"`, `"quote \" and \\ back"`, `"tab\tnew\nline"`, `"\u00e9t\u00e9"`, `"été"`, `"line\u2028sep"`, "\"raw\u2028sep\"", `"\ud83d\ude00"`, `"<&>"`, `"\/slash"`}[r.IntN(11)]
}

// TestAppendStoredJSONMatchesDecodeThenEncode: for thousands of stored
// texts, transcoding gives byte for byte what decoding then encoding gives.
func TestAppendStoredJSONMatchesDecodeThenEncode(t *testing.T) {
	f := storedJSONField()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		raw := []byte(randomStoredJSON(r, f, 0))
		v, decErr := f.DecodeStored(raw)
		got, err := f.AppendStoredJSON([]byte("prefix:"), raw)
		if (err != nil) != (decErr != nil) {
			t.Fatalf("case %d %s: transcode error %v, decode error %v", i, raw, err, decErr)
		}
		if err != nil {
			continue
		}
		want := f.AppendJSON([]byte("prefix:"), v)
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d: stored %s\n got %s\nwant %s", i, raw, got, want)
		}
		// Said to be valid (as jsonb is), it skips validation: same bytes.
		if trusted, err := f.appendStoredJSON([]byte("prefix:"), raw, true); err != nil || !bytes.Equal(trusted, want) {
			t.Fatalf("case %d, trusted: stored %s\n got %s (%v)\nwant %s", i, raw, trusted, err, want)
		}
	}
}

// TestAppendStoredJSONRefusesWhatDoesNotDecode: invalid or duplicated
// JSON is an error, as in DecodeStored, never output.
func TestAppendStoredJSONRefusesWhatDoesNotDecode(t *testing.T) {
	f := storedJSONField()
	for _, raw := range []string{``, `[`, `[{"line":"a","line":"b"}]`, "[\"\xff\"]", `[{"count":1e999}]`, `[1] x`, `[{"line":"\ud800"}]`} {
		if out, err := f.AppendStoredJSON(nil, []byte(raw)); err == nil {
			t.Errorf("%q: transcoded to %s, want an error", raw, out)
		}
		if _, err := f.DecodeStored([]byte(raw)); err == nil {
			t.Errorf("%q: DecodeStored accepts it; the two must agree", raw)
		}
	}
}

// TestStoredJSONSaidValidButTruncated: text wrongly said to be valid is an
// error, not a crash.
func TestStoredJSONSaidValidButTruncated(t *testing.T) {
	f := storedJSONField()
	for _, raw := range []string{`[{"line":"ab`, `[{"line"`, `[{`, `[`, `"abc`} {
		if out, err := f.appendStoredJSON(nil, []byte(raw), true); err == nil {
			t.Errorf("%q: transcoded to %s, want an error", raw, out)
		}
	}
}

func FuzzAppendStoredJSON(f *testing.F) {
	field := storedJSONField()
	r := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		f.Add(randomStoredJSON(r, field, 0))
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, decErr := field.DecodeStored([]byte(raw))
		got, err := field.AppendStoredJSON(nil, []byte(raw))
		if (err != nil) != (decErr != nil) {
			t.Fatalf("%q: transcode error %v, decode error %v", raw, err, decErr)
		}
		if err == nil {
			if want := field.AppendJSON(nil, v); !bytes.Equal(got, want) {
				t.Fatalf("%q:\n got %s\nwant %s", raw, got, want)
			}
		}
	})
}

func BenchmarkStoredJSON(b *testing.B) {
	f := storedJSONField()
	r := rand.New(rand.NewPCG(5, 6))
	var raws [][]byte
	for len(raws) < 64 {
		if s := randomStoredJSON(r, f, 0); len(s) > 40 {
			raws = append(raws, []byte(s))
		}
	}
	b.Run("decode+encode", func(b *testing.B) {
		var out []byte
		for i := 0; b.Loop(); i++ {
			v, _ := f.DecodeStored(raws[i%len(raws)])
			out = f.AppendJSON(out[:0], v)
		}
	})
	b.Run("transcode", func(b *testing.B) {
		var out []byte
		for i := 0; b.Loop(); i++ {
			out, _ = f.AppendStoredJSON(out[:0], raws[i%len(raws)])
		}
	})
	_ = fmt.Sprint
}
