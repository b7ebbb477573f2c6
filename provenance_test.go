package plinth_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/sqlite"
)

// nhsOutsideTestRange is a well-formed NHS number outside the 999 range.
func nhsOutsideTestRange(t *testing.T) string {
	for i := 0; i < 100; i++ {
		first9 := fmt.Sprintf("4010232%02d", i)
		if c, ok := plinth.NHSCheckDigit(first9); ok {
			return first9 + string(c)
		}
	}
	t.Fatal("no NHS number")
	return ""
}

// TestClassOfRecognisesSeededStores: the recognition rule of ClassOf, on
// stores with records and no provenance.
func TestClassOfRecognisesSeededStores(t *testing.T) {
	ctx := context.Background()
	ds := plinthtest.Domains(t)
	residents := plinthtest.Entity(t, ds, "residents")
	contacts := plinthtest.Entity(t, ds, "contacts")
	seeded := func(e *plinth.Entity, n int) []map[string]any { return datasafety.NewGenerator(3).Records(e, n) }
	for _, c := range []struct {
		name   string
		fill   map[*plinth.Entity][]map[string]any
		class  plinth.DataClass
		source string
		why    string
	}{
		{"empty", nil, plinth.ClassDummy, plinth.SourceEmpty, ""},
		{"seeded", map[*plinth.Entity][]map[string]any{residents: seeded(residents, 30), contacts: seeded(contacts, 30)},
			plinth.ClassDummy, plinth.SourceRecognised, "contacts, residents"},
		{"one entity seeded", map[*plinth.Entity][]map[string]any{residents: seeded(residents, 30)},
			plinth.ClassDummy, plinth.SourceRecognised, "residents"},
		{"an entity without a mark", map[*plinth.Entity][]map[string]any{residents: seeded(residents, 30),
			contacts: {{"firstName": "Ann", "lastName": "Smith"}}}, plinth.ClassReal, plinth.SourceUnrecorded, "mark of Plinth's seed"},
		{"an NHS number outside 999", map[*plinth.Entity][]map[string]any{residents: append(seeded(residents, 30),
			map[string]any{"firstName": "Ann", "lastName": "Smith", "nhsNumber": nhsOutsideTestRange(t)})},
			plinth.ClassReal, plinth.SourceUnrecorded, "NHS number"},
		{"a phone outside the drama ranges", map[*plinth.Entity][]map[string]any{residents: append(seeded(residents, 30),
			map[string]any{"firstName": "Ann", "lastName": "Smith", "phoneNumbers": []any{map[string]any{"number": "020 8356 0000"}}})},
			plinth.ClassReal, plinth.SourceUnrecorded, "phone number"},
		{"an e-mail address in a free-text value", map[*plinth.Entity][]map[string]any{contacts: append(seeded(contacts, 30),
			map[string]any{"firstName": "Ann", "lastName": "Smith", "contactInformation": []any{map[string]any{"type": "email", "value": "ann@council.gov.uk"}}})},
			plinth.ClassReal, plinth.SourceUnrecorded, "e-mail address"},
		{"drama phone numbers in international form", map[*plinth.Entity][]map[string]any{residents: append(seeded(residents, 30),
			map[string]any{"firstName": "Ann", "lastName": "Smith", "phoneNumbers": []any{map[string]any{"number": "+44 7700 900123"}}})},
			plinth.ClassDummy, plinth.SourceRecognised, "residents"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if err := st.Prepare(ctx, ds); err != nil {
				t.Fatal(err)
			}
			for e, docs := range c.fill {
				var valid []map[string]any
				for _, d := range docs {
					v, err := e.Validate(d, true)
					if err != nil {
						t.Fatalf("%v: %v", d, err)
					}
					valid = append(valid, v)
				}
				if err := st.BulkInsert(ctx, e, valid); err != nil {
					t.Fatal(err)
				}
			}
			p, err := plinth.ClassOf(ctx, st, ds)
			if err != nil {
				t.Fatal(err)
			}
			if p.Class != c.class || p.Source != c.source || p.Recorded() || !strings.Contains(p.Detail, c.why) {
				t.Fatalf("got %+v, want %s from %s (%q)", p, c.class, c.source, c.why)
			}
			// Recorded provenance wins over recognition.
			if err := plinth.SetStoreProvenance(ctx, st, plinth.Provenance{Class: plinth.ClassObfuscated, Source: plinth.SourceObfuscate}); err != nil {
				t.Fatal(err)
			}
			if p, err := plinth.ClassOf(ctx, st, ds); err != nil || p.Class != plinth.ClassObfuscated || !p.Recorded() {
				t.Fatalf("recorded: %+v %v", p, err)
			}
			if err := plinth.SetStoreProvenance(ctx, st, plinth.Provenance{Class: "secret", Source: plinth.SourceMark}); err != nil {
				t.Fatal(err)
			}
			if _, err := plinth.ClassOf(ctx, st, ds); err == nil || !strings.Contains(err.Error(), "plinth store mark") {
				t.Fatalf("an unknown recorded class: %v", err)
			}
		})
	}
}

