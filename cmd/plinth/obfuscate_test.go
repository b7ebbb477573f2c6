package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
	"github.com/plinth-data/plinth/sqlite"
)

// obfuscateSpecs is a spec the project does not ship: people with a
// natural uuid key, every format and special-category fields, and
// referrals that refer to them.
const obfuscateSpecs = "../../datasafety/testdata/obfuscate"

func runPlinth(ctx context.Context, t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := rootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func writeKey(t *testing.T, dir string, b byte) string {
	t.Helper()
	k := filepath.Join(dir, fmt.Sprintf("key%d", b))
	if err := os.WriteFile(k, bytes.Repeat([]byte{b}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// realLooking fills the source with people and referrals whose personal
// values look real and are distinctive, so that a scan can tell whether any
// survived.
func realLooking(t *testing.T, url string, n int) (ds []*plinth.Domain, originals []string, dobs map[string]string) {
	t.Helper()
	ctx := context.Background()
	ds, err := loadDomains(obfuscateSpecs)
	if err != nil {
		t.Fatal(err)
	}
	st, err := openStore(ctx, url, ds)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	people, referrals := findEntity(ds, "people"), findEntity(ds, "referrals")
	r := rand.New(rand.NewPCG(11, 12))
	dobs = map[string]string{}
	var ps, rs []map[string]any
	for i := range n {
		var nhs string
		for {
			b := fmt.Sprintf("4%08d", r.IntN(100_000_000))
			if c, ok := plinth.NHSCheckDigit(b); ok {
				nhs = b + string(c)
				break
			}
		}
		id := uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "real person %d", i)).String()
		dob := time.Date(1940+r.IntN(60), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
		p := map[string]any{
			"id": id, "title": "Mrs", "givenName": fmt.Sprintf("Realgiven%05d", i), "familyName": fmt.Sprintf("Realfamily%05d", i),
			"dateOfBirth": dob, "nhsNumber": nhs, "niNumber": fmt.Sprintf("JT%06dB", i),
			"email": fmt.Sprintf("real.person%05d@realmail.co.uk", i), "mobile": fmt.Sprintf("07123 4%05d", i),
			"uprn": int64(100_000_000_000 + i), "legacyRef": fmt.Sprintf("RL%06d", i), "caseNumber": int64(50_000_000 + i),
			"gender": "F", "notes": fmt.Sprintf("Realnote%05d about the family", i), "ethnicity": "Realethnic", "religion": "Realfaith",
			"healthConditions": []any{fmt.Sprintf("Realcondition%05d", i)},
			"addresses":        []any{map[string]any{"line1": fmt.Sprintf("%d Realplace Road", 1000+i), "town": "Realtown", "postcode": fmt.Sprintf("HX%d %dRT", 1+i%9, i%10), "movedIn": "2001-02-03", "kind": "home"}},
			"registeredAt":     "2020-01-02T03:04:05Z", "lastContactAt": "2024-05-06T07:08:09Z", "team": "East",
		}
		vp, err := people.Validate(p, true)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, vp)
		dobs[id] = dob
		vr, err := referrals.Validate(map[string]any{"personId": id, "nhsNumber": nhs, "referredBy": fmt.Sprintf("Realreferrer%05d", i), "reason": "Realreason", "receivedOn": "2024-03-04"}, true)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, vr)
		originals = append(originals, p["givenName"].(string), p["familyName"].(string), nhs, p["niNumber"].(string), p["email"].(string),
			p["mobile"].(string), fmt.Sprintf("%d", p["uprn"]), p["legacyRef"].(string),
			p["notes"].(string)[:13], fmt.Sprintf("%d Realplace", 1000+i), fmt.Sprintf("Realreferrer%05d", i), fmt.Sprintf("Realcondition%05d", i))
	}
	originals = append(originals, "Realethnic", "Realfaith", "Realtown", "Realreason", "realmail", "RT\"", "2001-02-03")
	if err := st.BulkInsert(ctx, people, ps); err != nil {
		t.Fatal(err)
	}
	if err := st.BulkInsert(ctx, referrals, rs); err != nil {
		t.Fatal(err)
	}
	return ds, originals, dobs
}

// dump returns every record of the entity as JSON lines.
func dump(t *testing.T, st plinth.Store, e *plinth.Entity) []map[string]any {
	t.Helper()
	var out []map[string]any
	if _, err := st.Scan(context.Background(), e, plinth.ScanQuery{}, func(r plinth.Record) error {
		out = append(out, r.Data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestObfuscateCommandLeavesNoPersonalValue copies a store of real-looking
// people and referrals (a spec the project does not ship) and scans every
// byte of the copy for the original personal values; references still
// join; the provenance is recorded; the report counts.
func TestObfuscateCommandLeavesNoPersonalValue(t *testing.T) {
	dir := t.TempDir()
	from, to := "sqlite://"+filepath.Join(dir, "real.db"), "sqlite://"+filepath.Join(dir, "staging.db")
	ds, originals, dobs := realLooking(t, from, 2500)
	key := writeKey(t, dir, 7)
	out, err := runPlinth(context.Background(), t, "obfuscate", "--from", from, "--to", to, "--key-file", key, "--domains", obfuscateSpecs)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Log(out)
	if !strings.Contains(out, "people.people") || !strings.Contains(out, "2500") || !strings.Contains(out, "obfuscated data from sqlite://") {
		t.Fatalf("report:\n%s", out)
	}
	st, err := sqlite.Open(context.Background(), strings.TrimPrefix(to, "sqlite://"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	people, referrals := findEntity(ds, "people"), findEntity(ds, "referrals")
	ps, rs := dump(t, st, people), dump(t, st, referrals)
	if len(ps) != 2500 || len(rs) != 2500 {
		t.Fatalf("%d people, %d referrals", len(ps), len(rs))
	}
	all, _ := json.Marshal([]any{ps, rs})
	text := string(all)
	for _, o := range originals {
		if strings.Contains(text, o) {
			t.Fatalf("the obfuscated copy still holds %q", o)
		}
	}
	o := datasafety.NewObfuscator(bytes.Repeat([]byte{7}, 32))
	byID := map[string]map[string]any{}
	for _, p := range ps {
		byID[p["id"].(string)] = p
	}
	for id, dob := range dobs {
		p := byID[o.UUID(id)]
		if p == nil {
			t.Fatalf("person %s is not under its mapped key", id)
		}
		if p["dateOfBirth"] == dob {
			t.Fatalf("person %s kept the date of birth", id)
		}
	}
	for _, r := range rs {
		p := byID[r["personId"].(string)]
		if p == nil || p["nhsNumber"] != r["nhsNumber"] {
			t.Fatalf("referral %v no longer joins", r)
		}
	}
	prov, found, err := plinth.StoreProvenance(context.Background(), st)
	if err != nil || !found || prov.Class != plinth.ClassObfuscated || prov.Source != "obfuscate" ||
		!strings.Contains(prov.Detail, "key "+datasafety.KeyFingerprint(bytes.Repeat([]byte{7}, 32))) {
		t.Fatalf("provenance %+v %v %v", prov, found, err)
	}

	// A short key is refused; so is a second key into the same target.
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("0123456789"), 0o600)
	if out, err := runPlinth(context.Background(), t, "obfuscate", "--from", from, "--to", to, "--key-file", short, "--domains", obfuscateSpecs); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("short key: %v %s", err, out)
	}
	if _, err := runPlinth(context.Background(), t, "obfuscate", "--from", from, "--to", to, "--key-file", writeKey(t, dir, 8), "--domains", obfuscateSpecs); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("second key: %v", err)
	}
}

// TestObfuscateCommandResumes interrupts a run after two batches and runs
// it again: the copy ends with every record once.
func TestObfuscateCommandResumes(t *testing.T) {
	dir := t.TempDir()
	from, to := "sqlite://"+filepath.Join(dir, "real.db"), "sqlite://"+filepath.Join(dir, "staging.db")
	ds, _, dobs := realLooking(t, from, 4500)
	key := writeKey(t, dir, 9)
	ctx, cancel := context.WithCancel(context.Background())
	obfuscateAfterBatch = func(entity string, n int) {
		if entity == "people.people" && n == 2 {
			cancel()
		}
	}
	defer func() { obfuscateAfterBatch = nil }()
	if _, err := runPlinth(ctx, t, "obfuscate", "--from", from, "--to", to, "--key-file", key, "--domains", obfuscateSpecs); err == nil {
		t.Fatal("the interrupted run succeeded")
	}
	obfuscateAfterBatch = nil
	st, err := sqlite.Open(context.Background(), strings.TrimPrefix(to, "sqlite://"))
	if err != nil {
		t.Fatal(err)
	}
	people := findEntity(ds, "people")
	if n, _ := st.Count(context.Background(), people); n != 2000 {
		t.Fatalf("after the interruption: %d people, want 2000", n)
	}
	st.Close()
	out, err := runPlinth(context.Background(), t, "obfuscate", "--from", from, "--to", to, "--key-file", key, "--domains", obfuscateSpecs)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "(resumed)") {
		t.Fatalf("report:\n%s", out)
	}
	st, err = sqlite.Open(context.Background(), strings.TrimPrefix(to, "sqlite://"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ps := dump(t, st, people)
	if len(ps) != 4500 {
		t.Fatalf("%d people after resuming, want 4500", len(ps))
	}
	o := datasafety.NewObfuscator(bytes.Repeat([]byte{9}, 32))
	ids := map[string]bool{}
	for _, p := range ps {
		ids[p["id"].(string)] = true
	}
	for id := range dobs {
		if !ids[o.UUID(id)] {
			t.Fatalf("person %s missing after resuming", id)
		}
	}
	if n, _ := st.Count(context.Background(), findEntity(ds, "referrals")); n != 4500 {
		t.Fatalf("%d referrals", n)
	}
}

// TestObfuscateCommandSeededShippedDomains seeds the shipped domains with
// plinth seed and obfuscates them: every record validates and its personal
// values changed.
func TestObfuscateCommandSeededShippedDomains(t *testing.T) {
	dir := t.TempDir()
	from, to := "sqlite://"+filepath.Join(dir, "dev.db"), "sqlite://"+filepath.Join(dir, "staging.db")
	if out, err := runPlinth(context.Background(), t, "seed", "--store", from, "-n", "1500", "--seed", "3"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err := runPlinth(context.Background(), t, "obfuscate", "--from", from, "--to", to, "--key-file", writeKey(t, dir, 5), "--special", "keep-generalised")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Log(out)
	ds, _ := loadDomains("")
	src, _ := sqlite.Open(context.Background(), strings.TrimPrefix(from, "sqlite://"))
	defer src.Close()
	dst, _ := sqlite.Open(context.Background(), strings.TrimPrefix(to, "sqlite://"))
	defer dst.Close()
	residents := findEntity(ds, "residents")
	before := map[any]map[string]any{}
	for _, r := range dump(t, src, residents) {
		before[r["mosaicId"]] = r
	}
	after := dump(t, dst, residents)
	if len(after) != len(before) || len(after) != 1500 {
		t.Fatalf("%d residents copied of %d", len(after), len(before))
	}
	changed := 0
	for _, a := range after {
		b := before[a["mosaicId"]] // a generated key: kept
		if _, err := residents.Validate(a, false); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"nhsNumber", "emailAddress", "dateOfBirth", "uprn"} {
			if b[f] != nil && a[f] == b[f] {
				t.Fatalf("resident %v kept %s", a["mosaicId"], f)
			}
		}
		if a["lastName"] != b["lastName"] {
			changed++
		}
	}
	if changed < 1400 {
		t.Fatalf("only %d of 1500 last names changed", changed)
	}
}
