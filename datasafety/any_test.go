package datasafety_test

import (
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/spec"
)

// everySpec exercises every type and format, constraints, nested objects
// and arrays of objects and of scalars, and a reference by convention
// (clinicId) and by the spec (visitorRef), none of it shipped.
const everySpec = `domain: clinics
description: A domain the project does not ship.
owner: {serviceArea: Testing, productOwner: t@example.org, cloudAccount: test}
sourceSystem: Test
entities:
  - name: clinic
    plural: clinics
    key: {name: clinicId, type: uuid, generated: true, pii: none}
    fields:
      - {name: label, type: string, required: true, maxLength: 12, pii: none}
      - name: site
        type: object
        required: true
        pii: none
        fields:
          - {name: postCode, type: string, format: ukPostcode, required: true}
          - {name: uprn, type: integer, format: uprn}
          - {name: opened, type: date}
  - name: visit
    plural: visits
    key: {name: visitNumber, type: integer, pii: none}
    fields:
      - {name: clinicId, type: uuid, required: true, pii: none}
      - {name: visitorRef, type: string, references: visitors, required: true, pii: personal}
      - {name: patientNhsNumber, type: string, format: nhsNumber, required: true, pii: personal}
      - {name: insurance, type: string, format: niNumber, required: true, pii: personal}
      - {name: callback, type: string, format: phone, required: true, pii: personal}
      - {name: contactEmail, type: string, format: email, required: true, maxLength: 40, pii: personal}
      - {name: homePostcode, type: string, format: ukPostcode, required: true, pii: personal}
      - {name: propertyUprn, type: string, format: uprn, required: true, pii: personal}
      - {name: bookingCode, type: string, pattern: '^BK-[0-9]{4}-[A-Z]{2}$', required: true, pii: none}
      - {name: ward, type: string, pattern: '^W[0-9]{2}$', maxLength: 3, pii: none}
      - {name: priority, type: string, enum: [low, medium, high], required: true, pii: none}
      - {name: score, type: integer, min: -5, max: 5, required: true, pii: none}
      - {name: weight, type: number, min: 0.5, max: 0.75, required: true, pii: special}
      - {name: seenBefore, type: boolean, required: true, pii: none}
      - {name: patientDateOfBirth, type: date, required: true, pii: personal}
      - {name: arrivedAt, type: datetime, required: true, pii: none}
      - {name: sessionToken, type: uuid, pii: none}
      - {name: tags, type: array, items: {type: string, maxLength: 8}, pii: none}
      - {name: readings, type: array, items: {type: number, min: 1, max: 2}, pii: special}
      - name: companions
        type: array
        pii: personal
        items:
          type: object
          fields:
            - {name: givenName, type: string, required: true, maxLength: 30}
            - {name: relation, type: string, enum: [parent, carer, friend]}
            - {name: mobile, type: string, format: phone}
            - {name: notes, type: array, items: {type: string}}
  - name: visitor
    plural: visitors
    key: {name: code, type: string, pii: personal}
    fields:
      - {name: fullName, type: string, required: true, pii: personal}
`

