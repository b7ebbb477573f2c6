package spec_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"go.yaml.in/yaml/v3"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/spec"
)

func TestShippedDomainsLoad(t *testing.T) {
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 {
		t.Fatalf("got %d domains, want 2", len(ds))
	}
	byName := map[string]*plinth.Domain{}
	for _, d := range ds {
		byName[d.Name] = d
	}

	type filterWant struct {
		param, path string
		match       plinth.Match
		array       string
	}
	type entityWant struct {
		domain, file, name, plural string
		key                        plinth.Key
		fields                     []string
		filters                    []filterWant
	}
	wants := []entityWant{
		{
			domain: "residents", file: "residents.yaml", name: "resident", plural: "residents",
			key: plinth.Key{Name: "mosaicId", Type: plinth.KeyInteger, Generated: true},
			fields: []string{"mosaicId", "title", "firstName", "lastName", "otherNames", "dateOfBirth", "dateOfDeath",
				"gender", "nhsNumber", "restricted", "nationality", "ethnicity", "religion", "firstLanguage",
				"ageContext", "emailAddress", "preferredMethodOfContact", "uprn", "phoneNumbers", "addresses"},
			filters: []filterWant{
				{"mosaic_id", "mosaicId", plinth.MatchExact, ""},
				{"first_name", "firstName", plinth.MatchPrefix, ""},
				{"last_name", "lastName", plinth.MatchContains, ""},
				{"date_of_birth", "dateOfBirth", plinth.MatchRange, ""},
				{"postcode", "addresses.postCode", plinth.MatchExact, "addresses"},
			},
		},
		{
			domain: "contacts", file: "contacts.yaml", name: "contact", plural: "contacts",
			key:    plinth.Key{Name: "id", Type: plinth.KeyUUID, Generated: true},
			fields: []string{"id", "residentId", "firstName", "lastName", "contactInformation"},
			filters: []filterWant{
				{"first_name", "firstName", plinth.MatchPrefix, ""},
				{"last_name", "lastName", plinth.MatchPrefix, ""},
			},
		},
	}
	for _, w := range wants {
		t.Run(w.name, func(t *testing.T) {
			d := byName[w.domain]
			if d == nil {
				t.Fatalf("domain %q not loaded", w.domain)
			}
			if d.File != w.file {
				t.Errorf("file %q, want %q", d.File, w.file)
			}
			if d.Description == "" || d.Owner.ServiceArea == "" || d.Owner.ProductOwner == "" || d.SourceSystem == "" {
				t.Errorf("domain metadata incomplete: %+v", d)
			}
			if len(d.Entities) != 1 {
				t.Fatalf("%d entities, want 1", len(d.Entities))
			}
			e := d.Entities[0]
			if e.Name != w.name || e.Plural != w.plural || e.Domain != d {
				t.Errorf("entity %q at /api/v1/%s, want %q at /api/v1/%s", e.Name, e.Plural, w.name, w.plural)
			}
			if e.Key != w.key {
				t.Errorf("key %+v, want %+v", e.Key, w.key)
			}
			kf := e.KeyField()
			if kf.Name != w.key.Name || kf.Required {
				t.Errorf("key field %+v", kf)
			}
			wantType := map[plinth.KeyType]plinth.Type{plinth.KeyInteger: plinth.TypeInteger, plinth.KeyUUID: plinth.TypeUUID, plinth.KeyText: plinth.TypeString}[w.key.Type]
			if kf.Type != wantType {
				t.Errorf("key field type %s, want %s", kf.Type, wantType)
			}
			var names []string
			for _, f := range e.Fields {
				names = append(names, f.Name)
			}
			if !slices.Equal(names, w.fields) {
				t.Errorf("fields %v, want %v", names, w.fields)
			}
			for _, f := range e.Fields {
				switch f.PII {
				case plinth.PIINone, plinth.PIIPersonal, plinth.PIISpecial:
				default:
					t.Errorf("field %s has pii class %q", f.Name, f.PII)
				}
				checkInherited(t, f)
			}
			if len(e.Filters) != len(w.filters) {
				t.Fatalf("%d filters, want %d", len(e.Filters), len(w.filters))
			}
			for i, fw := range w.filters {
				f := e.Filters[i]
				if f.Param != fw.param || f.PathString() != fw.path || f.Match != fw.match {
					t.Errorf("filter %d: %s %s %s, want %s %s %s", i, f.Param, f.PathString(), f.Match, fw.param, fw.path, fw.match)
				}
				if f.Field == nil || f.Field.Name != f.Path[len(f.Path)-1] {
					t.Errorf("filter %s: field %+v", f.Param, f.Field)
				}
				if (f.Array == nil) != (fw.array == "") || (f.Array != nil && f.Array.Name != fw.array) {
					t.Errorf("filter %s: array %+v, want %q", f.Param, f.Array, fw.array)
				}
				if e.Filter(fw.param) != f {
					t.Errorf("Filter(%q) does not find it", fw.param)
				}
			}
		})
	}

	// Spot checks of what the loader reads.
	res := byName["residents"].Entities[0]
	if f := res.Field("firstName"); !f.Required || f.MaxLength == nil || *f.MaxLength != 100 {
		t.Errorf("firstName: %+v", f)
	}
	if f := res.Field("gender"); !slices.Equal(f.Enum, []string{"F", "M", "I", "U"}) {
		t.Errorf("gender enum %v", f.Enum)
	}
	if f := res.Field("nhsNumber"); f.Format != plinth.FormatNHSNumber {
		t.Errorf("nhsNumber format %q", f.Format)
	}
	if f := res.Field("ethnicity"); f.PII != plinth.PIISpecial {
		t.Errorf("ethnicity pii %q", f.PII)
	}
	addr := res.Field("addresses")
	if addr.Items == nil || addr.Items.Type != plinth.TypeObject || addr.Items.Name != "" {
		t.Fatalf("addresses items %+v", addr.Items)
	}
	if pc := plinth.FieldByName(addr.Items.Fields, "postCode"); pc == nil || pc.Format != plinth.FormatUKPostcode || pc.PII != plinth.PIIPersonal {
		t.Errorf("addresses.postCode %+v", pc)
	}
	// A nested field may set its own class: contacts' dateAdded is none.
	ci := byName["contacts"].Entities[0].Field("contactInformation")
	if da := plinth.FieldByName(ci.Items.Fields, "dateAdded"); da == nil || da.PII != plinth.PIINone {
		t.Errorf("contactInformation.dateAdded %+v", da)
	}
	if v := plinth.FieldByName(ci.Items.Fields, "value"); v == nil || v.PII != plinth.PIIPersonal {
		t.Errorf("contactInformation.value %+v", v)
	}
}