// TestGuardrailDecisions: which environment serves which class, and
// where seed writes; every refusal says why and what to do.
func TestGuardrailDecisions(t *testing.T) {
	dummy := plinth.Provenance{Class: plinth.ClassDummy, Source: plinth.SourceSeed, Detail: "seed 1"}
	empty := plinth.Provenance{Class: plinth.ClassDummy, Source: plinth.SourceEmpty}
	obf := plinth.Provenance{Class: plinth.ClassObfuscated, Source: plinth.SourceObfuscate, Detail: "key 1a2b"}
	real := plinth.Provenance{Class: plinth.ClassReal, Source: plinth.SourceUnrecorded, Detail: "no provenance recorded"}
	serves := map[string]map[plinth.Provenance]bool{
		plinth.EnvDevelopment: {dummy: true, empty: true, obf: false, real: false},
		plinth.EnvStaging:     {dummy: true, empty: true, obf: true, real: false},
		plinth.EnvProduction:  {dummy: true, empty: true, obf: true, real: true},
	}
	for env, byClass := range serves {
		for p, ok := range byClass {
			err := plinth.CheckServe(env, p)
			if (err == nil) != ok {
				t.Fatalf("serve %s with %s: %v", env, p, err)
			}
			if err != nil && (!strings.Contains(err.Error(), env+" serves only") || !strings.Contains(err.Error(), string(p.Class)+" data")) {
				t.Fatalf("serve %s with %s: the refusal does not say why: %v", env, p, err)
			}
		}
	}
	if err := plinth.CheckServe(plinth.EnvDevelopment, real); err == nil || !strings.Contains(err.Error(), "plinth store mark --class dummy") {
		t.Fatalf("an unrecorded real store: no hint of store mark: %v", err)
	}
	for p, ok := range map[plinth.Provenance]bool{dummy: true, empty: true, obf: false, real: false} {
		if err := plinth.CheckSeed(p); (err == nil) != ok || err != nil && !strings.Contains(err.Error(), "Seed a new, empty store") {
			t.Fatalf("seed into %s: %v", p, err)
		}
	}
}

// A legacy migration brings real data: refused into development, into
// staging only obfuscated, production takes it as it is.
func TestCheckMigrate(t *testing.T) {
	cases := []struct {
		env        string
		class      plinth.DataClass
		obfuscated bool
		refused    string // part of the refusal; "" when allowed
	}{
		{plinth.EnvDevelopment, "", false, "development holds only dummy data"},
		{plinth.EnvDevelopment, plinth.ClassReal, true, "would bring obfuscated data"},
		{plinth.EnvDevelopment, plinth.ClassDummy, false, ""},
		{plinth.EnvStaging, "", false, "--obfuscate --key-file"},
		{plinth.EnvStaging, plinth.ClassReal, true, ""},
		{plinth.EnvStaging, plinth.ClassObfuscated, false, ""},
		{plinth.EnvProduction, plinth.ClassReal, false, ""},
		{plinth.EnvProduction, plinth.ClassReal, true, ""},
	}
	for _, c := range cases {
		err := plinth.CheckMigrate(c.env, c.class, c.obfuscated)
		switch {
		case c.refused == "" && err != nil:
			t.Errorf("%s, %q, obfuscated %v: refused: %v", c.env, c.class, c.obfuscated, err)
		case c.refused != "" && (err == nil || !strings.Contains(err.Error(), c.refused)):
			t.Errorf("%s, %q, obfuscated %v: %v; want a refusal saying %q", c.env, c.class, c.obfuscated, err, c.refused)
		}
	}
}
