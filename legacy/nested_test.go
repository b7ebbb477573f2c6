package legacy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/spec"
)

// nestedMapping is the housing template's shape with the given children
// of householdMembers.
func nestedMapping(children string) string {
	return `domain: housing
entity: tenancies
source: {system: Universal Housing, kind: mariadb, connection: PLINTH_LEGACY_HOUSING}
table: tenagree
key: {columns: [tag_ref]}
fields:
  householdRef: house_ref
children:
  householdMembers:
    table: member
    join: [house_ref]
    parent: [house_ref]
    fields:
      personNumber: person_no
    children:
` + children
}

// TestNestedMappingSyntaxProblems: the loader reports, with their lines,
// a nested child or link without parent columns, a link whose join and
// parent do not pair, and an item's first of a child it does not hold.
func TestNestedMappingSyntaxProblems(t *testing.T) {
	src := nestedMapping(`      phoneNumbers:
        table: CCPhone
        through:
          - {table: CCContactLink, join: [Key1, Key2], parent: [house_ref]}
        join: [ContactNo]
        fields:
          number: PhoneNo
          type: {first: {child: kind, item: name}}
      emailAddresses:
        table: CCEmailAddress
        join: [ContactNo]
        fields:
          emailAddress: Email
`)
	_, err := Parse("nested.mapping.yaml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"nested.mapping.yaml:19: child phoneNumbers: through CCContactLink: join names 2 column(s), one per parent column (house_ref)",
		"nested.mapping.yaml:16: child householdMembers.phoneNumbers: name its parent columns (those of the link table CCContactLink its join columns pair with)",
		`nested.mapping.yaml:23: field householdMembers.phoneNumbers.type: first.child "kind" is not declared under its children`,
		"nested.mapping.yaml:24: child householdMembers.emailAddresses: name its parent columns (those of member its join columns pair with)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%s", want, err)
		}
	}
}