// checkInherited checks nested fields carry a PII class, the parent's
// unless they set their own (only lower or equal in the shipped specs).
func checkInherited(t *testing.T, f *plinth.Field) {
	t.Helper()
	var nested []*plinth.Field
	if f.Items != nil {
		nested = append(nested, f.Items)
	}
	nested = append(nested, f.Fields...)
	for _, n := range nested {
		if n.PII == "" {
			t.Errorf("%s.%s has no pii class", f.Name, n.Name)
		}
		if n.PII == plinth.PIISpecial && f.PII != plinth.PIISpecial {
			t.Errorf("%s.%s is special inside a %s field", f.Name, n.Name, f.PII)
		}
		checkInherited(t, n)
	}
}

func TestInheritedPII(t *testing.T) {
	d, err := spec.Parse("domains/test.yaml", []byte(withFields(`
- name: history
  type: array
  pii: special
  items:
    type: object
    fields:
      - name: note
        type: string
      - name: at
        type: date
        pii: none
      - name: tags
        type: array
        items: {type: string}
- name: place
  type: object
  pii: personal
  fields:
    - name: postCode
      type: string
`)))
	if err != nil {
		t.Fatal(err)
	}
	e := d.Entities[0]
	h := e.Field("history")
	note := plinth.FieldByName(h.Items.Fields, "note")
	at := plinth.FieldByName(h.Items.Fields, "at")
	tags := plinth.FieldByName(h.Items.Fields, "tags")
	pc := plinth.FieldByName(e.Field("place").Fields, "postCode")
	got := []plinth.PII{h.Items.PII, note.PII, at.PII, tags.PII, tags.Items.PII, pc.PII}
	want := []plinth.PII{plinth.PIISpecial, plinth.PIISpecial, plinth.PIINone, plinth.PIISpecial, plinth.PIISpecial, plinth.PIIPersonal}
	if !slices.Equal(got, want) {
		t.Errorf("pii %v, want %v", got, want)
	}
}

// base is a valid spec up to its entity's fields; the fields and filters
// each case adds start on line 15.
const base = `domain: test
description: A test domain.
owner:
  serviceArea: Testing
  productOwner: test@example.org
entities:
  - name: thing
    plural: things
    key:
      name: id
      type: uuid
      generated: true
      pii: none
    fields:
`

// withFields returns base with the fields (written unindented) added, so
// the first field's line is 15.
func withFields(fields string) string {
	return base + indent(fields, "      ")
}

// withFilters returns a spec whose fields are the given ones and whose
// filters follow them, "    filters:" on the line after the last field.
func withFilters(fields, filters string) string {
	return withFields(fields) + "    filters:\n" + indent(filters, "      ")
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimPrefix(s, "\n"), "\n") {
		if line == "" {
			continue
		}
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}

// labelField holds valid fields that filter cases share, on lines 15–42.
const labelField = `
- name: label
  type: string
  pii: none
- name: dateOfBirth
  type: date
  pii: personal
- name: count
  type: integer
  pii: none
- name: place
  type: object
  pii: none
  fields:
    - {name: postCode, type: string}
- name: addresses
  type: array
  pii: personal
  items:
    type: object
    fields:
      - {name: postCode, type: string, format: ukPostcode}
      - name: lines
        type: array
        items: {type: string}
- name: tags
  type: array
  pii: none
  items: {type: string}
`

// filterLine is the line of the first filter after labelField.
const filterLine = 15 + 28 + 1

const file = "domains/test.yaml"

func at(line int, msg string) string { return fmt.Sprintf("%s:%d: %s", file, line, msg) }

const types = "string, integer, number, boolean, date, datetime, uuid, object, array"

const formats = "email, phone, ukPostcode, nhsNumber, niNumber, uprn"

