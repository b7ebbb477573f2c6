package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/sqlite"
)

// storeInfo runs plinth store info --json in dir.
func storeInfo(t *testing.T, dir string, args ...string) (plinth.Provenance, bool) {
	t.Helper()
	out, err := run(t, dir, nil, append([]string{"store", "info", "--json"}, args...)...)
	if err != nil {
		t.Fatalf("store info: %v\n%s", err, out)
	}
	var got struct {
		plinth.Provenance
		Recorded bool `json:"recorded"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("store info --json: %v\n%s", err, out)
	}
	return got.Provenance, got.Recorded
}

// mustFail runs plinth and expects it to fail saying every one of want.
func mustFail(t *testing.T, dir string, want []string, args ...string) {
	t.Helper()
	out, err := run(t, dir, nil, args...)
	if err == nil {
		t.Fatalf("plinth %s succeeded, want a refusal:\n%s", strings.Join(args, " "), out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("plinth %s: the refusal does not say %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
}

const testAuthSecret = "a-user-token-secret-of-32-bytes-or-more"

// TestStoreInfoAndMark: an empty store is dummy-to-be; seed records its
// seed; mark changes the class only with a reason, audited and chained.
func TestStoreInfoAndMark(t *testing.T) {
	dir := t.TempDir()
	if p, rec := storeInfo(t, dir); p.Class != plinth.ClassDummy || p.Source != plinth.SourceEmpty || rec {
		t.Fatalf("empty store: %+v recorded=%v", p, rec)
	}
	if out, err := run(t, dir, nil, "seed", "-n", "20", "--seed", "42"); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	p, rec := storeInfo(t, dir)
	if p.Class != plinth.ClassDummy || p.Source != plinth.SourceSeed || p.Detail != "seed 42" || p.At.IsZero() || !rec {
		t.Fatalf("after seed: %+v recorded=%v", p, rec)
	}
	if out, err := run(t, dir, nil, "seed", "-n", "5", "--seed", "43", "--entity", "contacts"); err != nil {
		t.Fatalf("second seed: %v\n%s", err, out)
	}
	if p, _ := storeInfo(t, dir); p.Detail != "seed 42; seed 43 (contacts only)" {
		t.Fatalf("after a second seed: %+v", p)
	}
	out, err := run(t, dir, nil, "store", "info")
	for _, want := range []string{"class:", "dummy", "source:", "seed", "detail:", "seed 42", "when:", "recorded:"} {
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("store info lacks %q: %v\n%s", want, err, out)
		}
	}

	mustFail(t, dir, []string{"reason", "--reason"}, "store", "mark", "--class", "real", "--by", "jo@example.org")
	mustFail(t, dir, []string{"reason"}, "store", "mark", "--class", "real", "--reason", "  ", "--by", "jo@example.org")
	mustFail(t, dir, []string{`--class "secret"`, "dummy, obfuscated or real"}, "store", "mark", "--class", "secret", "--reason", "x", "--by", "jo@example.org")
	if p, _ := storeInfo(t, dir); p.Class != plinth.ClassDummy {
		t.Fatalf("a refused mark changed the class: %+v", p)
	}

	reason := "INC-7: copied from the case system by mistake"
	out, err = run(t, dir, nil, "store", "mark", "--class", "real", "--reason", reason, "--by", "jo@example.org")
	if err != nil || !strings.Contains(out, "marked the store real") {
		t.Fatalf("store mark: %v\n%s", err, out)
	}
	p, rec = storeInfo(t, dir)
	if p.Class != plinth.ClassReal || p.Source != plinth.SourceMark || p.Detail != reason || p.By != "jo@example.org" || !rec {
		t.Fatalf("after mark: %+v", p)
	}
	// The mark is in the audit trail, chained, with who and why.
	out, err = run(t, dir, nil, "audit", "search", "--json")
	if err != nil {
		t.Fatalf("audit search: %v\n%s", err, out)
	}
	var marks []plinth.AuditRecord
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r plinth.AuditRecord
		if json.Unmarshal([]byte(line), &r) == nil && r.Operation == "store-mark" {
			marks = append(marks, r)
		}
	}
	if len(marks) != 1 || marks[0].Principal.Subject != "jo@example.org" || !strings.Contains(marks[0].Reason, reason) ||
		!strings.Contains(marks[0].Reason, "was dummy") || !marks[0].Chained() {
		t.Fatalf("audit records of the mark: %+v\n%s", marks, out)
	}
	if out, err := run(t, dir, nil, "audit", "verify"); err != nil || !strings.Contains(out, "intact") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	// The principal defaults to the OS user.
	out, err = run(t, dir, []string{"USER=sam"}, "store", "mark", "--class", "dummy", "--reason", "INC-7: replaced by seeded data")
	if err != nil {
		t.Fatalf("store mark as $USER: %v\n%s", err, out)
	}
	if p, _ := storeInfo(t, dir); p.Class != plinth.ClassDummy || p.By != "sam" {
		t.Fatalf("after the second mark: %+v", p)
	}
}

// TestServeRefusesByClass: development serves only dummy data, staging
// dummy or obfuscated, production any (with auth and audit on).
func TestServeRefusesByClass(t *testing.T) {
	dir := t.TempDir()
	if out, err := run(t, dir, nil, "seed", "-n", "5"); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	mark := func(class string) {
		t.Helper()
		if out, err := run(t, dir, nil, "store", "mark", "--class", class, "--reason", "test", "--by", "jo@example.org"); err != nil {
			t.Fatalf("store mark: %v\n%s", err, out)
		}
	}
	serveArgs := []string{"serve", "--listen", "127.0.0.1:0"}
	staging := []string{"--env", "staging", "--auth-secret", testAuthSecret}

	mark("obfuscated")
	mustFail(t, dir, []string{"refusing to serve", "development serves only dummy data", "this store holds obfuscated data", "--env staging"}, serveArgs...)
	startServe(t, dir, staging...).stop(t)

	mark("real")
	mustFail(t, dir, []string{"refusing to serve", "development serves only dummy data", "this store holds real data", "plinth obfuscate"}, serveArgs...)
	mustFail(t, dir, []string{"refusing to serve", "staging serves only dummy or obfuscated data", "this store holds real data", "plinth obfuscate", "--env production"},
		append(serveArgs, staging...)...)
	// Production serves real data, and only with authentication and
	// auditing (the configuration's rule).
	mustFail(t, dir, []string{"environment production needs authentication"}, "serve", "--env", "production", "--listen", "127.0.0.1:0")
	mustFail(t, dir, []string{"auditing can be turned off only in development"}, "serve", "--env", "production", "--auth-secret", testAuthSecret, "--audit=false")
	startServe(t, dir, "--env", "production", "--auth-secret", testAuthSecret).stop(t)

	mark("dummy")
	startServe(t, dir).stop(t)
}

// TestServeClassesAnEmptyStore: an empty store is served; demo data in
// development records the seed, otherwise the first environment records
// the class.
func TestServeClassesAnEmptyStore(t *testing.T) {
	for _, c := range []struct {
		args   []string
		class  plinth.DataClass
		source string
	}{
		{[]string{"--demo-records", "5"}, plinth.ClassDummy, plinth.SourceSeed},
		{[]string{"--demo-data=false"}, plinth.ClassDummy, plinth.SourceServe},
		{[]string{"--env", "production", "--auth-secret", testAuthSecret}, plinth.ClassReal, plinth.SourceServe},
	} {
		dir := t.TempDir()
		startServe(t, dir, c.args...).stop(t)
		if p, rec := storeInfo(t, dir); p.Class != c.class || p.Source != c.source || !rec {
			t.Fatalf("serve %v on an empty store: %+v", c.args, p)
		}
	}
}

// TestSeedRefusesRealAndObfuscatedStores: seed writes only into a store
// holding dummy data or nothing.
func TestSeedRefusesRealAndObfuscatedStores(t *testing.T) {
	dir := t.TempDir()
	if out, err := run(t, dir, nil, "seed", "-n", "3"); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	for _, class := range []string{"real", "obfuscated"} {
		if out, err := run(t, dir, nil, "store", "mark", "--class", class, "--reason", "test", "--by", "jo@example.org"); err != nil {
			t.Fatalf("store mark: %v\n%s", err, out)
		}
		mustFail(t, dir, []string{"refusing to seed", "this store holds " + class + " data", "Seed a new, empty store"}, "seed", "-n", "3")
	}
	if p, _ := storeInfo(t, dir); p.Source != plinth.SourceMark {
		t.Fatalf("a refused seed changed the provenance: %+v", p)
	}
}

// TestStoresMadeBeforeProvenance: a store with data and no provenance is
// real, unless its records are recognised as Plinth's seed's.
func TestStoresMadeBeforeProvenance(t *testing.T) {
	ctx := context.Background()
	ds := plinthtest.Domains(t)
	open := func(dir string) *sqlite.Store {
		st, err := sqlite.Open(ctx, filepath.Join(dir, "plinth-data", "plinth.db"))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Prepare(ctx, ds); err != nil {
			t.Fatal(err)
		}
		return st
	}

	// Seeded the way seed did before it recorded provenance.
	seeded := t.TempDir()
	st := open(seeded)
	for i, d := range ds {
		for _, e := range d.Entities {
			if err := st.BulkInsert(ctx, e, datasafety.NewGenerator(uint64(i+1)).Records(e, 50)); err != nil {
				t.Fatal(err)
			}
		}
	}
	st.Close()
	if p, rec := storeInfo(t, seeded); p.Class != plinth.ClassDummy || p.Source != plinth.SourceRecognised || rec {
		t.Fatalf("an old seeded store: %+v", p)
	}
	startServe(t, seeded, "--demo-records", "5").stop(t)
	if out, err := run(t, seeded, nil, "seed", "-n", "3", "--seed", "9"); err != nil {
		t.Fatalf("seed into an old seeded store: %v\n%s", err, out)
	}
	if p, _ := storeInfo(t, seeded); p.Source != plinth.SourceSeed || p.Detail != "seed 9" {
		t.Fatalf("after seeding an old seeded store: %+v", p)
	}

	// Data from elsewhere: a record with an address outside the reserved
	// domains among seeded ones, and records with no mark of the seed.
	residents := plinthtest.Entity(t, ds, "residents")
	for name, docs := range map[string][]map[string]any{
		"foreign e-mail": {{"firstName": "Ada", "lastName": "Lovelace", "emailAddress": "ada.lovelace@council.gov.uk"}},
		"no mark":        {{"firstName": "Ada", "lastName": "Lovelace"}, {"firstName": "Ann", "lastName": "Smith"}},
	} {
		dir := t.TempDir()
		st := open(dir)
		if name == "foreign e-mail" {
			if err := st.BulkInsert(ctx, residents, datasafety.NewGenerator(1).Records(residents, 20)); err != nil {
				t.Fatal(err)
			}
		}
		for _, doc := range docs {
			data, err := residents.Validate(doc, true)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Write(ctx, func(tx plinth.Tx) error { _, err := tx.Insert(ctx, residents, data); return err }); err != nil {
				t.Fatal(err)
			}
		}
		st.Close()
		p, rec := storeInfo(t, dir)
		if p.Class != plinth.ClassReal || p.Source != plinth.SourceUnrecorded || rec {
			t.Fatalf("%s: %+v", name, p)
		}
		hint := `plinth store mark --class dummy --reason`
		mustFail(t, dir, []string{"refusing to serve", "this store holds real data", "no provenance recorded", hint}, "serve", "--listen", "127.0.0.1:0")
		mustFail(t, dir, []string{"refusing to seed", "this store holds real data", hint}, "seed", "-n", "1")
	}
}

// TestStoreInfoOnPostgreSQL: seed records provenance in a PostgreSQL
// store too, and store info reads it back.
func TestStoreInfoOnPostgreSQL(t *testing.T) {
	url := pgtest.Database(t)
	dir := t.TempDir()
	if p, _ := storeInfo(t, dir, "--store", url); p.Source != plinth.SourceEmpty {
		t.Fatalf("empty PostgreSQL store: %+v", p)
	}
	if out, err := run(t, dir, nil, "seed", "--store", url, "-n", "10", "--seed", "5"); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	if p, rec := storeInfo(t, dir, "--store", url); p.Class != plinth.ClassDummy || p.Source != plinth.SourceSeed || p.Detail != "seed 5" || !rec {
		t.Fatalf("seeded PostgreSQL store: %+v", p)
	}
	if out, err := run(t, dir, nil, "store", "mark", "--store", url, "--class", "obfuscated", "--reason", "test", "--by", "jo@example.org"); err != nil {
		t.Fatalf("store mark: %v\n%s", err, out)
	}
	out, err := run(t, dir, nil, "store", "info", "--store", url)
	if err != nil || !strings.Contains(out, "obfuscated") || !strings.Contains(out, "jo@example.org") {
		t.Fatalf("store info: %v\n%s", err, out)
	}
}