// TestCheckNestedJoinsAgainstSource: migrate check follows every join of
// a nested mapping into the live source and reports, all at once and with
// lines: an unknown link table, unknown columns at each depth, join
// columns that cannot be compared with their parent columns, a joined table
// without a primary key, a lookup nested in a lookup that is not one, an
// item field that is not in the spec.
func TestCheckNestedJoinsAgainstSource(t *testing.T) {
	ctx := context.Background()
	src := templateSource(t, KindMariaDB, "housing")
	if _, err := src.DB.ExecContext(ctx, "CREATE TABLE cc_email_nopk (ContactNo BIGINT, Email VARCHAR(50))"); err != nil {
		t.Fatal(err)
	}
	ds, err := spec.LoadFS(domains.FS, "templates")
	if err != nil {
		t.Fatal(err)
	}
	bad := nestedMapping(`      phoneNumbers:
        table: CCPhone
        through:
          - {table: CCContactLnk, join: [Key1, Key2], parent: [house_ref, person_no]}
        join: [ContactNo]
        parent: [ContactNo]
        fields:
          number: PhoneNumber
      emailAddresses:
        table: cc_email_nopk
        through:
          - {table: CCContactLink, join: [Key1, ModDate], parent: [house_ref, persn_no]}
        join: [ContactNo]
        parent: [LinkDate]
        fields:
          emailAddress: Email
          kind: Email
`)
	m, err := Parse("bad.mapping.yaml", []byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	err = m.Resolve(ds)
	if err == nil || !strings.Contains(err.Error(), `bad.mapping.yaml:32: child householdMembers.emailAddresses: field "kind" is not a field of its items`) {
		t.Fatalf("resolve: %v", err)
	}
	m, _ = Parse("bad.mapping.yaml", []byte(strings.Replace(bad, "          kind: Email\n", "", 1)))
	if err := m.Resolve(ds); err != nil {
		t.Fatal(err)
	}
	err = Check(ctx, src, m)
	if err == nil {
		t.Fatal("no problems found")
	}
	for _, want := range []string{
		"bad.mapping.yaml:19: table CCContactLnk is not in the source",
		"bad.mapping.yaml:23: column PhoneNumber is not a column of CCPhone",
		"bad.mapping.yaml:27: join column ModDate is not a column of CCContactLink",
		"bad.mapping.yaml:27: parent column persn_no is not a column of member",
		"bad.mapping.yaml:24: parent column LinkDate is not a column of CCContactLink",
		"bad.mapping.yaml:24: child householdMembers.emailAddresses: table cc_email_nopk has no primary key",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%s", want, err)
		}
	}
	// A joined table without a primary key may declare its key unique:
	// the check verifies it in the source.
	if _, err := src.DB.ExecContext(ctx, "INSERT INTO cc_email_nopk VALUES (1, 'a@example.org'), (1, 'a@example.org'), (2, 'b@example.org')"); err != nil {
		t.Fatal(err)
	}
	uniq := nestedMapping(`      emailAddresses:
        table: cc_email_nopk
        through:
          - {table: CCContactLink, join: [Key1, Key2], parent: [house_ref, person_no]}
        join: [ContactNo]
        parent: [ContactNo]
        key: [ContactNo, Email]
        unique: true
        fields:
          emailAddress: Email
`)
	m, err = Parse("uniq.mapping.yaml", []byte(uniq))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Resolve(ds); err != nil {
		t.Fatal(err)
	}
	if err := Check(ctx, src, m); err == nil || err.Error() != "uniq.mapping.yaml:16: child householdMembers.emailAddresses: unique: 1 value(s) of (ContactNo, Email) are held by more than one row of cc_email_nopk" {
		t.Fatalf("unique check: %v", err)
	}
	if _, err := src.DB.ExecContext(ctx, "DELETE FROM cc_email_nopk WHERE ContactNo = 1"); err != nil {
		t.Fatal(err)
	}
	if err := Check(ctx, src, m); err != nil {
		t.Fatalf("a unique key: %v", err)
	}
	// Columns that exist but cannot be compared: a date with a number.
	m, _ = Parse("bad.mapping.yaml", []byte(strings.NewReplacer("CCContactLnk", "CCContactLink", "PhoneNumber", "PhoneNo",
		"join: [Key1, Key2], parent: [house_ref, person_no]", "join: [Key1, LinkNo], parent: [house_ref, dob]").Replace(nestedMapping(`      phoneNumbers:
        table: CCPhone
        through:
          - {table: CCContactLnk, join: [Key1, Key2], parent: [house_ref, person_no]}
        join: [ContactNo]
        parent: [ContactNo]
        fields:
          number: PhoneNumber
`))))
	if err := m.Resolve(ds); err != nil {
		t.Fatal(err)
	}
	err = Check(ctx, src, m)
	if err == nil || !strings.Contains(err.Error(), "bad.mapping.yaml:19: child householdMembers.phoneNumbers: link CCContactLink: join column LinkNo (int) cannot be compared with parent column dob (datetime)") {
		t.Fatalf("type check: %v", err)
	}
}

// TestRowsThroughLinksInOrderOnce: a child's rows reached through several
// link rows come in the child's order, a row reached through two links
// once; a parent row with a null join column joins nothing.
func TestRowsThroughLinksInOrderOnce(t *testing.T) {
	h := &Hop{Table: "link", Join: []string{"key1"}, Parent: []string{"id"}}
	c := &ChildMap{Field: "phones", Table: "phone", Through: []*Hop{h}, Join: []string{"contactno"}, Parent: []string{"contactno"},
		Key: []string{"phoneid"}, OrderBy: []string{"phoneid"}}
	links := []Row{{"key1": int64(1), "contactno": int64(10)}, {"key1": int64(1), "contactno": int64(11)}, {"key1": int64(1), "contactno": int64(10)}}
	j := joined{h: {"1": links}, c: {
		"10": {{"phoneid": int64(2), "contactno": int64(10)}, {"phoneid": int64(30), "contactno": int64(10)}},
		"11": {{"phoneid": int64(1), "contactno": int64(11)}, {"phoneid": int64(4), "contactno": int64(11)}},
	}}
	var ids []any
	for _, r := range j.rowsOf(c, Row{"id": int64(1)}) {
		ids = append(ids, r["phoneid"])
	}
	if fmt.Sprint(ids) != "[1 2 4 30]" {
		t.Errorf("rows %v, want [1 2 4 30]", ids)
	}
	if rows := j.rowsOf(c, Row{"id": nil}); rows != nil {
		t.Errorf("a null parent joined %v", rows)
	}
}