var brokenSpecs = []struct {
	name string
	yaml string
	want []string
}{
	// Syntax and shape.
	{"empty file", "", []string{"domains/test.yaml:1: the spec is empty"}},
	{"only a comment", "# nothing here\n", []string{"domains/test.yaml:1: the spec is empty"}},
	{"yaml syntax error", "domain: test\ndescription: [unclosed\nowner: x\n",
		[]string{at(2, "did not find expected ',' or ']'")}},
	{"yaml bad indentation", "domain: test\n  description: x: y\n",
		[]string{at(2, "mapping values are not allowed in this context")}},
	{"yaml tab", "domain: test\n\tdescription: x\n",
		[]string{at(2, "found a tab character that violates indentation")}},
	{"scalar document", "just a string\n", []string{at(1, "domain must be a mapping")}},
	{"list document", "- domain: test\n", []string{at(1, "domain must be a mapping")}},
	{"null document", "~\n", []string{at(1, "the spec is empty")}},
	{"only a document marker", "---\n", []string{at(1, "the spec is empty")}},
	{"two documents", "domain: a\n---\ndomain: b\n",
		[]string{at(2, "the file holds more than one YAML document; put each domain in a file of its own")}},

	// Domain level.
	{"missing domain keys", "sourceSystem: Mosaic\n", []string{
		at(1, `domain: "domain" is required`),
		at(1, `domain: "description" is required`),
		at(1, `domain: "owner" is required`),
		at(1, `domain: "entities" is required`),
	}},
	{"unknown domain key", strings.Replace(withFields(labelField), "owner:", "colour: blue\nowner:", 1),
		[]string{at(3, `domain: unknown key "colour" (known keys: dataSafety, description, domain, entities, owner, sourceSystem)`)}},
	{"dataSafety special not a policy", strings.Replace(withFields(labelField), "owner:", "dataSafety:\n  special: hide\nowner:", 1),
		[]string{at(4, `dataSafety.special: "hide" is not a policy; use remove (the default: the copy leaves special-category data out) or generalise (the copy keeps a coarse form)`)}},
	{"dataSafety unknown key", strings.Replace(withFields(labelField), "owner:", "dataSafety:\n  specials: remove\nowner:", 1),
		[]string{at(4, `dataSafety: unknown key "specials" (known keys: special)`)}},
	{"dataSafety a string", strings.Replace(withFields(labelField), "owner:", "dataSafety: remove\nowner:", 1),
		[]string{at(3, `dataSafety must be a mapping`)}},
	{"field dataSafety on a personal field", withFields(`
- name: label
  type: string
  pii: personal
  dataSafety: {special: generalise}
`), []string{at(18, `field "label": dataSafety applies only to special-category fields (pii: special); this field's pii is personal`)}},
	{"field dataSafety special not a policy", withFields(`
- name: religion
  type: string
  pii: special
  dataSafety:
    special: keep
`), []string{at(19, `field "religion": dataSafety.special: "keep" is not a policy; use remove (the default: the copy leaves special-category data out) or generalise (the copy keeps a coarse form)`)}},
	{"repeated domain key", "domain: a\n" + withFields(labelField),
		[]string{at(2, `domain: key "domain" is repeated`)}},
	{"domain not kebab-case", strings.Replace(withFields(labelField), "domain: test", "domain: Benefit_Claims", 1),
		[]string{at(1, `domain "Benefit_Claims" must be lower-case kebab-case, such as benefit-claims`)}},
	{"domain empty", strings.Replace(withFields(labelField), "domain: test", `domain: ""`, 1),
		[]string{at(1, `domain "" must be lower-case kebab-case, such as benefit-claims`)}},
	{"domain a list", strings.Replace(withFields(labelField), "domain: test", "domain: [a, b]", 1),
		[]string{at(1, "domain must be a string")}},
	{"description null", strings.Replace(withFields(labelField), "description: A test domain.", "description:", 1),
		[]string{at(2, "description must be a string")}},
	{"owner a string", strings.Replace(withFields(labelField), "owner:\n  serviceArea: Testing\n  productOwner: test@example.org\n", "owner: Testing\n\n\n", 1),
		[]string{at(3, "owner must be a mapping")}},
	{"owner missing and unknown keys", strings.Replace(withFields(labelField), "  productOwner: test@example.org\n", "  phone: 020 7946 0000\n", 1), []string{
		at(5, `owner: unknown key "phone" (known keys: cloudAccount, groups, productOwner, serviceArea)`),
		at(4, `owner: "productOwner" is required`),
	}},
	{"owner field a mapping", strings.Replace(withFields(labelField), "serviceArea: Testing", "serviceArea: {a: b}", 1),
		[]string{at(4, "owner.serviceArea must be a string")}},
	{"entities a mapping", "domain: test\ndescription: d\nowner: {serviceArea: a, productOwner: b}\nentities:\n  thing: {}\n",
		[]string{at(5, "entities must be a list")}},
	{"entities empty", "domain: test\ndescription: d\nowner: {serviceArea: a, productOwner: b}\nentities: []\n",
		[]string{at(4, "entities: a domain needs at least one entity")}},
	{"entities null", "domain: test\ndescription: d\nowner: {serviceArea: a, productOwner: b}\nentities:\n",
		[]string{at(4, "entities must be a list")}},
	{"entity a string", "domain: test\ndescription: d\nowner: {serviceArea: a, productOwner: b}\nentities:\n  - thing\n",
		[]string{at(5, "entity must be a mapping")}},

	// Entity level.
	{"missing entity keys", "domain: test\ndescription: d\nowner: {serviceArea: a, productOwner: b}\nentities:\n  - description: A thing.\n", []string{
		at(5, `entity: "name" is required`),
		at(5, `entity: "plural" is required`),
		at(5, `entity: "key" is required`),
		at(5, `entity: "fields" is required`),
	}},
	{"unknown entity key", strings.Replace(withFields(labelField), "    plural: things\n", "    plural: things\n    table: things\n", 1),
		[]string{at(9, `entity: unknown key "table" (known keys: description, fields, filters, key, name, plural)`)}},
	{"entity name not camelCase", strings.Replace(withFields(labelField), "name: thing", "name: Thing", 1),
		[]string{at(7, `entity "Thing": name must be camelCase without acronyms, such as benefitClaim`)}},
	{"entity name with a lower-case abbreviation is fine", strings.Replace(withFields(labelField), "name: thing", "name: nhsRecord", 1), nil},
	{"entity name with acronym", strings.Replace(withFields(labelField), "name: thing", "name: gpRecordID", 1),
		[]string{at(7, `entity "gpRecordID": name must be camelCase without acronyms, such as benefitClaim`)}},
	{"plural not kebab-case", strings.Replace(withFields(labelField), "plural: things", "plural: benefitClaims", 1),
		[]string{at(8, `entity "thing": plural "benefitClaims" must be lower-case kebab-case, such as benefit-claims`)}},
	{"plural snake_case", strings.Replace(withFields(labelField), "plural: things", "plural: benefit_claims", 1),
		[]string{at(8, `entity "thing": plural "benefit_claims" must be lower-case kebab-case, such as benefit-claims`)}},
	{"plural reserved healthcheck", strings.Replace(withFields(labelField), "plural: things", "plural: healthcheck", 1),
		[]string{at(8, `entity "thing": plural "healthcheck" is reserved by Plinth`)}},
	{"plural reserved reports", strings.Replace(withFields(labelField), "plural: things", "plural: reports", 1),
		[]string{at(8, `entity "thing": plural "reports" is reserved by Plinth`)}},
	{"plural used twice in a domain", withFields(labelField) + `  - name: other
    plural: things
    key: {name: id, type: integer, pii: none}
    fields:
      - {name: label, type: string, pii: none}
`, []string{at(43, `entity "other": plural "things" is used by another entity`)}},
	{"fields empty", strings.TrimSuffix(base, "    fields:\n") + "    fields: []\n",
		[]string{at(14, `entity "thing": fields: an entity needs at least one field besides its key`)}},
	{"fields a mapping", strings.TrimSuffix(base, "    fields:\n") + "    fields:\n      label: {type: string}\n",
		[]string{at(15, `entity "thing": fields must be a list`)}},
	{"filters a string", withFields(labelField) + "    filters: first_name\n",
		[]string{at(filterLine-1, `entity "thing": filters must be a list`)}},

	// Key.
	{"key missing keys", strings.Replace(withFields(labelField), "      name: id\n      type: uuid\n", "", 1), []string{
		at(10, `entity "thing": key: "name" is required`),
		at(10, `entity "thing": key: "type" is required`),
	}},
	{"key missing pii", strings.Replace(withFields(labelField), "      pii: none\n", "", 1),
		[]string{at(10, `entity "thing": key: "pii" is required`)}},
	{"key unknown key", strings.Replace(withFields(labelField), "      generated: true\n", "      generated: true\n      maxLength: 10\n", 1),
		[]string{at(13, `entity "thing": key: unknown key "maxLength" (known keys: description, generated, name, pii, type)`)}},
	{"key unknown type", strings.Replace(withFields(labelField), "type: uuid", "type: guid", 1),
		[]string{at(11, `key "id": unknown key type "guid" (use uuid, integer or string)`)}},
	{"key type date", strings.Replace(withFields(labelField), "type: uuid", "type: date", 1),
		[]string{at(11, `key "id": unknown key type "date" (use uuid, integer or string)`)}},
	{"generated string key", strings.Replace(withFields(labelField), "type: uuid", "type: string", 1),
		[]string{at(12, `key "id": a string key cannot be generated; use uuid or integer, or set generated: false`)}},
	{"generated not a boolean", strings.Replace(withFields(labelField), "generated: true", "generated: yes please", 1),
		[]string{at(12, "key generated must be true or false")}},
	{"key name not camelCase", strings.Replace(withFields(labelField), "name: id\n", "name: MosaicID\n", 1),
		[]string{at(10, `key "MosaicID": name must be camelCase without acronyms, such as mosaicId`)}},
	{"key named like a system field", strings.Replace(withFields(labelField), "name: id\n", "name: version\n", 1),
		[]string{at(10, `key "version": the name is reserved for a system field (version, createdAt, updatedAt)`)}},
	{"key unknown pii class", strings.Replace(withFields(labelField), "      pii: none\n", "      pii: secret\n", 1),
		[]string{at(13, `key "id": unknown pii class "secret" (use none, personal or special)`)}},
	{"key a string", strings.Replace(withFields(labelField), "    key:\n      name: id\n      type: uuid\n      generated: true\n      pii: none\n", "    key: id\n\n\n\n\n", 1),
		[]string{at(9, `entity "thing": key must be a mapping`)}},
	{"key missing, fields still checked", strings.Replace(withFields(`
- name: label
  type: dat
  pii: none
`), "    key:\n      name: id\n      type: uuid\n      generated: true\n      pii: none\n", "\n\n\n\n\n", 1), []string{
		at(7, `entity: "key" is required`),
		at(16, `field "label": unknown type "dat" (use `+types+`)`),
	}},

	// Fields.
	{"unknown type", withFields(`
- name: dateOfBirth
  type: dat
  pii: personal
`), []string{at(16, `field "dateOfBirth": unknown type "dat" (use `+types+`)`)}},
	{"unknown field key", withFields(`
- name: label
  type: string
  pii: none
  length: 10
`), []string{at(18, `field "label": unknown key "length" (known keys: dataSafety, description, enum, fields, format, items, max, maxLength, min, name, pattern, pii, references, required, type)`)}},
	{"repeated field key", withFields(`
- name: label
  type: string
  type: integer
  pii: none
`), []string{at(17, `field "label": key "type" is repeated`)}},
	{"missing field name", withFields(`
- type: string
  pii: none
`), []string{at(15, `field: "name" is required`)}},
	{"missing field type", withFields(`
- name: label
  pii: none
`), []string{at(15, `field "label": "type" is required`)}},
	{"missing pii on a top-level field", withFields(`
- name: label
  type: string
`), []string{at(15, `field "label": pii is required (none, personal or special)`)}},
	{"field a string", withFields(`
- label
`), []string{at(15, "field must be a mapping")}},
	{"field name not camelCase", withFields(`
- name: first_name
  type: string
  pii: personal
`), []string{at(15, `field "first_name": name must be camelCase without acronyms, such as dateOfBirth`)}},
	{"field name capitalised", withFields(`
- name: FirstName
  type: string
  pii: personal
`), []string{at(15, `field "FirstName": name must be camelCase without acronyms, such as dateOfBirth`)}},
	{"field name acronym", withFields(`
- name: nhsID
  type: string
  pii: personal
`), []string{at(15, `field "nhsID": name must be camelCase without acronyms, such as dateOfBirth`)}},
	{"field named version", withFields(`
- name: version
  type: integer
  pii: none
`), []string{at(15, `field "version": the name is reserved for a system field (version, createdAt, updatedAt)`)}},
	{"field named createdAt", withFields(`
- name: createdAt
  type: datetime
  pii: none
`), []string{at(15, `field "createdAt": the name is reserved for a system field (version, createdAt, updatedAt)`)}},
	{"nested field may be named version", withFields(`
- name: history
  type: object
  pii: none
  fields:
    - {name: version, type: integer}
`), nil},
	{"duplicate field names", withFields(`
- name: label
  type: string
  pii: none
- name: label
  type: integer
  pii: none
`), []string{at(18, `field "label": the name is used twice`)}},
	{"field named like the key", withFields(`
- name: id
  type: string
  pii: none
`), []string{at(15, `field "id": the name is used twice`)}},
	{"duplicate nested field names", withFields(`
- name: addresses
  type: array
  pii: personal
  items:
    type: object
    fields:
      - {name: postCode, type: string}
      - {name: postCode, type: string}
`), []string{at(22, `field "addresses.postCode": the name is used twice`)}},
	{"required not a boolean", withFields(`
- name: label
  type: string
  required: "yes"
  pii: none
`), []string{at(17, `field "label": required must be true or false`)}},
	{"type a list", withFields(`
- name: label
  type: [string]
  pii: none
`), []string{at(16, `field "label": type must be a string`)}},
	{"type null", withFields(`
- name: label
  type:
  pii: none
`), []string{at(16, `field "label": type must be a string`)}},
	{"name null", withFields(`
- name: ~
  type: string
  pii: none
`), []string{at(15, `field name must be a string`)}},

	// Constraints.
	{"maxLength on integer", withFields(`
- name: count
  type: integer
  maxLength: 3
  pii: none
`), []string{at(17, `field "count": maxLength applies only to string fields`)}},
	{"maxLength not positive", withFields(`
- name: label
  type: string
  maxLength: 0
  pii: none
`), []string{at(17, `field "label": maxLength must be a positive integer`)}},
	{"maxLength a string", withFields(`
- name: label
  type: string
  maxLength: ten
  pii: none
`), []string{at(17, `field "label": maxLength must be a positive integer`)}},
	{"min on string", withFields(`
- name: label
  type: string
  min: 1
  pii: none
`), []string{at(17, `field "label": min applies only to integer or number fields`)}},
	{"max on date", withFields(`
- name: dateOfBirth
  type: date
  max: 2020
  pii: personal
`), []string{at(17, `field "dateOfBirth": max applies only to integer or number fields`)}},
	{"min not a number", withFields(`
- name: count
  type: integer
  min: few
  pii: none
`), []string{at(17, `field "count": min must be a number`)}},
	{"max infinite", withFields(`
- name: count
  type: number
  max: .inf
  pii: none
`), []string{at(17, `field "count": max must be a number`)}},
	{"min greater than max", withFields(`
- name: count
  type: integer
  min: 10
  max: 1
  pii: none
`), []string{at(17, `field "count": min is greater than max`)}},
	{"enum on integer", withFields(`
- name: count
  type: integer
  enum: [1, 2]
  pii: none
`), []string{at(17, `field "count": enum applies only to string fields`)}},
	{"enum empty", withFields(`
- name: label
  type: string
  enum: []
  pii: none
`), []string{at(17, `field "label": enum needs at least one value`)}},
	{"enum a string", withFields(`
- name: label
  type: string
  enum: a, b
  pii: none
`), []string{at(17, `field "label": enum must be a list`)}},
	{"enum value a mapping", withFields(`
- name: label
  type: string
  enum: [a, {b: c}]
  pii: none
`), []string{at(17, `field "label": enum value must be a string`)}},
	{"bad pattern", withFields(`
- name: code
  type: string
  pattern: '^[A-Z+$'
  pii: none
`), []string{at(17, "field \"code\": pattern does not compile: missing closing ]: `[A-Z+$`")}},
	{"pattern on integer", withFields(`
- name: count
  type: integer
  pattern: '^[0-9]+$'
  pii: none
`), []string{at(17, `field "count": pattern applies only to string fields`)}},
	{"unknown format", withFields(`
- name: email
  type: string
  format: e-mail
  pii: personal
`), []string{at(17, `field "email": unknown format "e-mail" (use `+formats+`)`)}},
	{"format on integer", withFields(`
- name: phone
  type: integer
  format: phone
  pii: personal
`), []string{at(17, `field "phone": format phone applies only to string fields`)}},
	{"format uprn on date", withFields(`
- name: uprn
  type: date
  format: uprn
  pii: personal
`), []string{at(17, `field "uprn": format uprn applies only to string or integer fields`)}},
	{"format uprn on integer is fine", withFields(`
- name: uprn
  type: integer
  format: uprn
  pii: personal
`), nil},
	{"unknown pii class", withFields(`
- name: label
  type: string
  pii: sensitive
`), []string{at(17, `field "label": unknown pii class "sensitive" (use none, personal or special)`)}},
	{"unknown pii class on a nested field", withFields(`
- name: place
  type: object
  pii: personal
  fields:
    - {name: postCode, type: string, pii: private}
`), []string{at(19, `field "place.postCode": unknown pii class "private" (use none, personal or special)`)}},
	{"unknown pii class on array items", withFields(`
- name: tags
  type: array
  pii: none
  items: {type: string, pii: secret}
`), []string{at(18, `field "tags": items: unknown pii class "secret" (use none, personal or special)`)}},

	// Objects and arrays.
	{"object without fields", withFields(`
- name: place
  type: object
  pii: none
`), []string{at(15, `field "place": an object needs fields`)}},
	{"object with empty fields", withFields(`
- name: place
  type: object
  pii: none
  fields: []
`), []string{at(15, `field "place": an object needs fields`)}},
	{"object with items", withFields(`
- name: place
  type: object
  pii: none
  items: {type: string}
  fields:
    - {name: postCode, type: string}
`), []string{at(18, `field "place": items is only for arrays`)}},
	{"array without items", withFields(`
- name: tags
  type: array
  pii: none
`), []string{at(15, `field "tags": an array needs items`)}},
	{"array with fields", withFields(`
- name: tags
  type: array
  pii: none
  fields:
    - {name: tag, type: string}
`), []string{
		at(19, `field "tags": fields is only for objects; give arrays items`),
		at(15, `field "tags": an array needs items`),
	}},
	{"arrays of arrays", withFields(`
- name: matrix
  type: array
  pii: none
  items:
    type: array
    items: {type: integer}
`), []string{at(19, `field "matrix": arrays of arrays are not supported; use an array of objects`)}},
	{"items with a name", withFields(`
- name: tags
  type: array
  pii: none
  items: {name: tag, type: string}
`), []string{at(18, `field "tags": items: unknown key "name" (known keys: dataSafety, description, enum, fields, format, items, max, maxLength, min, pattern, pii, references, required, type)`)}},
	{"items a string", withFields(`
- name: tags
  type: array
  pii: none
  items: string
`), []string{at(18, `field "tags": items must be a mapping`)}},
	{"fields on a string", withFields(`
- name: label
  type: string
  pii: none
  fields:
    - {name: x, type: string}
`), []string{at(19, `field "label": fields is only for objects`)}},
	{"items on a string", withFields(`
- name: label
  type: string
  pii: none
  items: {type: string}
`), []string{at(18, `field "label": items is only for arrays`)}},
	{"nested errors carry the path", withFields(`
- name: addresses
  type: array
  pii: personal
  items:
    type: object
    fields:
      - name: lines
        type: array
        items:
          type: object
          fields:
            - {name: text, type: strin}
            - {name: Text2, type: string}
`), []string{
		at(26, `field "addresses.lines.text": unknown type "strin" (use `+types+`)`),
		at(27, `field "addresses.lines.Text2": name must be camelCase without acronyms, such as dateOfBirth`),
	}},

	// Filters.
	{"filter unknown field", withFilters(labelField, `
- {param: surname, field: surname, match: exact}
`), []string{at(filterLine, `filter "surname": field "surname" is not a field of thing`)}},
	{"filter unknown item field", withFilters(labelField, `
- {param: town, field: addresses.town, match: exact}
`), []string{at(filterLine, `filter "town": field "addresses.town" is not a field of the items of addresses`)}},
	{"filter unknown match", withFilters(labelField, `
- {param: label, field: label, match: fuzzy}
`), []string{at(filterLine, `filter "label": unknown match "fuzzy" (use exact, prefix, contains or range)`)}},
	{"filter contains on a date", withFilters(labelField, `
- {param: date_of_birth, field: dateOfBirth, match: contains}
`), []string{at(filterLine, `filter "date_of_birth": match contains applies only to string fields, and "dateOfBirth" is date`)}},
	{"filter prefix on an integer", withFilters(labelField, `
- {param: count, field: count, match: prefix}
`), []string{at(filterLine, `filter "count": match prefix applies only to string fields, and "count" is integer`)}},
	{"filter range on a string", withFilters(labelField, `
- {param: label, field: label, match: range}
`), []string{at(filterLine, `filter "label": match range applies only to integer, number, date and datetime fields, and "label" is string`)}},
	{"filter on an object", withFilters(labelField, `
- {param: place, field: place, match: exact}
`), []string{at(filterLine, `filter "place": field "place" is an object; filters compare single values`)}},
	{"filter on an array", withFilters(labelField, `
- {param: tags, field: tags, match: exact}
`), []string{at(filterLine, `filter "tags": field "tags" is an array; filters compare single values`)}},
	{"filter reaches into an object", withFilters(labelField, `
- {param: postcode, field: place.postCode, match: exact}
`), []string{at(filterLine, `filter "postcode": field "place.postCode": filters reach a top-level field or a field of an array of objects (such as addresses.postCode)`)}},
	{"filter reaches into an array of strings", withFilters(labelField, `
- {param: tag, field: tags.value, match: exact}
`), []string{at(filterLine, `filter "tag": field "tags.value": filters reach a top-level field or a field of an array of objects (such as addresses.postCode)`)}},
	{"filter reaches too deep", withFilters(labelField, `
- {param: line, field: addresses.lines.text, match: exact}
`), []string{at(filterLine, `filter "line": field "addresses.lines.text": filters reach a top-level field or a field of an array of objects (such as addresses.postCode)`)}},
	{"filter on an array inside items", withFilters(labelField, `
- {param: lines, field: addresses.lines, match: exact}
`), []string{at(filterLine, `filter "lines": field "addresses.lines" is an array; filters compare single values`)}},
	{"filter param not snake_case", withFilters(labelField, `
- {param: firstName, field: label, match: exact}
`), []string{at(filterLine, `filter "firstName": param must be snake_case, such as last_name`)}},
	{"filter param kebab-case", withFilters(labelField, `
- {param: first-name, field: label, match: exact}
`), []string{at(filterLine, `filter "first-name": param must be snake_case, such as last_name`)}},
	{"filter param limit", withFilters(labelField, `
- {param: limit, field: count, match: exact}
`), []string{at(filterLine, `filter "limit": param "limit" is reserved for pagination`)}},
	{"filter param cursor", withFilters(labelField, `
- {param: cursor, field: label, match: exact}
`), []string{at(filterLine, `filter "cursor": param "cursor" is reserved for pagination`)}},
	{"duplicate filter param", withFilters(labelField, `
- {param: label, field: label, match: exact}
- {param: label, field: label, match: prefix}
`), []string{at(filterLine+1, `filter "label": query parameter "label" is used twice`)}},
	{"range param collides with a later filter", withFilters(labelField, `
- {param: date_of_birth, field: dateOfBirth, match: range}
- {param: date_of_birth_from, field: dateOfBirth, match: exact}
`), []string{at(filterLine+1, `filter "date_of_birth_from": query parameter "date_of_birth_from" is used twice`)}},
	{"range param collides with an earlier filter", withFilters(labelField, `
- {param: count_to, field: count, match: exact}
- {param: count, field: count, match: range}
`), []string{at(filterLine+1, `filter "count": query parameter "count_to" is used twice`)}},
	{"filter missing keys", withFilters(labelField, `
- {param: label}
`), []string{
		at(filterLine, `filter: "field" is required`),
		at(filterLine, `filter: "match" is required`),
	}},
	{"filter unknown key", withFilters(labelField, `
- {param: label, field: label, match: exact, caseSensitive: true}
`), []string{at(filterLine, `filter: unknown key "caseSensitive" (known keys: field, match, param)`)}},
	{"filter field a list", withFilters(labelField, `
- {param: label, field: [label], match: exact}
`), []string{at(filterLine, `filter "label": field must be a string`)}},
	{"filter param and match null", withFilters(labelField, `
- {param: ~, field: label, match: ~}
`), []string{
		at(filterLine, "filter param must be a string"),
		at(filterLine, "filter match must be a string"),
	}},
	{"valid filters", withFilters(labelField, `
- {param: label, field: label, match: contains}
- {param: date_of_birth, field: dateOfBirth, match: range}
- {param: count, field: count, match: range}
- {param: postcode, field: addresses.postCode, match: exact}
`), nil},

	// Several problems at once, in order.
	{"several problems", `domain: Test
description: A test domain.
owner:
  serviceArea: Testing
  productOwner: test@example.org
entities:
  - name: Thing
    plural: healthcheck
    key: {name: id, type: string, generated: true, pii: none}
    fields:
      - name: nhsID
        type: string
        format: nhs
        pii: personal
      - name: count
        type: integer
        maxLength: 3
        min: 5
        max: 1
      - name: notes
        type: string
        pii: none
      - name: notes
        type: text
        pii: none
    filters:
      - {param: limit, field: count, match: exact}
      - {param: firstName, field: missing, match: exact}
`, []string{
		at(1, `domain "Test" must be lower-case kebab-case, such as benefit-claims`),
		at(7, `entity "Thing": name must be camelCase without acronyms, such as benefitClaim`),
		at(8, `entity "Thing": plural "healthcheck" is reserved by Plinth`),
		at(9, `key "id": a string key cannot be generated; use uuid or integer, or set generated: false`),
		at(11, `field "nhsID": name must be camelCase without acronyms, such as dateOfBirth`),
		at(13, `field "nhsID": unknown format "nhs" (use `+formats+`)`),
		at(15, `field "count": pii is required (none, personal or special)`),
		at(17, `field "count": maxLength applies only to string fields`),
		at(18, `field "count": min is greater than max`),
		at(24, `field "notes": unknown type "text" (use `+types+`)`),
		at(27, `filter "limit": param "limit" is reserved for pagination`),
		at(28, `filter "firstName": param must be snake_case, such as last_name`),
		at(28, `filter "firstName": field "missing" is not a field of Thing`),
	}},
}

