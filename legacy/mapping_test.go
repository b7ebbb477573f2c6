package legacy

import (
	"strings"
	"testing"

	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/plinthtest"
)

// shipped loads a shipped mapping and resolves it against the shipped domains.
func shipped(t testing.TB, name string) *Mapping {
	t.Helper()
	data, err := domains.FS.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(name, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Resolve(plinthtest.Domains(t)); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestShippedCaseMappingResolves(t *testing.T) {
	m := shipped(t, "residents.case.mapping.yaml")
	if m.Entity.Plural != "residents" || m.System != "Mosaic" || len(m.Children) != 2 {
		t.Fatalf("mapping %+v", m)
	}
}

func TestBuildCleansMessyRow(t *testing.T) {
	m := shipped(t, "residents.case.mapping.yaml")
	root := Row{"person_id": int64(7), "title": " mrs ", "first_name": "  aNNE ", "last_name": "O'NEILL", "date_of_birth": "03/11/1950",
		"gender": " f", "nhs_id": "943 476 5919", "restricted": "y", "email_address": " Anne@Example.ORG ", "context_flag": "a",
		"full_ethnicity_code": "zz", "date_of_death": ""}
	addr := func(id int64, start, end string, uprn any, display string) Row {
		r := Row{"ref_addresses_people_id": id, "person_id": int64(7), "address": " 1 High St ", "post_code": "e81dy",
			"unique_id": uprn, "start_date": start, "is_contact_address": "N", "is_display_address": display}
		if end != "" {
			r["end_date"] = end
		}
		return r
	}
	children := map[string][]Row{
		"addresses": {addr(1, "2001-01-01", "2010-05-01", int64(111), "Y"), addr(2, "2010-05-01", "", int64(222), "Y")},
		"phoneNumbers": {{"telephone_number": "020 7946 0000", "telephone_number_type": "HOME "},
			{"telephone_number": "020 7946 0000", "telephone_number_type": "home"}},
	}
	data, err := m.Build(root, children)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"mosaicId": int64(7), "title": "Mrs", "firstName": "Anne", "lastName": "O'neill", "dateOfBirth": "1950-11-03",
		"gender": "F", "nhsNumber": "9434765919", "restricted": true, "emailAddress": "anne@example.org", "ageContext": "A",
		"ethnicity": "Not known", "uprn": "222"}
	for k, v := range want {
		if data[k] != v {
			t.Errorf("%s = %#v, want %#v", k, data[k], v)
		}
	}
	if _, ok := data["dateOfDeath"]; ok {
		t.Error("an empty date of death should be null")
	}
	addrs := data["addresses"].([]any)
	if len(addrs) != 2 || addrs[0].(map[string]any)["endDate"] != "2010-05-01" || addrs[1].(map[string]any)["postCode"] != "E8 1DY" {
		t.Errorf("addresses %v", addrs)
	}
	if phones := data["phoneNumbers"].([]any); len(phones) != 1 {
		t.Errorf("duplicate phones kept: %v", phones)
	}
	if HashData(data) != HashData(data) {
		t.Error("hash not stable")
	}
}

func TestBadMappingReportsEveryProblemWithLine(t *testing.T) {
	src := `domain: residents
entity: residents
source: {system: Mosaic, kind: oracle, connection: "mysql://root:secret@db/case"}
table: dm_persons
key: {columns: [person_id]}
fields:
  firstName: {column: first_name, transforms: [trim, shout]}
  lastName: {column: last_name}
  nickname: {column: nick}
  gender: {column: gender, transforms: [{lookup: sexes}]}
children:
  phoneNumbers:
    table: dm_telephone_numbers
    join: [person_id, other]
    fields:
      number: telephone_number
`
	_, err := Parse("bad.mapping.yaml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`bad.mapping.yaml:3: source.kind "oracle"`,
		`bad.mapping.yaml:3: source.connection names the environment variable`,
		`bad.mapping.yaml:7: field firstName: unknown transform "shout"`,
		`bad.mapping.yaml:10: field gender: lookup "sexes" is not declared`,
		`bad.mapping.yaml:12: child phoneNumbers: join names 2 column(s)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%s", want, err)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Error("the message shows the password")
	}
	// The spec-level problems appear once the syntax is right.
	fixed := strings.NewReplacer("oracle", "mariadb", `"mysql://root:secret@db/case"`, "PLINTH_LEGACY_CASE", ", shout", "", "{lookup: sexes}", "trim", ", other", "").Replace(src)
	m, err := Parse("bad.mapping.yaml", []byte(fixed))
	if err != nil {
		t.Fatal(err)
	}
	err = m.Resolve(plinthtest.Domains(t))
	if err == nil || !strings.Contains(err.Error(), `bad.mapping.yaml:9: field "nickname" is not a field of residents`) {
		t.Fatalf("resolve: %v", err)
	}
}
