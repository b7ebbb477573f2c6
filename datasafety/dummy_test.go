package datasafety_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/spec"
)

func shippedEntities(t *testing.T) []*plinth.Entity {
	t.Helper()
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	var es []*plinth.Entity
	for _, d := range ds {
		es = append(es, d.Entities...)
	}
	if len(es) == 0 {
		t.Fatal("no shipped entities")
	}
	return es
}

func mustValidate(t *testing.T, e *plinth.Entity, doc map[string]any) map[string]any {
	t.Helper()
	out, err := e.Validate(doc, true)
	if err != nil {
		t.Fatalf("%s: generated record does not validate: %v\nrecord: %#v", e.Name, err, doc)
	}
	return out
}

// walk calls fn for every scalar value in doc with the field it belongs to.
func walk(fields []*plinth.Field, doc map[string]any, fn func(f *plinth.Field, v any)) {
	for _, f := range fields {
		v, ok := doc[f.Name]
		if !ok {
			continue
		}
		walkValue(f, v, fn)
	}
}

func walkValue(f *plinth.Field, v any, fn func(f *plinth.Field, v any)) {
	switch f.Type {
	case plinth.TypeObject:
		walk(f.Fields, v.(map[string]any), fn)
	case plinth.TypeArray:
		for _, item := range v.([]any) {
			walkValue(f.Items, item, fn)
		}
	default:
		fn(f, v)
	}
}

var reservedDomains = []string{"@example.org", "@example.com", "@example.net"}

func TestShippedEntitiesValidate(t *testing.T) {
	for _, e := range shippedEntities(t) {
		t.Run(e.Name, func(t *testing.T) {
			g := datasafety.NewGenerator(7)
			var emails, nhs, nonASCII, dummyLines, deaths int
			for _, doc := range g.Records(e, 2000) {
				out := mustValidate(t, e, doc)
				if e.Key.Generated {
					if _, ok := doc[e.Key.Name]; ok {
						t.Fatalf("generated key %s is set", e.Key.Name)
					}
				}
				walk(e.Fields, out, func(f *plinth.Field, v any) {
					s, ok := v.(string)
					if !ok {
						return
					}
					if f.Format == plinth.FormatEmail || strings.Contains(s, "@") {
						emails++
						if !hasReservedDomain(s) {
							t.Errorf("%s: e-mail %q is not at a reserved example domain", f.Name, s)
						}
					}
					if f.Format == plinth.FormatNHSNumber {
						nhs++
						if !strings.HasPrefix(s, "999") {
							t.Errorf("NHS number %q is not in the 999 test range", s)
						}
						if _, err := f.Canonical(s); err != nil {
							t.Errorf("NHS number %q: %v", s, err)
						}
					}
					if (f.Name == "firstName" || f.Name == "lastName") && !isASCII(s) {
						nonASCII++
					}
					if f.Name == "addressLine1" && strings.Contains(s, "Dummy") {
						dummyLines++
					}
				})
				if dob, ok := out["dateOfBirth"].(string); ok {
					if dod, ok := out["dateOfDeath"].(string); ok {
						deaths++
						if dod <= dob {
							t.Errorf("date of death %s is not after date of birth %s", dod, dob)
						}
					}
					if dob < "1920-01-01" || dob > "2020-12-31" {
						t.Errorf("date of birth %s outside 1920–2020", dob)
					}
				}
				for _, a := range sliceOf(out["addresses"]) {
					line, _ := a.(map[string]any)["addressLine1"].(string)
					if !strings.Contains(line, "Dummy") {
						t.Errorf("address line %q does not say it is dummy", line)
					}
				}
			}
			if emails == 0 {
				t.Error("no e-mail addresses generated")
			}
			if nonASCII < 100 {
				t.Errorf("only %d non-ASCII names in 2,000 records", nonASCII)
			}
			if e.Field("nhsNumber") != nil && nhs < 1000 {
				t.Errorf("only %d NHS numbers in 2,000 records", nhs)
			}
			if e.Field("addresses") != nil && dummyLines < 2000 {
				t.Errorf("only %d dummy address lines in 2,000 records", dummyLines)
			}
			if e.Field("dateOfDeath") != nil && (deaths == 0 || deaths > 400) {
				t.Errorf("%d of 2,000 records have a date of death; want a few", deaths)
			}
		})
	}
}

func sliceOf(v any) []any {
	s, _ := v.([]any)
	return s
}

