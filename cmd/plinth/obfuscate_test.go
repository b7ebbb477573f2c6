package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/bundle"
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
		id := realID(i)
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
	meta := make([]plinth.RecordMeta, n)
	for i := range meta {
		meta[i] = realMeta(i)
	}
	if _, err := st.BulkLoad(ctx, people, ps, plinth.BulkOptions{Metadata: meta}); err != nil {
		t.Fatal(err)
	}
	if err := st.BulkInsert(ctx, referrals, rs); err != nil {
		t.Fatal(err)
	}
	return ds, originals, dobs
}

// dump returns every record of the entity as JSON lines.
func realID(i int) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "real person %d", i)).String()
}

// realMeta is the version and times of realLooking's person i: updated
// records of different ages.
func realMeta(i int) plinth.RecordMeta {
	created := time.Date(2021, 1, 2, 3, 4, 5, 678901000, time.UTC).Add(time.Duration(i) * time.Minute)
	return plinth.RecordMeta{Version: int64(1 + i%3), CreatedAt: created, UpdatedAt: created.Add(time.Duration(i%7) * 24 * time.Hour)}
}

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
	// Every record keeps its version, createdAt and updatedAt.
	for i := range 2500 {
		got, err := st.Get(context.Background(), people, o.UUID(realID(i)))
		want := realMeta(i)
		if err != nil || got.Version != want.Version || !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
			t.Fatalf("person %d: version %d, created %s, updated %s (%v); the source's: %+v", i, got.Version, got.CreatedAt, got.UpdatedAt, err, want)
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
	obfuscateBatch = 1000
	defer func() { obfuscateBatch = 5000 }()
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
	// Interrupted after the second batch committed; the batch being
	// loaded then may have committed too (loads overlap), but never a
	// later one before an earlier: whole batches from the start.
	if n, _ := st.Count(context.Background(), people); n < 2000 || n > 3000 || n%1000 != 0 {
		t.Fatalf("after the interruption: %d people, want the first 2000 or 3000", n)
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

// bundleText returns the uncompressed lines of an entity's file in a
// bundle, without version and times, in the file's order.
func bundleLines(t *testing.T, dir, rel string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		i := strings.LastIndex(l, `,"version":`)
		if i < 0 {
			t.Fatalf("line %q", l)
		}
		out = append(out, l[:i])
	}
	return out
}

// noOriginals fails when text holds any of the originals.
func noOriginals(t *testing.T, what, text string, originals []string) {
	t.Helper()
	if o := firstOriginal(text, originals); o != "" {
		t.Fatalf("%s still holds %q", what, o)
	}
}

// firstOriginal returns an original that text holds, or "": every
// substring of each original's length is looked up in a set (a
// strings.Contains per original takes seconds on thousands of them).
func firstOriginal(text string, originals []string) string {
	byLen := map[int]map[string]bool{}
	for _, o := range originals {
		if byLen[len(o)] == nil {
			byLen[len(o)] = map[string]bool{}
		}
		byLen[len(o)][o] = true
	}
	for n, set := range byLen {
		for i := 0; i+n <= len(text); i++ {
			if set[text[i:i+n]] {
				return text[i : i+n]
			}
		}
	}
	return ""
}

// TestObfuscateCommandBundles obfuscates store → bundle, bundle → bundle
// and bundle → store: the outputs hold none of the original personal
// values, references join, the bundles' manifests say obfuscated (and
// load into staging), bundle and store sources give the same records, and
// a damaged source bundle is refused before anything is written.
func TestObfuscateCommandBundles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	from := "sqlite://" + filepath.Join(dir, "real.db")
	ds, originals, dobs := realLooking(t, from, 2500)
	key := writeKey(t, dir, 7)
	fp := datasafety.KeyFingerprint(bytes.Repeat([]byte{7}, 32))
	realBundle := filepath.Join(dir, "real-bundle")
	if out, err := runPlinth(ctx, t, "export", "--store", from, "--to", realBundle, "--domains", obfuscateSpecs); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	if firstOriginal(strings.Join(bundleLines(t, realBundle, "people/people.ndjson.gz"), "\n"), originals) == "" {
		t.Fatal("the scan finds no original value even in the source bundle")
	}

	// store → bundle and bundle → bundle.
	fromStore, fromBundle := filepath.Join(dir, "obf-from-store"), filepath.Join(dir, "obf-from-bundle")
	for _, c := range [][2]string{{from, fromStore}, {realBundle, fromBundle}} {
		out, err := runPlinth(ctx, t, "obfuscate", "--from", c[0], "--to", c[1], "--key-file", key, "--domains", obfuscateSpecs)
		if err != nil {
			t.Fatalf("%s → %s: %v\n%s", c[0], c[1], err, out)
		}
		t.Log(out)
		if !strings.Contains(out, "people.people") || !strings.Contains(out, "2500") || !strings.Contains(out, "bundle "+c[1]+": obfuscated data from ") {
			t.Fatalf("report:\n%s", out)
		}
		m, err := bundle.ReadManifest(c[1])
		if err != nil {
			t.Fatal(err)
		}
		if m.Class != plinth.ClassObfuscated || m.Provenance == nil || m.Provenance.Class != plinth.ClassObfuscated ||
			m.Provenance.Source != "obfuscate" || !strings.Contains(m.Provenance.Detail, "key "+fp) {
			t.Fatalf("manifest of %s: class %s, provenance %+v", c[1], m.Class, m.Provenance)
		}
		if err := bundle.VerifyChecksums(c[1], m); err != nil {
			t.Fatal(err)
		}
		ps, rs := bundleLines(t, c[1], "people/people.ndjson.gz"), bundleLines(t, c[1], "referrals/referrals.ndjson.gz")
		if len(ps) != 2500 || len(rs) != 2500 {
			t.Fatalf("%d people, %d referrals", len(ps), len(rs))
		}
		noOriginals(t, "the obfuscated bundle "+c[1], strings.Join(ps, "\n")+strings.Join(rs, "\n"), originals)
	}
	if !strings.Contains(mustManifest(t, fromBundle).Provenance.Detail, "bundle "+realBundle) {
		t.Fatalf("provenance %+v", mustManifest(t, fromBundle).Provenance)
	}
	for _, rel := range []string{"people/people.ndjson.gz", "referrals/referrals.ndjson.gz"} {
		a, b := bundleLines(t, fromStore, rel), bundleLines(t, fromBundle, rel)
		if strings.Join(a, "\n") != strings.Join(b, "\n") {
			t.Fatalf("%s: the store and the bundle of the same data obfuscate differently", rel)
		}
	}

	// bundle → store.
	to := "sqlite://" + filepath.Join(dir, "staging.db")
	out, err := runPlinth(ctx, t, "obfuscate", "--from", realBundle, "--to", to, "--key-file", key, "--domains", obfuscateSpecs)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	st, err := sqlite.Open(ctx, strings.TrimPrefix(to, "sqlite://"))
	if err != nil {
		t.Fatal(err)
	}
	people, referrals := findEntity(ds, "people"), findEntity(ds, "referrals")
	ps, rs := dump(t, st, people), dump(t, st, referrals)
	if len(ps) != 2500 || len(rs) != 2500 {
		t.Fatalf("%d people, %d referrals", len(ps), len(rs))
	}
	all, _ := json.Marshal([]any{ps, rs})
	noOriginals(t, "the store obfuscated from a bundle", string(all), originals)
	o := datasafety.NewObfuscator(bytes.Repeat([]byte{7}, 32))
	byID := map[string]map[string]any{}
	for _, p := range ps {
		byID[p["id"].(string)] = p
	}
	for id, dob := range dobs {
		if p := byID[o.UUID(id)]; p == nil || p["dateOfBirth"] == dob {
			t.Fatalf("person %s: %v", id, p)
		}
	}
	for _, r := range rs {
		if p := byID[r["personId"].(string)]; p == nil || p["nhsNumber"] != r["nhsNumber"] {
			t.Fatalf("referral %v no longer joins", r)
		}
	}
	prov, found, err := plinth.StoreProvenance(ctx, st)
	if err != nil || !found || prov.Class != plinth.ClassObfuscated || prov.Detail != "bundle "+realBundle+" key "+fp {
		t.Fatalf("provenance %+v %v %v", prov, found, err)
	}
	st.Close()
	// Run again: every entity is already there.
	if out, err := runPlinth(ctx, t, "obfuscate", "--from", realBundle, "--to", to, "--key-file", key, "--domains", obfuscateSpecs); err != nil || !strings.Contains(out, "(resumed)") {
		t.Fatalf("again: %v\n%s", err, out)
	}

	// The obfuscated bundle loads into staging.
	if out, err := runPlinth(ctx, t, "load", "--from", fromBundle, "--store", "sqlite://"+filepath.Join(dir, "loaded.db"), "--env", "staging", "--domains", obfuscateSpecs); err != nil {
		t.Fatalf("load: %v\n%s", err, out)
	}

	// A damaged source bundle is refused; nothing is written.
	damaged := filepath.Join(dir, "damaged")
	if err := os.CopyFS(damaged, os.DirFS(realBundle)); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(damaged, "people", "people.ndjson.gz")
	b, _ := os.ReadFile(f)
	b[len(b)/2] ^= 0xff
	os.WriteFile(f, b, 0o644)
	for _, target := range []string{filepath.Join(dir, "out-of-damaged"), "sqlite://" + filepath.Join(dir, "damaged.db")} {
		out, err := runPlinth(ctx, t, "obfuscate", "--from", damaged, "--to", target, "--key-file", key, "--domains", obfuscateSpecs)
		var ce *bundle.ChecksumError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "people/people.ndjson.gz does not match its checksum") {
			t.Fatalf("damaged bundle into %s: %v\n%s", target, err, out)
		}
		if _, err := os.Stat(strings.TrimPrefix(target, "sqlite://")); err == nil {
			t.Fatalf("a refused run created %s", target)
		}
	}

	// Neither a store nor a bundle; a bundle target that is not empty.
	if _, err := runPlinth(ctx, t, "obfuscate", "--from", dir, "--to", filepath.Join(dir, "x"), "--key-file", key, "--domains", obfuscateSpecs); err == nil || !strings.Contains(err.Error(), "neither a store URL") {
		t.Fatalf("not a bundle: %v", err)
	}
	if _, err := runPlinth(ctx, t, "obfuscate", "--from", realBundle, "--to", fromStore, "--key-file", key, "--domains", obfuscateSpecs); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("into a full folder: %v", err)
	}
	if mustManifest(t, fromStore).Class != plinth.ClassObfuscated {
		t.Fatal("a refused run changed the bundle")
	}
}

func mustManifest(t *testing.T, dir string) *bundle.Manifest {
	t.Helper()
	m, err := bundle.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