func TestBrokenSpecs(t *testing.T) {
	for _, tc := range brokenSpecs {
		t.Run(tc.name, func(t *testing.T) {
			d, err := spec.Parse(file, []byte(tc.yaml))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error:\n%v\nspec:\n%s", err, numbered(tc.yaml))
				}
				if d == nil {
					t.Fatal("no domain and no error")
				}
				return
			}
			var se *spec.Error
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T), want a *spec.Error\nspec:\n%s", err, err, numbered(tc.yaml))
			}
			if d != nil {
				t.Errorf("a domain came back with the error")
			}
			if !slices.Equal(se.Problems, tc.want) {
				t.Errorf("problems:\n%s\nwant:\n%s\nspec:\n%s", strings.Join(se.Problems, "\n"), strings.Join(tc.want, "\n"), numbered(tc.yaml))
			}
			if err.Error() != strings.Join(tc.want, "\n") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func numbered(s string) string {
	var b strings.Builder
	for i, line := range strings.Split(s, "\n") {
		fmt.Fprintf(&b, "%3d  %s\n", i+1, line)
	}
	return b.String()
}

const minimal = `domain: %s
description: A test domain.
owner: {serviceArea: Testing, productOwner: test@example.org}
entities:
  - name: %s
    plural: %s
    key: {name: id, type: uuid, generated: true, pii: none}
    fields:
      - {name: label, type: string, pii: none}
`

