package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// peopleSpec is a small valid domain, unlike the shipped ones.
const peopleSpec = `domain: people
description: People.
owner: {serviceArea: Test, productOwner: test@example.org}
entities:
  - name: person
    plural: people
    key: {name: id, type: uuid, generated: true, pii: none}
    fields:
      - name: dateOfBirth
        type: date
        pii: personal
`

// TestValidateAndOpenAPIFollowTheConfiguration: validate and openapi read
// the domains folder from PLINTH_DOMAINS and plinth.yaml as serve does.
func TestValidateAndOpenAPIFollowTheConfiguration(t *testing.T) {
	dir := t.TempDir()
	specs := filepath.Join(dir, "specs")
	if err := os.Mkdir(specs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(specs, "people.yaml"), []byte(peopleSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(how string, env []string) {
		t.Helper()
		out, err := run(t, dir, env, "openapi")
		if err != nil || !strings.Contains(out, `"/api/v1/people": {`) || strings.Contains(out, `"/api/v1/residents": {`) {
			t.Fatalf("openapi with %s: %v\n%.400s", how, err, out)
		}
		out, err = run(t, dir, env, "validate")
		if err != nil || !strings.Contains(out, "people: /api/v1/people") || strings.Contains(out, "residents") {
			t.Fatalf("validate with %s: %v\n%s", how, err, out)
		}
	}
	check("PLINTH_DOMAINS", []string{"PLINTH_DOMAINS=" + specs})
	if err := os.WriteFile(filepath.Join(dir, "plinth.yaml"), []byte("domains: specs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	check("plinth.yaml", nil)
	// The flag still beats both.
	if out, err := run(t, dir, []string{"PLINTH_DOMAINS=" + specs}, "validate", "--domains", "nowhere"); err == nil || !strings.Contains(out, "nowhere") {
		t.Fatalf("--domains did not beat PLINTH_DOMAINS: %v\n%s", err, out)
	}
}
