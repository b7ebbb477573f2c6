package spec_test

import (
	"testing"

	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/spec"
)

func TestShippedDomainsLoad(t *testing.T) {
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 {
		t.Fatalf("got %d domains", len(ds))
	}
}
