package spec_test

import (
	"strings"
	"testing"

	"github.com/plinth-data/plinth/spec"
)

func TestDynamoDBWarnings(t *testing.T) {
	d, err := spec.Parse("x.yaml", []byte(`domain: cases
description: Cases.
owner: {serviceArea: Test, productOwner: test@example.org}
entities:
  - name: case
    plural: cases
    key: {name: caseId, type: uuid, generated: true, pii: none}
    fields:
      - {name: title, type: string, pii: none}
      - {name: opened, type: date, pii: none}
      - {name: status, type: string, pii: none}
    filters:
      - {param: title, field: title, match: contains}
      - {param: opened, field: opened, match: range}
      - {param: status, field: status, match: exact}
`))
	if err != nil {
		t.Fatal(err)
	}
	w := spec.DynamoDBWarnings(d)
	if len(w) != 2 || !strings.Contains(w[0], "cases?title (contains) is a scan") || !strings.Contains(w[1], "cases?opened (range) is a scan") {
		t.Fatalf("warnings %q", w)
	}
}
