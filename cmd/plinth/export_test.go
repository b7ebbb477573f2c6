package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExportLoadCommands runs plinth export and plinth load as a user
// would: seed a SQLite store, export it, load it into another one, and the
// refusals by environment and checksum.
func TestExportLoadCommands(t *testing.T) {
	dir := t.TempDir()
	if out, err := run(t, dir, nil, "seed", "--store", "sqlite://a.db", "-n", "300", "--seed", "3"); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	out, err := run(t, dir, nil, "export", "--store", "sqlite://a.db", "--to", "bundle")
	if err != nil || !strings.Contains(out, "residents/residents.ndjson.gz") || !strings.Contains(out, "300 records") ||
		!strings.Contains(out, `"msg":"exporting residents/residents finished"`) {
		t.Fatalf("export: %v\n%s", err, out)
	}
	if out, err := run(t, dir, nil, "export", "--store", "sqlite://a.db", "--to", "bundle"); err == nil || !strings.Contains(out, "is not empty") {
		t.Fatalf("export into a bundle: %v\n%s", err, out)
	}
	if out, err := run(t, dir, nil, "export", "--store", "sqlite://a.db", "--to", "other", "--domain", "tenancies"); err == nil || !strings.Contains(out, "--domain tenancies: no such domain") {
		t.Fatalf("unknown domain: %v\n%s", err, out)
	}
	// Mark the bundle as real data, whatever the seeded store recorded.
	path := filepath.Join(dir, "bundle", "manifest.json")
	var m map[string]any
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["class"] = "real"
	delete(m, "provenance")
	b, _ = json.Marshal(m)
	os.WriteFile(path, b, 0o644)
	for _, env := range []string{"development", "staging"} {
		out, err := run(t, dir, nil, "load", "--from", "bundle", "--store", "sqlite://c.db", "--env", env)
		if err == nil || !strings.Contains(out, "refused in "+env+": the bundle holds real data, and "+env+" holds only") {
			t.Fatalf("real bundle into %s: %v\n%s", env, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "c.db")); err == nil {
		t.Fatal("a refused load created the store")
	}
	out, err = run(t, dir, []string{"PLINTH_ENV=production"}, "load", "--from", "bundle", "--store", "sqlite://c.db", "--batch", "100")
	if err != nil || !strings.Contains(out, "residents/residents                   300 records: 300 inserted, 0 already there, 0 loaded before") ||
		!strings.Contains(out, `"msg":"loading residents/residents finished"`) || !strings.Contains(out, "the store now holds real data: bundle ") {
		t.Fatalf("load: %v\n%s", err, out)
	}
	out, err = run(t, dir, []string{"PLINTH_ENV=production"}, "load", "--from", "bundle", "--store", "sqlite://c.db")
	if err != nil || !strings.Contains(out, "300 records: 0 inserted, 0 already there, 300 loaded before (resumed)") {
		t.Fatalf("second load: %v\n%s", err, out)
	}
	// The copy exports to the same data.
	if out, err := run(t, dir, nil, "export", "--store", "sqlite://c.db", "--to", "copy"); err != nil {
		t.Fatalf("export of the copy: %v\n%s", err, out)
	}
	// A damaged file is refused, naming it.
	file := filepath.Join(dir, "bundle", "contacts", "contacts.ndjson.gz")
	b, _ = os.ReadFile(file)
	b[len(b)/2] ^= 1
	os.WriteFile(file, b, 0o644)
	out, err = run(t, dir, []string{"PLINTH_ENV=production"}, "load", "--from", "bundle", "--store", "sqlite://d.db")
	if err == nil || !strings.Contains(out, "contacts/contacts.ndjson.gz does not match its checksum in the manifest") {
		t.Fatalf("damaged bundle: %v\n%s", err, out)
	}
}