func TestLoadFS(t *testing.T) {
	spec1 := func(domain, name, plural string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte(fmt.Sprintf(minimal, domain, name, plural))}
	}
	tests := []struct {
		name    string
		fsys    fstest.MapFS
		dir     string
		domains []string
		want    []string // *spec.Error problems
		wantErr string   // any other error
	}{
		{
			name: "two domains, yaml and yml, other files ignored",
			fsys: fstest.MapFS{
				"specs/a.yaml":        spec1("alpha", "apple", "apples"),
				"specs/b.yml":         spec1("beta", "banana", "bananas"),
				"specs/README.md":     {Data: []byte("# not a spec")},
				"specs/sub/c.yaml":    spec1("gamma", "cherry", "cherries"),
				"specs/mappings.json": {Data: []byte("{}")},
			},
			dir:     "specs",
			domains: []string{"alpha", "beta"},
		},
		{
			name: "duplicate plural across domains",
			fsys: fstest.MapFS{
				"a.yaml": spec1("people", "resident", "residents"),
				"b.yaml": spec1("social-care", "person", "residents"),
			},
			dir:  ".",
			want: []string{`b.yaml: entity "person": path /api/v1/residents is also used in a.yaml`},
		},
		{
			name: "duplicate domain name",
			fsys: fstest.MapFS{
				"a.yaml": spec1("residents", "resident", "residents"),
				"b.yaml": spec1("residents", "person", "people"),
			},
			dir:  ".",
			want: []string{`b.yaml: domain "residents" is also defined in a.yaml`},
		},
		{
			name: "problems from every file",
			fsys: fstest.MapFS{
				"a.yaml": {Data: []byte("")},
				"b.yaml": spec1("beta", "Banana", "bananas"),
				"c.yaml": spec1("gamma", "cherry", "cherries"),
			},
			dir: ".",
			want: []string{
				"a.yaml:1: the spec is empty",
				`b.yaml:5: entity "Banana": name must be camelCase without acronyms, such as benefitClaim`,
			},
		},
		{
			name:    "no yaml",
			fsys:    fstest.MapFS{"specs/README.md": {Data: []byte("# nothing")}},
			dir:     "specs",
			wantErr: "no domain specs (*.yaml) found in specs",
		},
		{
			name:    "empty directory",
			fsys:    fstest.MapFS{"specs/sub/a.yaml": spec1("alpha", "apple", "apples")},
			dir:     "specs",
			wantErr: "no domain specs (*.yaml) found in specs",
		},
		{
			name:    "missing directory",
			fsys:    fstest.MapFS{},
			dir:     "nowhere",
			wantErr: "reading domain specs: open nowhere: file does not exist",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := spec.LoadFS(tc.fsys, tc.dir)
			switch {
			case tc.wantErr != "":
				var se *spec.Error
				if err == nil || errors.As(err, &se) || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
			case tc.want != nil:
				var se *spec.Error
				if !errors.As(err, &se) {
					t.Fatalf("error %v, want a *spec.Error", err)
				}
				if !slices.Equal(se.Problems, tc.want) {
					t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(se.Problems, "\n"), strings.Join(tc.want, "\n"))
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, d := range ds {
					names = append(names, d.Name)
				}
				if !slices.Equal(names, tc.domains) {
					t.Errorf("domains %v, want %v", names, tc.domains)
				}
			}
			if err != nil && ds != nil {
				t.Errorf("domains came back with an error")
			}
		})
	}
}