func loadEvery(t testing.TB) []*plinth.Domain {
	t.Helper()
	ds, err := spec.LoadFS(fstest.MapFS{"clinics.yaml": {Data: []byte(everySpec)}}, ".")
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func allEntities(ds []*plinth.Domain) []*plinth.Entity {
	var es []*plinth.Entity
	for _, d := range ds {
		es = append(es, d.Entities...)
	}
	return es
}

var (
	adminNI     = []string{"CR", "MW", "NC", "PP", "PY", "PZ"}
	dramaPhones = []string{"0207946", "01134960", "01214960", "01614960", "01174960", "01314960", "01632960", "07700900"}
)

// checkFormat checks a generated value is of the dummy kind its format
// asks for.
func checkFormat(t *testing.T, f *plinth.Field, v any) {
	t.Helper()
	s, _ := v.(string)
	switch f.Format {
	case plinth.FormatNHSNumber:
		if !strings.HasPrefix(s, "999") {
			t.Errorf("%s: NHS number %s is not in the 999 test range", f.Name, s)
		}
	case plinth.FormatNINumber:
		if !slices.Contains(adminNI, s[:2]) {
			t.Errorf("%s: NI number %s has an issued prefix", f.Name, s)
		}
	case plinth.FormatPhone:
		digits := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, s)
		if strings.HasPrefix(s, "+44") {
			digits = "0" + digits[2:]
		}
		if !slices.ContainsFunc(dramaPhones, func(p string) bool { return strings.HasPrefix(digits, p) }) {
			t.Errorf("%s: phone %s is not in an Ofcom drama range", f.Name, s)
		}
	case plinth.FormatEmail:
		if !hasReservedDomain(s) {
			t.Errorf("%s: e-mail %s is not at a reserved domain", f.Name, s)
		}
	}
}

// TestAnySpec generates records for an unshipped spec exercising every
// type and format, and for every shipped entity: each passes Validate (as
// stored, with its key, and as a create), formats are the dummy kind,
// optional fields are sometimes absent and arrays hold 0 to 3 items.
func TestAnySpec(t *testing.T) {
	shipped, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, ds := range [][]*plinth.Domain{loadEvery(t), shipped} {
		g := datasafety.NewGenerator(5).SetDomains(ds)
		for _, e := range allEntities(ds) {
			docs, err := g.Batch(e, 0, 2000)
			if err != nil {
				t.Fatalf("%s: %v", e.Plural, err)
			}
			present := map[string]int{}
			for i, doc := range docs {
				out, err := e.Validate(doc, false)
				if err != nil {
					t.Fatalf("%s record %d does not validate: %v\n%#v", e.Plural, i, err, doc)
				}
				if !reflect.DeepEqual(out, doc) {
					t.Fatalf("%s record %d is not canonical:\n%#v\n%#v", e.Plural, i, doc, out)
				}
				if out[e.Key.Name] != g.Key(e, i) {
					t.Fatalf("%s record %d: key %v, want %v", e.Plural, i, out[e.Key.Name], g.Key(e, i))
				}
				for name := range out {
					present[name]++
				}
				walk(e.Fields, out, func(f *plinth.Field, v any) { checkFormat(t, f, v) })
				for _, f := range e.Fields {
					if a, ok := out[f.Name].([]any); ok && len(a) > 3 {
						t.Errorf("%s.%s has %d items", e.Plural, f.Name, len(a))
					}
				}
				if dob, ok := out["patientDateOfBirth"].(string); ok && (dob < "1920-01-01" || dob > "2020-12-31") {
					t.Errorf("date of birth %s outside 1920–2020", dob)
				}
			}
			for _, f := range e.Fields[1:] {
				n := present[f.Name]
				if n == 0 {
					t.Errorf("%s.%s never generated", e.Plural, f.Name)
				}
				if !f.Required && n == len(docs) {
					t.Errorf("%s.%s is optional but always present", e.Plural, f.Name)
				}
			}
			for _, doc := range datasafety.NewGenerator(5).Records(e, 200) {
				if _, err := e.Validate(doc, true); err != nil {
					t.Fatalf("%s: create document does not validate: %v", e.Plural, err)
				}
			}
		}
	}
}