func hasReservedDomain(s string) bool {
	for _, d := range reservedDomains {
		if strings.HasSuffix(s, d) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func TestDeterministic(t *testing.T) {
	for _, e := range shippedEntities(t) {
		for _, seed := range []uint64{0, 1, 42} {
			a := datasafety.NewGenerator(seed).Records(e, 50)
			b := datasafety.NewGenerator(seed).Records(e, 50)
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s: seed %d gave different records", e.Name, seed)
			}
		}
		a := datasafety.NewGenerator(1).Records(e, 20)
		b := datasafety.NewGenerator(2).Records(e, 20)
		if reflect.DeepEqual(a, b) {
			t.Errorf("%s: seeds 1 and 2 gave the same records", e.Name)
		}
	}
}

func TestRecordsCount(t *testing.T) {
	e := shippedEntities(t)[0]
	g := datasafety.NewGenerator(3)
	if n := len(g.Records(e, 0)); n != 0 {
		t.Errorf("Records(0) gave %d", n)
	}
	if n := len(g.Records(e, -1)); n != 0 {
		t.Errorf("Records(-1) gave %d", n)
	}
	if n := len(g.Records(e, 5)); n != 5 {
		t.Errorf("Records(5) gave %d", n)
	}
}

const header = `domain: synthetic
description: Synthetic specs for the dummy data generator.
owner:
  serviceArea: Testing
  productOwner: testing@example.org
entities:
`

var syntheticSpecs = []struct {
	name   string
	entity string
}{
	{"string key with patterns, enums and ranges", `
  - name: widget
    plural: widgets
    key: {name: reference, type: string, pii: none}
    fields:
      - name: code
        type: string
        required: true
        pattern: '^[A-Z]{3}-[0-9]{4}$'
        pii: none
      - name: optionalCode
        type: string
        pattern: '^(foo|bar)[0-9]+$'
        maxLength: 6
        pii: none
      - name: shortWord
        type: string
        pattern: '^[a-z]+$'
        maxLength: 3
        required: true
        pii: none
      - name: caseless
        type: string
        pattern: '(?i)^dummy\d{2}$'
        required: true
        pii: none
      - name: unanchored
        type: string
        pattern: 'x'
        required: true
        pii: none
      - name: colour
        type: string
        enum: [red, green, blue]
        required: true
        pii: none
      - name: enumAndPattern
        type: string
        enum: [alpha, beta, gamma]
        pattern: '^b'
        required: true
        pii: none
      - name: size
        type: integer
        min: 10
        max: 12
        required: true
        pii: none
      - name: exact
        type: integer
        min: 7
        max: 7
        required: true
        pii: none
      - name: weight
        type: number
        min: 0.5
        max: 0.75
        required: true
        pii: none
      - name: negative
        type: integer
        max: -100
        required: true
        pii: none
      - name: big
        type: integer
        min: 1e15
        required: true
        pii: none
      - name: age
        type: integer
        min: 200
        required: true
        pii: none
      - name: ratio
        type: number
        min: -0.001
        max: 0.001
        required: true
        pii: none
      - name: tiny
        type: string
        maxLength: 1
        required: true
        pii: none
      - name: firstName
        type: string
        maxLength: 2
        required: true
        pii: personal
      - name: title
        type: string
        required: true
        pii: personal
`},
	{"integer key with nested arrays of objects", `
  - name: case
    plural: cases
    key: {name: caseNumber, type: integer, pii: none}
    fields:
      - name: people
        type: array
        required: true
        pii: personal
        items:
          type: object
          fields:
            - name: name
              type: string
              required: true
              maxLength: 5
            - name: emails
              type: array
              items: {type: string, format: email}
            - name: tags
              type: array
              items: {type: string, enum: [a, b], pattern: '^a$'}
            - name: details
              type: object
              required: true
              fields:
                - name: score
                  type: number
                  min: -1
                  max: 1
                  required: true
                - name: seen
                  type: datetime
                - name: history
                  type: array
                  required: true
                  items:
                    type: object
                    fields:
                      - name: at
                        type: date
                        required: true
                      - name: ok
                        type: boolean
                        required: true
                      - name: where
                        type: object
                        fields:
                          - name: postCode
                            type: string
                            format: ukPostcode
                            required: true
      - name: scores
        type: array
        required: true
        pii: none
        items: {type: integer, min: 1, max: 3}
      - name: flags
        type: array
        pii: none
        items: {type: boolean}
      - name: ids
        type: array
        pii: none
        items: {type: uuid}
      - name: location
        type: object
        required: true
        pii: none
        fields:
          - name: postcode
            type: string
            format: ukPostcode
            required: true
            pattern: '^E'
          - name: uprn
            type: integer
            format: uprn
            required: true
          - name: inner
            type: object
            required: true
            fields:
              - name: deep
                type: object
                required: true
                fields:
                  - name: leaf
                    type: string
                    required: true
                    enum: [only]
`},
	{"uuid key with formats and constraints", `
  - name: person
    plural: people
    key: {name: personId, type: uuid, pii: none}
    fields:
      - name: email
        type: string
        format: email
        maxLength: 24
        pattern: '@example\.org$'
        required: true
        pii: personal
      - name: phone
        type: string
        format: phone
        pattern: '^07700'
        required: true
        pii: personal
      - name: nhsNumber
        type: string
        format: nhsNumber
        required: true
        pii: personal
      - name: niNumber
        type: string
        format: niNumber
        required: true
        pii: personal
      - name: uprn
        type: string
        format: uprn
        required: true
        pii: personal
      - name: postcode
        type: string
        format: ukPostcode
        maxLength: 7
        required: true
        pii: personal
      - name: dateOfBirth
        type: date
        required: true
        pii: personal
      - name: dateOfDeath
        type: date
        pii: personal
      - name: startDate
        type: date
        required: true
        pii: none
      - name: endDate
        type: date
        required: true
        pii: none
      - name: lastSeen
        type: datetime
        required: true
        pii: none
      - name: notes
        type: string
        maxLength: 10
        required: true
        pii: special
      - name: addresses
        type: array
        required: true
        pii: personal
        items:
          type: object
          fields:
            - name: addressLine1
              type: string
              required: true
              maxLength: 200
            - name: line
              type: string
              maxLength: 8
              required: true
`},
	{"generated integer key and an unsatisfiable optional field", `
  - name: thing
    plural: things
    key: {name: id, type: integer, generated: true, pii: none}
    fields:
      - name: impossible
        type: string
        format: email
        maxLength: 5
        pii: none
      - name: noInteger
        type: integer
        min: 0.2
        max: 0.8
        pii: none
      - name: label
        type: string
        required: true
        pii: none
`},
}

func TestSyntheticSpecs(t *testing.T) {
	for _, tc := range syntheticSpecs {
		t.Run(tc.name, func(t *testing.T) {
			d, err := spec.Parse("synthetic.yaml", []byte(header+strings.TrimPrefix(tc.entity, "\n")))
			if err != nil {
				t.Fatalf("spec: %v", err)
			}
			e := d.Entities[0]
			for seed := uint64(11); seed < 14; seed++ {
				g := datasafety.NewGenerator(seed)
				keys := map[string]bool{}
				for i, doc := range g.Records(e, 1000) {
					out := mustValidate(t, e, doc)
					if e.Key.Generated {
						continue
					}
					k := fmt.Sprint(out[e.Key.Name])
					if keys[k] {
						t.Fatalf("record %d: natural key %s repeated", i, k)
					}
					keys[k] = true
					switch e.Key.Type {
					case plinth.KeyInteger:
						if out[e.Key.Name] != int64(i+1) {
							t.Errorf("record %d: integer key %v, want %d", i, out[e.Key.Name], i+1)
						}
					case plinth.KeyText:
						if want := fmt.Sprintf("DUMMY-%06d", i+1); out[e.Key.Name] != want {
							t.Errorf("record %d: string key %v, want %s", i, out[e.Key.Name], want)
						}
					}
					walk(e.Fields, out, func(f *plinth.Field, v any) {
						if f.Format == plinth.FormatEmail && !hasReservedDomain(v.(string)) {
							t.Errorf("e-mail %q is not at a reserved example domain", v)
						}
					})
				}
			}
		})
	}
}

// TestKeysPerEntity checks natural keys count up per entity, and that a
// generator keeps counting across calls.
func TestKeysPerEntity(t *testing.T) {
	parse := func(plural string) *plinth.Entity {
		d, err := spec.Parse("k.yaml", []byte(header+`
  - name: item
    plural: `+plural+`
    key: {name: code, type: string, pii: none}
    fields:
      - {name: label, type: string, pii: none}
`))
		if err != nil {
			t.Fatal(err)
		}
		return d.Entities[0]
	}
	a, b := parse("items"), parse("other-items")
	g := datasafety.NewGenerator(5)
	got := []any{g.Record(a)["code"], g.Record(b)["code"], g.Record(a)["code"], g.Records(a, 2)[1]["code"]}
	want := []any{"DUMMY-000001", "DUMMY-000001", "DUMMY-000002", "DUMMY-000004"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("keys %v, want %v", got, want)
	}
}

// TestOddEntities checks hand-built entities with holes the loader would
// have refused do not make the generator panic.
func TestOddEntities(t *testing.T) {
	e := &plinth.Entity{
		Name: "odd", Plural: "odds",
		Key: plinth.Key{Name: "id", Type: plinth.KeyUUID},
		Fields: []*plinth.Field{
			{Name: "id", Type: plinth.TypeUUID},
			{Name: "list", Type: plinth.TypeArray, Required: true},
			{Name: "empty", Type: plinth.TypeObject, Required: true},
			{Name: "mystery", Type: "blob"},
			nil,
			{Name: "emptyEnum", Type: plinth.TypeString, Enum: []string{}},
		},
	}
	g := datasafety.NewGenerator(9)
	for range 100 {
		doc := g.Record(e)
		if _, ok := doc["id"].(string); !ok {
			t.Fatalf("no uuid key in %#v", doc)
		}
	}
}

// FuzzRecord checks the generator never panics on a spec the loader
// accepts, and keeps natural keys unique.
func FuzzRecord(f *testing.F) {
	for _, tc := range syntheticSpecs {
		f.Add([]byte(header + strings.TrimPrefix(tc.entity, "\n")))
	}
	for _, name := range []string{"residents.yaml", "contacts.yaml"} {
		data, err := domains.FS.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := spec.Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		g := datasafety.NewGenerator(1)
		for _, e := range d.Entities {
			keys := map[any]bool{}
			for _, doc := range g.Records(e, 20) {
				if e.Key.Generated {
					continue
				}
				k := doc[e.Key.Name]
				if keys[k] {
					t.Fatalf("%s: key %v repeated", e.Name, k)
				}
				keys[k] = true
			}
		}
	})
}