// TestOddInputs replaces, one at a time, every node of the shipped specs
// with values of the wrong shape (null, a string, a number, a list, a
// mapping) and checks the loader reports problems and never panics.
func TestOddInputs(t *testing.T) {
	odd := []*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!null", Value: "~"},
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: "odd"},
		{Kind: yaml.ScalarNode, Tag: "!!int", Value: "-1"},
		{Kind: yaml.ScalarNode, Tag: "!!float", Value: ".nan"},
		{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"},
		{Kind: yaml.SequenceNode, Tag: "!!seq"},
		{Kind: yaml.SequenceNode, Tag: "!!seq", Content: []*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!str", Value: "a"}}},
		{Kind: yaml.MappingNode, Tag: "!!map"},
		{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!str", Value: "type"}, {Kind: yaml.ScalarNode, Tag: "!!str", Value: "object"}}},
	}
	for _, name := range []string{"residents.yaml", "contacts.yaml"} {
		data, err := domains.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		var nodes []*yaml.Node
		var collect func(n *yaml.Node)
		collect = func(n *yaml.Node) {
			nodes = append(nodes, n)
			for _, c := range n.Content {
				collect(c)
			}
		}
		collect(doc.Content[0])
		runs := 0
		for _, n := range nodes {
			saved := *n
			for _, o := range odd {
				*n = *o
				n.Line, n.Column = saved.Line, saved.Column
				out, err := yaml.Marshal(&doc)
				if err != nil {
					continue
				}
				runs++
				func() {
					defer func() {
						if r := recover(); r != nil {
							t.Fatalf("panic %v on:\n%s", r, out)
						}
					}()
					d, err := spec.Parse(name, out)
					if err == nil && d == nil {
						t.Fatalf("no domain and no error for:\n%s", out)
					}
					var se *spec.Error
					if err != nil && (!errors.As(err, &se) || len(se.Problems) == 0) {
						t.Fatalf("error %v is not a spec.Error with problems", err)
					}
				}()
			}
			*n = saved
		}
		if runs < 500 {
			t.Errorf("%s: only %d variants", name, runs)
		}
	}
}

// TestOddSnippets are hand-picked odd inputs that must give problems, not
// panics.
func TestOddSnippets(t *testing.T) {
	for i, s := range []string{
		"---\n",
		"---\n---\n",
		"[]",
		"{}",
		"domain:\n",
		"domain: &a test\ndescription: *a\nowner: *a\nentities: *a\n",
		"<<: {domain: test}\n",
		"? [a, b]\n: c\n",
		"entities: [[], [[]], {}, ~, 1]\n",
		withFields("- {name: a, type: array, pii: none, items: {type: array, items: {type: array}}}\n"),
		withFields("- {name: a, type: object, pii: none, fields: [~, [], {}, {name: ~, type: ~}]}\n"),
		withFields("- {name: a, type: array, pii: none, items: {type: object, fields: ~}}\n"),
		withFields("- {name: a, type: string, pii: none, maxLength: [1], pattern: [x], enum: {a: b}, format: [email]}\n"),
		withFields("- {name: a, type: integer, pii: none, min: [1], max: {a: b}, format: ~}\n"),
		withFilters("- {name: a, type: string, pii: none}\n", "- ~\n- []\n- {param: ~, field: ~, match: ~}\n- {param: a, field: '', match: exact}\n- {param: b, field: a., match: exact}\n- {param: c, field: .a, match: exact}\n"),
		strings.Replace(withFields("- {name: a, type: string, pii: none}\n"), "    key:\n", "    key: ~\n    k:\n", 1),
		"domain: test\x00\n",
		"\xff\xfe",
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic %v on:\n%s", r, s)
				}
			}()
			_, err := spec.Parse(file, []byte(s))
			var se *spec.Error
			if !errors.As(err, &se) || len(se.Problems) == 0 {
				t.Fatalf("error %v, want problems, for:\n%s", err, s)
			}
			for _, p := range se.Problems {
				if !strings.HasPrefix(p, file+":") {
					t.Errorf("problem %q does not start with the file name", p)
				}
			}
		})
	}
}