// TestBatchDeterministic checks record i depends on the seed alone, not on
// how many goroutines generate or in which batches.
func TestBatchDeterministic(t *testing.T) {
	ds := loadEvery(t)
	e := ds[0].Entities[1]
	a, err := datasafety.NewGenerator(77).SetDomains(ds).Batch(e, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	prev := runtime.GOMAXPROCS(1)
	b1, _ := datasafety.NewGenerator(77).SetDomains(ds).Batch(e, 0, 300)
	runtime.GOMAXPROCS(prev)
	b2, _ := datasafety.NewGenerator(77).SetDomains(ds).Batch(e, 300, 700)
	if !reflect.DeepEqual(a, append(b1, b2...)) {
		t.Error("the same seed gave different records in other batches")
	}
	if got := datasafety.NewGenerator(77).SetDomains(ds).At(e, 999); !reflect.DeepEqual(got, a[999]) {
		t.Error("At(999) differs from Batch")
	}
	c, _ := datasafety.NewGenerator(78).SetDomains(ds).Batch(e, 0, 10)
	if reflect.DeepEqual(a[:10], c) {
		t.Error("seeds 77 and 78 gave the same records")
	}
}

// TestReferencesJoin seeds the referenced and referring entities with the
// same seed and checks every reference names a record that exists: the
// shipped contacts' residentId (references: residents) and, in the
// unshipped spec, clinicId (by name) and visitorRef (references: visitors).
func TestReferencesJoin(t *testing.T) {
	shipped, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ds          []*plinth.Domain
		from, field string
		to          string
	}{
		{shipped, "contacts", "residentId", "residents"},
		{loadEvery(t), "visits", "clinicId", "clinics"},
		{loadEvery(t), "visits", "visitorRef", "visitors"},
	}
	for _, tc := range cases {
		var from, to *plinth.Entity
		for _, e := range allEntities(tc.ds) {
			switch e.Plural {
			case tc.from:
				from = e
			case tc.to:
				to = e
			}
		}
		const n = 500
		// As plinth seed does: each entity its own generator, the same seed.
		targets, err := datasafety.NewGenerator(9).SetDomains(tc.ds).SetPopulation(tc.to, n).Batch(to, 0, n)
		if err != nil {
			t.Fatal(err)
		}
		keys := map[any]bool{}
		for _, d := range targets {
			keys[d[to.Key.Name]] = true
		}
		if len(keys) != n {
			t.Fatalf("%s: %d distinct keys in %d records", tc.to, len(keys), n)
		}
		refs, err := datasafety.NewGenerator(9).SetDomains(tc.ds).SetPopulation(tc.to, n).Batch(from, 0, 2*n)
		if err != nil {
			t.Fatal(err)
		}
		seen, hit := 0, map[any]bool{}
		for _, d := range refs {
			v, ok := d[tc.field]
			if !ok {
				continue
			}
			seen++
			hit[v] = true
			if !keys[v] {
				t.Fatalf("%s.%s = %v is no %s key", tc.from, tc.field, v, tc.to)
			}
		}
		if seen < n || len(hit) < n/2 {
			t.Errorf("%s.%s: %d references to %d records", tc.from, tc.field, seen, len(hit))
		}
	}
}

// TestImpossiblePattern checks a required field whose pattern cannot be
// met gives an error naming it.
func TestImpossiblePattern(t *testing.T) {
	d, err := spec.Parse("p.yaml", []byte(header+`
  - name: item
    plural: items
    key: {name: id, type: uuid, generated: true, pii: none}
    fields:
      - name: parts
        type: array
        pii: none
        items:
          type: object
          fields:
            - {name: code, type: string, required: true, pattern: '^[a-z]{20}$', maxLength: 5}
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = datasafety.NewGenerator(1).Batch(d.Entities[0], 0, 50)
	if err == nil || !strings.Contains(err.Error(), `"parts.code"`) || !strings.Contains(err.Error(), "pattern") {
		t.Errorf("error %v, want one naming parts.code and its pattern", err)
	}
}

// BenchmarkBatch measures generation alone, on every core, in records/s.
func BenchmarkBatch(b *testing.B) {
	shipped, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range allEntities(shipped) {
		b.Run(e.Plural, func(b *testing.B) {
			g := datasafety.NewGenerator(1).SetDomains(shipped)
			const batch = 10000
			n := 0
			for b.Loop() {
				if _, err := g.Batch(e, n, batch); err != nil {
					b.Fatal(err)
				}
				n += batch
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
