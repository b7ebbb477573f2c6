package plinth_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/spec"
)

func resident(t *testing.T) *plinth.Entity { return residentB(t) }

func residentB(t testing.TB) *plinth.Entity {
	t.Helper()
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		for _, e := range d.Entities {
			if e.Plural == "residents" {
				return e
			}
		}
	}
	t.Fatal("no residents")
	return nil
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestValidateCanonicalForms(t *testing.T) {
	e := resident(t)
	data, err := e.Validate(decode(t, `{"firstName":"A","lastName":"B","uprn":100023336956,
		"nhsNumber":"943-476-5919","addresses":[{"addressLine1":"x","postCode":" sw1a1aa "}]}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if data["uprn"] != "100023336956" {
		t.Errorf("uprn given as an integer: %#v", data["uprn"])
	}
	if data["nhsNumber"] != "9434765919" {
		t.Errorf("nhs number: %#v", data["nhsNumber"])
	}
	if pc := data["addresses"].([]any)[0].(map[string]any)["postCode"]; pc != "SW1A 1AA" {
		t.Errorf("postcode: %#v", pc)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	e := resident(t)
	_, err := e.Validate(decode(t, `{"firstName":"A\u0000","uprn":-1,"phoneNumbers":[null,{"number":"12"}],"restricted":1}`), true)
	var ve *plinth.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a ValidationError, got %v", err)
	}
	want := []string{
		"firstName: must not contain the NUL character (U+0000)",
		"lastName: is required",
		"restricted: must be true or false",
		"uprn: must be a string",
		"phoneNumbers[0]: must not be null",
		"phoneNumbers[1].number: must be a phone number of 7 to 15 digits, such as 020 7946 0000 or +44 20 7946 0000",
	}
	var got []string
	for _, fe := range ve.Errors {
		got = append(got, fe.Field+": "+fe.Detail)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestMergePatch(t *testing.T) {
	doc := map[string]any{"a": "1", "o": map[string]any{"x": "1", "y": "2"}, "keep": true}
	got := plinth.MergePatch(doc, map[string]any{"a": nil, "o": map[string]any{"y": nil, "z": "3"}, "n": "new"})
	b, _ := json.Marshal(got)
	if string(b) != `{"keep":true,"n":"new","o":{"x":"1","z":"3"}}` {
		t.Fatalf("merge patch: %s", b)
	}
	if _, ok := doc["n"]; ok || doc["a"] != "1" {
		t.Fatal("merge patch changed its input")
	}
}

func TestFold(t *testing.T) {
	for in, want := range map[string]string{
		"Zoë":            "zoe",
		"ŁUKASZ":         "łukasz",
		"O'Brien":        "o'brien",
		"  Ní   Bhriain": "ni bhriain",
		"STRASSE":        "strasse",
		"Straße":         "strasse",
	} {
		if got := plinth.Fold(in); got != want {
			t.Errorf("Fold(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestMarshalRecordIsJSON checks the hand-written encoder against
// encoding/json on awkward text and on generated records.
func TestMarshalRecordIsJSON(t *testing.T) {
	e := resident(t)
	awkward := []string{"plain", `quo"te`, `back\slash`, "tab\tnew\nline\r", "\x01\x1f", "Zoë Łukasz 東京 🎉", "line\u2028sep\u2029", "</script>&"}
	for _, s := range awkward {
		rec := plinth.Record{Data: map[string]any{"mosaicId": int64(1), "firstName": s, "lastName": "x"}, Version: 3}
		out := e.MarshalRecord(rec)
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%q: invalid JSON %s: %v", s, out, err)
		}
		if m["firstName"] != s {
			t.Fatalf("%q came back as %q", s, m["firstName"])
		}
	}
	rec := plinth.Record{Data: map[string]any{"mosaicId": int64(1 << 60), "firstName": "a", "lastName": "b",
		"restricted": true, "phoneNumbers": []any{map[string]any{"number": "020 7946 0000"}}}, Version: 1}
	dec := json.NewDecoder(strings.NewReader(string(e.MarshalRecord(rec))))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m["mosaicId"].(json.Number).String() != "1152921504606846976" || m["restricted"] != true {
		t.Fatalf("scalars: %v", m)
	}
	phone := m["phoneNumbers"].([]any)[0].(map[string]any)
	if phone["number"] != "020 7946 0000" || phone["type"] != nil {
		t.Fatalf("nested: %v", phone)
	}
	if _, ok := phone["type"]; !ok {
		t.Fatal("absent nested field not written as null")
	}
}