// FuzzParse checks the loader never panics and always explains a failure.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"residents.yaml", "contacts.yaml"} {
		data, err := domains.FS.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, tc := range brokenSpecs {
		f.Add([]byte(tc.yaml))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := spec.Parse(file, data)
		if err == nil {
			if d == nil || len(d.Entities) == 0 {
				t.Fatalf("no error and no entities")
			}
			for _, e := range d.Entities {
				if len(e.Fields) < 2 || e.KeyField().Name != e.Key.Name {
					t.Fatalf("entity %q without key or fields", e.Name)
				}
			}
			return
		}
		var se *spec.Error
		if !errors.As(err, &se) || len(se.Problems) == 0 {
			t.Fatalf("error %v is not a spec.Error with problems", err)
		}
	})
}

// TestReferences checks references name an entity by its plural, in any
// domain, and match the type of its key.
func TestReferences(t *testing.T) {
	other := `domain: people
description: People.
owner: {serviceArea: Testing, productOwner: p@example.org, cloudAccount: test}
sourceSystem: Test
entities:
  - name: person
    plural: people
    key: {name: personId, type: integer, generated: true, pii: personal}
    fields:
      - {name: label, type: string, pii: none}
`
	ref := func(typ, plural string) string {
		return `domain: notes
description: Notes.
owner: {serviceArea: Testing, productOwner: p@example.org, cloudAccount: test}
sourceSystem: Test
entities:
  - name: note
    plural: notes
    key: {name: id, type: uuid, generated: true, pii: none}
    fields:
      - {name: personId, type: ` + typ + `, references: ` + plural + `, pii: personal}
`
	}
	load := func(notes string) error {
		_, err := spec.LoadFS(fstest.MapFS{"a.yaml": {Data: []byte(other)}, "b.yaml": {Data: []byte(notes)}}, ".")
		return err
	}
	ds, err := spec.LoadFS(fstest.MapFS{"a.yaml": {Data: []byte(other)}, "b.yaml": {Data: []byte(ref("integer", "people"))}}, ".")
	if err != nil {
		t.Fatal(err)
	}
	if got := ds[1].Entities[0].Field("personId").References; got != "people" {
		t.Errorf("References = %q", got)
	}
	for _, tc := range []struct{ notes, want string }{
		{ref("integer", "persons"), `references "persons" names no entity`},
		{ref("uuid", "people"), `references people, whose key personId is of type integer; give the field type integer`},
		{ref("date", "people"), `references applies only to uuid, integer or string fields`},
	} {
		if err := load(tc.notes); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
	// The shipped contacts refer to residents.
	shipped, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range shipped {
		for _, e := range d.Entities {
			if e.Plural == "contacts" && e.Field("residentId").References != "residents" {
				t.Error("contacts.residentId does not reference residents")
			}
		}
	}
}

// The special-category policy lives in the spec: per domain, and per
// special-category field (which wins).
func TestDataSafetyPolicy(t *testing.T) {
	y := strings.Replace(withFields(`
- name: religion
  type: string
  pii: special
- name: ethnicity
  type: string
  pii: special
  dataSafety: {special: remove}
`), "owner:", "dataSafety:\n  special: generalise\nowner:", 1)
	ds, err := spec.LoadFS(fstest.MapFS{file: {Data: []byte(y)}}, "domains")
	if err != nil {
		t.Fatal(err)
	}
	d := ds[0]
	e := d.Entities[0]
	if d.DataSafety.Special != plinth.SpecialGeneralise {
		t.Errorf("domain policy %q, want generalise", d.DataSafety.Special)
	}
	if f := plinth.FieldByName(e.Fields, "religion"); f.Special != "" {
		t.Errorf("religion has its own policy %q; it should take the domain's", f.Special)
	}
	if f := plinth.FieldByName(e.Fields, "ethnicity"); f.Special != plinth.SpecialRemove {
		t.Errorf("ethnicity policy %q, want remove", f.Special)
	}
	plain, err := spec.LoadFS(fstest.MapFS{file: {Data: []byte(withFields(labelField))}}, "domains")
	if err != nil || plain[0].DataSafety.Special != "" {
		t.Errorf("a spec without dataSafety: %q, %v; want no policy (remove by default)", plain[0].DataSafety.Special, err)
	}
}

// TestLoadFSSkipsLegacyMappings: a legacy mapping beside the specs
// (<domain>.<source>.mapping.yaml) is not read as a domain spec.
func TestLoadFSSkipsLegacyMappings(t *testing.T) {
	fsys := fstest.MapFS{
		"residents.yaml":              {Data: []byte(minimalSpecForMappingTest)},
		"residents.case.mapping.yaml": {Data: []byte("domain: residents\nnot: a spec\n")},
	}
	ds, err := spec.LoadFS(fsys, ".")
	if err != nil || len(ds) != 1 {
		t.Fatalf("%v %v", ds, err)
	}
}

const minimalSpecForMappingTest = `domain: residents
description: d
owner: {serviceArea: s, productOwner: p@example.org}
entities:
  - name: resident
    plural: residents
    key: {name: id, type: integer, generated: true, pii: none}
    fields:
      - {name: firstName, type: string, pii: personal}
`

func TestOwnerGroups(t *testing.T) {
	body := `domain: test
description: A test domain.
owner:
  serviceArea: Testing
  productOwner: test@example.org
  groups: [test-owners, data-stewards]
entities:
  - name: thing
    plural: things
    key: {name: id, type: uuid, generated: true, pii: none}
    fields:
      - {name: label, type: string, pii: none}
`
	ds, err := spec.LoadFS(fstest.MapFS{"test.yaml": {Data: []byte(body)}}, ".")
	if err != nil {
		t.Fatal(err)
	}
	if got := ds[0].Owner.Groups; !slices.Equal(got, []string{"test-owners", "data-stewards"}) {
		t.Fatalf("owner groups = %v", got)
	}
}
