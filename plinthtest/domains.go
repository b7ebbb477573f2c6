package plinthtest

import (
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/spec"
)

// Domains returns the shipped domains, freshly parsed.
func Domains(t testing.TB) []*plinth.Domain {
	t.Helper()
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// Entity returns the entity with the plural among ds.
func Entity(t testing.TB, ds []*plinth.Domain, plural string) *plinth.Entity {
	t.Helper()
	for _, d := range ds {
		for _, e := range d.Entities {
			if e.Plural == plural {
				return e
			}
		}
	}
	t.Fatalf("no entity %s", plural)
	return nil
}
