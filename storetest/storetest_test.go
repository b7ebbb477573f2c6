package storetest_test

import (
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/storetest"
)

// TestDomainsCoverEverything guards the test spec: the suite is only as
// good as the variety of fields, keys and filters it runs against.
func TestDomainsCoverEverything(t *testing.T) {
	ds := storetest.Domains(t)
	types := map[plinth.Type]bool{}
	var walk func(f *plinth.Field)
	walk = func(f *plinth.Field) {
		types[f.Type] = true
		for _, sub := range f.Fields {
			walk(sub)
		}
		if f.Items != nil {
			walk(f.Items)
		}
	}
	keys := map[string]bool{}
	filters := map[string]bool{}
	for _, d := range ds {
		for _, e := range d.Entities {
			keys[string(e.Key.Type)+map[bool]string{true: "/generated", false: "/natural"}[e.Key.Generated]] = true
			for _, f := range e.Fields {
				walk(f)
				if f.Type == plinth.TypeArray && f.Items.Type == plinth.TypeString {
					types["array of strings"] = true
				}
				if f.Type == plinth.TypeArray && f.Items.Type == plinth.TypeObject {
					types["array of objects"] = true
				}
			}
			for _, f := range e.Filters {
				kind := string(f.Match) + " " + string(f.Field.Type)
				if f.Array != nil {
					kind = "array " + kind
				}
				filters[kind] = true
			}
		}
	}
	for _, want := range append(plinth.Types, "array of strings", "array of objects") {
		if !types[want] {
			t.Errorf("no field of type %s", want)
		}
	}
	for _, want := range []string{"integer/generated", "uuid/generated", "string/natural"} {
		if !keys[want] {
			t.Errorf("no entity with a %s key", want)
		}
	}
	for _, want := range []string{
		"exact string", "exact boolean", "exact uuid", "exact integer", "prefix string", "contains string",
		"range integer", "range number", "range date", "range datetime",
		"array exact string", "array prefix string",
	} {
		if !filters[want] {
			t.Errorf("no %s filter", want)
		}
	}
}
