package hub

import (
	"slices"
	"testing"

	"github.com/plinth-data/plinth"
)

func TestGroupEntriesOnPartOfADomain(t *testing.T) {
	d := &plinth.Domain{Name: "housing", Entities: []*plinth.Entity{{Plural: "tenancies"}, {Plural: "properties"}}}
	c := Contract{Entities: []string{"tenancies"}, Operations: []string{"read", "write"}, Group: "team"}
	got := groupEntries(c, d)
	want := []policyEntry{{Entity: "tenancies", Op: "read", Group: "team"}, {Entity: "tenancies", Op: "write", Group: "team"}}
	if !slices.Equal(got, want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	c.Entities = []string{"tenancies", "properties"}
	c.Operations = []string{"report"}
	if got := groupEntries(c, d); !slices.Equal(got, []policyEntry{{Op: "report", Group: "team"}}) {
		t.Fatalf("whole domain: %v", got)
	}

	// Adding to an entity keeps the domain's groups in its new override.
	p := plinth.AccessPolicy{ReadGroups: []string{"readers"}, WriteGroups: []string{"writers"}}
	e := policyEntry{Entity: "tenancies", Op: "read", Group: "team"}
	if hasEntry(p, e) {
		t.Fatal("hasEntry before adding")
	}
	editEntry(&p, e, func(l []string) []string { return append(l, "team") })
	if got := p.Entities["tenancies"].ReadGroups; !slices.Equal(got, []string{"readers", "team"}) {
		t.Fatalf("override %v; want the domain's readers and team", got)
	}
	if p.Entities["tenancies"].WriteGroups != nil {
		t.Fatalf("write override %v; want none (nil keeps the domain's writers)", p.Entities["tenancies"].WriteGroups)
	}
	if !hasEntry(p, e) || hasEntry(p, policyEntry{Entity: "properties", Op: "read", Group: "team"}) {
		t.Fatal("hasEntry after adding")
	}
	if _, touched := p.Entities["properties"]; touched {
		t.Fatal("hasEntry changed the policy")
	}
	editEntry(&p, e, func(l []string) []string {
		return slices.DeleteFunc(l, func(g string) bool { return g == "team" })
	})
	if hasEntry(p, e) || !slices.Equal(p.ReadGroups, []string{"readers"}) {
		t.Fatalf("after removing: %+v", p)
	}
}
