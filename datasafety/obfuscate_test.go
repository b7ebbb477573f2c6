package datasafety_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/spec"
)

var (
	obfKey      = bytes.Repeat([]byte("k"), 32)
	obfOtherKey = bytes.Repeat([]byte("q"), 32)
)

// obfDomains loads the test spec the project does not ship.
func obfDomains(t testing.TB) (people, referrals *plinth.Entity) {
	t.Helper()
	ds, err := spec.LoadFS(os.DirFS("testdata/obfuscate"), ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		switch d.Name {
		case "people":
			people = d.Entities[0]
		case "referrals":
			referrals = d.Entities[0]
		}
	}
	return people, referrals
}

func nhs(r *rand.Rand, prefix string) string {
	for {
		b := prefix + fmt.Sprintf("%0*d", 9-len(prefix), r.IntN(int(pow10(9-len(prefix)))))
		if c, ok := plinth.NHSCheckDigit(b); ok {
			return b + string(c)
		}
	}
}

func pow10(n int) int64 {
	p := int64(1)
	for range n {
		p *= 10
	}
	return p
}

// person makes a record that looks real: NHS numbers outside the test
// range, ordinary NI prefixes, real-looking phone numbers.
func person(t testing.TB, e *plinth.Entity, r *rand.Rand, i int) map[string]any {
	t.Helper()
	dob := time.Date(1930+r.IntN(80), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
	doc := map[string]any{
		"id":               uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "person %d", i)).String(),
		"title":            []string{"Mr", "Mrs", "Ms", "Dr"}[r.IntN(4)],
		"givenName":        fmt.Sprintf("Givenname%d", i),
		"familyName":       fmt.Sprintf("Familyname%d", i),
		"dateOfBirth":      dob.Format(time.DateOnly),
		"nhsNumber":        nhs(r, fmt.Sprint(4+r.IntN(3))),
		"niNumber":         fmt.Sprintf("%s%06d%c", []string{"AB", "JT", "SN", "WX"}[r.IntN(4)], r.IntN(1000000), 'A'+rune(r.IntN(4))),
		"email":            fmt.Sprintf("person.%d@realmail.co.uk", i),
		"mobile":           fmt.Sprintf("07%03d %06d", 100+r.IntN(900), r.IntN(1000000)),
		"uprn":             int64(10000000 + r.IntN(90000000)),
		"legacyRef":        fmt.Sprintf("LR%06d", i),
		"caseNumber":       int64(10_000_000 + i),
		"gender":           "F",
		"notes":            fmt.Sprintf("Visited on Tuesday about housing case %d", i),
		"ethnicity":        "Black or Black British: Caribbean",
		"religion":         "Christian",
		"healthConditions": []any{"Diabetes"},
		"addresses": []any{
			map[string]any{"line1": fmt.Sprintf("%d Realplace Road", i), "town": "Hackney", "postcode": "E8 1DY", "movedIn": dob.AddDate(20, 0, 0).Format(time.DateOnly), "kind": "home"},
		},
		"registeredAt":  "2020-01-02T03:04:05Z",
		"lastContactAt": "2024-05-06T07:08:09.123456Z",
		"team":          "East",
	}
	if i%3 == 0 {
		doc["dateOfDeath"] = dob.AddDate(70, 0, 3).Format(time.DateOnly)
	}
	data, err := e.Validate(doc, true)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestObfuscateIdentifiersInjectiveInAnyOrder maps 1,000,000 distinct
// identifiers in two orders with two obfuscators of the same key: the
// outputs are identical and distinct. It also maps every valid NHS number
// of the 999 test range: a bijection of that range.
func TestObfuscateIdentifiersInjectiveInAnyOrder(t *testing.T) {
	const n = 1_000_000
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = 10_000_000 + int64(i)*7 // 8-digit legacy ids
	}
	a, b := datasafety.NewObfuscator(obfKey), datasafety.NewObfuscator(obfKey)
	out := make([]int64, n)
	for i, x := range ids {
		out[i] = a.Integer(x, nil, nil)
		if out[i] < 10_000_000 || out[i] > 99_999_999 {
			t.Fatalf("%d became %d: not 8 digits", x, out[i])
		}
	}
	sorted := slices.Clone(out)
	slices.Sort(sorted)
	for i := 1; i < n; i++ {
		if sorted[i] == sorted[i-1] {
			t.Fatalf("collision: %d", sorted[i])
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	order := r.Perm(n)
	for _, i := range order {
		if y := b.Integer(ids[i], nil, nil); y != out[i] {
			t.Fatalf("%d: %d in one order, %d in another", ids[i], out[i], y)
		}
	}

	// Every valid NHS number of the test range maps to another: a
	// bijection of the range. Again in another order, for a sample.
	var test []string
	for body := range 1_000_000 {
		b := fmt.Sprintf("999%06d", body)
		if c, ok := plinth.NHSCheckDigit(b); ok {
			test = append(test, b+string(c))
		}
	}
	nout := make([]string, len(test))
	for i, s := range test {
		nout[i] = a.NHSNumber(s)
	}
	sortedN := slices.Clone(nout)
	slices.Sort(sortedN)
	for i := 1; i < len(sortedN); i++ {
		if sortedN[i] == sortedN[i-1] || !strings.HasPrefix(sortedN[i], "999") {
			t.Fatalf("NHS collision or out of range: %s", sortedN[i])
		}
	}
	for _, i := range r.Perm(len(test))[:100_000] {
		if y := b.NHSNumber(test[i]); y != nout[i] {
			t.Fatalf("NHS %s: %s in one order, %s in another", test[i], nout[i], y)
		}
	}
	t.Logf("%d identifiers and %d test-range NHS numbers: no collision, same in both orders", n, len(test))
}

func TestObfuscateDifferentKeyUnrelated(t *testing.T) {
	a, b := datasafety.NewObfuscator(obfKey), datasafety.NewObfuscator(obfOtherKey)
	same := 0
	for i := range 10_000 {
		x := int64(1_000_000 + i)
		if a.Integer(x, nil, nil) == b.Integer(x, nil, nil) {
			same++
		}
		u := uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "%d", i)).String()
		if a.UUID(u) == b.UUID(u) || a.UUID(u) == u {
			t.Fatalf("uuid %s maps alike under two keys or to itself", u)
		}
	}
	if same > 20 { // 10,000 draws from 9,000,000: about 0 expected
		t.Fatalf("%d of 10000 identifiers map alike under two keys", same)
	}
	if a.Fingerprint() == b.Fingerprint() || !strings.HasPrefix(a.Fingerprint(), "sha256:") || len(a.Fingerprint()) != 19 {
		t.Fatalf("fingerprints %s %s", a.Fingerprint(), b.Fingerprint())
	}
	if err := datasafety.CheckKey(make([]byte, 31)); err == nil {
		t.Fatal("a 31-byte key was accepted")
	}
}

var (
	postcodeRE = regexp.MustCompile(`^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][ABD-HJLNP-UW-Z]{2}$`)
	dramaRE    = regexp.MustCompile(`^(07700 900[0-9]{3}|020 7946 0[0-9]{3}|01(1[3-8]|21|31|41|51|61) 496 0[0-9]{3}|0191 498 0[0-9]{3}|01632 960[0-9]{3})$`)
	niAdminRE  = regexp.MustCompile(`^(CR|FY|MW|NC|PP|PY|PZ)[0-9]{6}[A-D]$`)
)

// TestObfuscateKeepsFormats obfuscates records of a spec the project does
// not ship and checks every value: it passes the spec's validation, keeps
// its format, and no personal value survives.
func TestObfuscateKeepsFormats(t *testing.T) {
	people, _ := obfDomains(t)
	o := datasafety.NewObfuscator(obfKey)
	testRange := datasafety.NewObfuscator(obfKey, datasafety.Policy{NHS: datasafety.NHSTestRange})
	r := rand.New(rand.NewPCG(3, 4))
	seenIDs := map[string]bool{}
	for i := range 2000 {
		in := person(t, people, r, i)
		out, err := o.Record(people, in)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := people.Validate(out, false); err != nil {
			t.Fatalf("record %d does not validate after obfuscation: %v", i, err)
		}
		id := out["id"].(string)
		if seenIDs[id] || id == in["id"] {
			t.Fatalf("key %s repeated or kept", id)
		}
		seenIDs[id] = true
		// The default keeps NHS numbers one to one: a real-looking number
		// maps to another outside the test range (see NHSRange).
		nhs := out["nhsNumber"].(string)
		if strings.HasPrefix(nhs, "999") || len(nhs) != 10 || nhs == in["nhsNumber"] {
			t.Fatalf("NHS number %s (from %s): in the test range, not 10 digits or kept", nhs, in["nhsNumber"])
		}
		if test := testRange.NHSNumber(in["nhsNumber"].(string)); !strings.HasPrefix(test, "999") {
			t.Fatalf("NHS number %s outside the test range with NHSTestRange", test)
		} else if c, ok := plinth.NHSCheckDigit(test[:9]); !ok || c != test[9] {
			t.Fatalf("NHS number %s has a bad check digit", test)
		}
		if c, ok := plinth.NHSCheckDigit(nhs[:9]); !ok || c != nhs[9] {
			t.Fatalf("NHS number %s has a bad check digit", nhs)
		}
		if ni := out["niNumber"].(string); !niAdminRE.MatchString(ni) {
			t.Fatalf("NI number %s has an issued prefix", ni)
		}
		if p := out["mobile"].(string); !dramaRE.MatchString(p) || !strings.HasPrefix(p, "07700 900") {
			t.Fatalf("phone %s is not a drama mobile number", p)
		}
		if em := out["email"].(string); !strings.HasSuffix(em, "@example.org") || strings.Count(em, "@") != 1 {
			t.Fatalf("email %s", em)
		}
		if u := out["uprn"].(int64); u < 10_000_000 || u > 99_999_999 {
			t.Fatalf("uprn %d changed length", u)
		}
		if !regexp.MustCompile(`^[A-Z]{2}[0-9]{6}$`).MatchString(out["legacyRef"].(string)) || out["legacyRef"] == in["legacyRef"] {
			t.Fatalf("legacyRef %s", out["legacyRef"])
		}
		addr := out["addresses"].([]any)[0].(map[string]any)
		if !postcodeRE.MatchString(addr["postcode"].(string)) {
			t.Fatalf("postcode %s", addr["postcode"])
		}
		if addr["kind"] != "home" || out["registeredAt"] != in["registeredAt"] || out["team"] != "East" || out["gender"] != "F" {
			t.Fatalf("a none field or an enum changed: %v", out)
		}
		for _, f := range []string{"ethnicity", "religion", "healthConditions"} {
			if _, ok := out[f]; ok {
				t.Fatalf("special field %s kept", f)
			}
		}
		for _, f := range []string{"givenName", "familyName", "dateOfBirth", "nhsNumber", "niNumber", "email", "mobile", "uprn", "legacyRef", "caseNumber", "notes", "lastContactAt", "title"} {
			if out[f] == in[f] && f != "title" {
				t.Fatalf("%s kept its value %v", f, in[f])
			}
		}
		for _, f := range []string{"line1", "postcode", "movedIn", "town"} {
			if addr[f] == in["addresses"].([]any)[0].(map[string]any)[f] && f != "town" {
				t.Fatalf("address %s kept its value", f)
			}
		}
	}
	c := o.Counts()
	if c.Records != 2000 || c.Removed != 3*2000 || c.Pseudonymised == 0 || c.Copied == 0 || c.Kept == 0 {
		t.Fatalf("counts %+v", c)
	}
}

// TestObfuscateDatesShiftAlike: one record's dates move by the same number
// of days, within the window, in order; the same key shifts alike in
// another record; other keys shift differently.
func TestObfuscateDatesShiftAlike(t *testing.T) {
	people, _ := obfDomains(t)
	o := datasafety.NewObfuscator(obfKey, datasafety.Policy{DateWindowDays: 30})
	r := rand.New(rand.NewPCG(5, 6))
	shifts := map[int]int{}
	for i := 0; i < 600; i += 3 { // every third has a date of death
		in := person(t, people, r, i)
		out, err := o.Record(people, in)
		if err != nil {
			t.Fatal(err)
		}
		d := func(m map[string]any, f string) time.Time {
			x, _ := time.Parse(time.DateOnly, m[f].(string))
			return x
		}
		s1 := int(d(out, "dateOfBirth").Sub(d(in, "dateOfBirth")).Hours() / 24)
		s2 := int(d(out, "dateOfDeath").Sub(d(in, "dateOfDeath")).Hours() / 24)
		inA, outA := in["addresses"].([]any)[0].(map[string]any), out["addresses"].([]any)[0].(map[string]any)
		s3 := int(d(outA, "movedIn").Sub(d(inA, "movedIn")).Hours() / 24)
		lc1, _ := time.Parse(time.RFC3339Nano, in["lastContactAt"].(string))
		lc2, _ := time.Parse(time.RFC3339Nano, out["lastContactAt"].(string))
		s4 := int(lc2.Sub(lc1).Hours() / 24)
		if s1 != s2 || s1 != s3 || s1 != s4 || s1 == 0 || s1 < -30 || s1 > 30 {
			t.Fatalf("record %d: shifts %d %d %d %d", i, s1, s2, s3, s4)
		}
		if !d(out, "dateOfBirth").Before(d(out, "dateOfDeath")) {
			t.Fatal("date of birth no longer before date of death")
		}
		if s1 != o.ShiftDays(in["id"].(string)) {
			t.Fatal("ShiftDays disagrees with Record")
		}
		shifts[s1]++
		// The same record again (another run, another order): the same.
		again, _ := datasafety.NewObfuscator(obfKey, datasafety.Policy{DateWindowDays: 30}).Record(people, in)
		if again["dateOfBirth"] != out["dateOfBirth"] {
			t.Fatal("a second run shifted differently")
		}
	}
	if len(shifts) < 20 {
		t.Fatalf("only %d distinct shifts over 200 records", len(shifts))
	}
}

// TestObfuscateCrossDomainJoin: a referral's personId and nhsNumber still
// match the obfuscated person's id and NHS number.
func TestObfuscateCrossDomainJoin(t *testing.T) {
	people, referrals := obfDomains(t)
	o := datasafety.NewObfuscator(obfKey)
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 200 {
		p := person(t, people, r, i)
		ref, err := referrals.Validate(map[string]any{"personId": p["id"], "nhsNumber": p["nhsNumber"], "referredBy": "dr.who@gp.nhs.uk", "reason": "Mental health", "receivedOn": "2024-01-01"}, true)
		if err != nil {
			t.Fatal(err)
		}
		ref["id"] = uuid.Must(uuid.NewV7()).String() // generated: kept
		op, err := o.Record(people, p)
		if err != nil {
			t.Fatal(err)
		}
		or, err := o.Record(referrals, ref)
		if err != nil {
			t.Fatal(err)
		}
		if or["personId"] != op["id"] || or["nhsNumber"] != op["nhsNumber"] {
			t.Fatalf("referral %v no longer joins person %v", or, op)
		}
		if or["id"] != ref["id"] || or["receivedOn"] != "2024-01-01" {
			t.Fatal("a generated key or a none field changed")
		}
		if _, ok := or["reason"]; ok || !strings.HasSuffix(or["referredBy"].(string), "@example.org") {
			t.Fatalf("referral %v", or)
		}
		if _, err := referrals.Validate(or, false); err != nil {
			t.Fatal(err)
		}
	}
}

func TestObfuscateSpecialGeneralised(t *testing.T) {
	people, _ := obfDomains(t)
	o := datasafety.NewObfuscator(obfKey, datasafety.Policy{SpecialByDomain: map[string]datasafety.SpecialPolicy{"people": datasafety.SpecialGeneralise}})
	out, err := o.Record(people, person(t, people, rand.New(rand.NewPCG(1, 1)), 1))
	if err != nil {
		t.Fatal(err)
	}
	if out["ethnicity"] != "Black or Black British" || out["religion"] != "Christian" {
		t.Fatalf("generalised: %v %v", out["ethnicity"], out["religion"])
	}
	if hc, ok := out["healthConditions"].([]any); ok && len(hc) > 0 {
		t.Fatalf("free-text health conditions kept: %v", hc)
	}
	if c := o.Counts(); c.Generalised != 2 || c.Removed != 1 {
		t.Fatalf("counts %+v", c)
	}
}

// TestObfuscateSpecialPolicyFromSpec: the domain's dataSafety.special
// decides, a field's own wins over it, and a policy given to the
// obfuscator (the command's --special, --special-for) wins over both.
func TestObfuscateSpecialPolicyFromSpec(t *testing.T) {
	cases := []struct {
		name            string
		domain, field   plinth.SpecialHandling // field: ethnicity's own
		policy          datasafety.Policy
		ethnicity, relg bool // kept (generalised)?
	}{
		{"spec says nothing: removed", "", "", datasafety.Policy{}, false, false},
		{"domain generalises", plinth.SpecialGeneralise, "", datasafety.Policy{}, true, true},
		{"field removes, domain generalises", plinth.SpecialGeneralise, plinth.SpecialRemove, datasafety.Policy{}, false, true},
		{"field generalises, domain says nothing", "", plinth.SpecialGeneralise, datasafety.Policy{}, true, false},
		{"--special remove overrides the spec", plinth.SpecialGeneralise, plinth.SpecialGeneralise, datasafety.Policy{Special: datasafety.SpecialRemove}, false, false},
		{"--special-for overrides the spec", plinth.SpecialRemove, plinth.SpecialRemove,
			datasafety.Policy{SpecialByDomain: map[string]datasafety.SpecialPolicy{"people": datasafety.SpecialGeneralise}}, true, true},
	}
	for _, tc := range cases {
		people, _ := obfDomains(t)
		people.Domain.DataSafety.Special = tc.domain
		plinth.FieldByName(people.Fields, "ethnicity").Special = tc.field
		o := datasafety.NewObfuscator(obfKey, tc.policy)
		out, err := o.Record(people, person(t, people, rand.New(rand.NewPCG(1, 1)), 1))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_, eth := out["ethnicity"]
		_, rel := out["religion"]
		if eth != tc.ethnicity || rel != tc.relg {
			t.Errorf("%s: ethnicity kept %v, religion kept %v; want %v, %v", tc.name, eth, rel, tc.ethnicity, tc.relg)
		}
		if eth && out["ethnicity"] != "Black or Black British" {
			t.Errorf("%s: ethnicity %v, want its census group", tc.name, out["ethnicity"])
		}
	}
}

// TestObfuscateNHSNumbersInjectiveByDefault maps 1,000,000 distinct valid
// NHS numbers outside the test range with the default policy: no two give
// one output, none lands in the test range (which keeps to itself), every
// output has a valid check digit, and another obfuscator of the same key
// gives the same in another row order.
func TestObfuscateNHSNumbersInjectiveByDefault(t *testing.T) {
	var in []string
	for body := uint64(400_000_000); len(in) < 1_000_000; body++ {
		b := strconv.FormatUint(body, 10)
		if c, ok := plinth.NHSCheckDigit(b); ok {
			in = append(in, b+string(c))
		}
	}
	a, b := datasafety.NewObfuscator(obfKey), datasafety.NewObfuscator(obfKey)
	out := make([]string, len(in))
	seen := make(map[string]struct{}, len(in))
	for i, s := range in {
		y := a.NHSNumber(s)
		if _, dup := seen[y]; dup {
			t.Fatalf("collision: %s maps to %s, as an earlier number did", s, y)
		}
		seen[y] = struct{}{}
		if c, ok := plinth.NHSCheckDigit(y[:9]); !ok || c != y[9] || strings.HasPrefix(y, "999") {
			t.Fatalf("%s became %s: bad check digit or in the test range", s, y)
		}
		out[i] = y
	}
	for _, i := range rand.New(rand.NewPCG(5, 6)).Perm(len(in))[:200_000] {
		if y := b.NHSNumber(in[i]); y != out[i] {
			t.Fatalf("%s: %s in one order, %s in another", in[i], out[i], y)
		}
	}
}

// TestObfuscateNHSFullRangeInjective: with NHSFull, real-looking numbers
// map injectively to valid numbers.
func TestObfuscateNHSFullRangeInjective(t *testing.T) {
	o := datasafety.NewObfuscator(obfKey, datasafety.Policy{NHS: datasafety.NHSFull})
	r := rand.New(rand.NewPCG(9, 9))
	seen := map[string]string{}
	for range 100_000 {
		s := nhs(r, "4")
		y := o.NHSNumber(s)
		if c, ok := plinth.NHSCheckDigit(y[:9]); !ok || c != y[9] {
			t.Fatalf("%s has a bad check digit", y)
		}
		if prev, ok := seen[y]; ok && prev != s {
			t.Fatalf("%s and %s both map to %s", prev, s, y)
		}
		seen[y] = s
	}
}

func TestObfuscateIdentifierShape(t *testing.T) {
	o := datasafety.NewObfuscator(obfKey)
	seen := map[string]bool{}
	for i := range 50_000 {
		s := fmt.Sprintf("AB-%05d-x%c", i, 'a'+rune(i%26))
		y := o.Identifier("id", s)
		if len(y) != len(s) || !regexp.MustCompile(`^[A-Z]{2}-[0-9]{5}-[a-z]{2}$`).MatchString(y) || seen[y] {
			t.Fatalf("%s became %s", s, y)
		}
		seen[y] = true
	}
	long := strings.Repeat("1234567890", 8)
	if y := o.Identifier("id", long); len(y) != len(long) || y == long || o.Identifier("id", long[:79]+"1") == y {
		t.Fatal("a long identifier")
	}
}

// TestReferencesMapAsTheKeysTheyHold: a contact's residentId (a reference
// to the residents' generated key, which is kept) is kept, so it still
// joins the obfuscated resident.
func TestReferencesMapAsTheKeysTheyHold(t *testing.T) {
	ds := plinthtest.Domains(t)
	residents, contacts := plinthtest.Entity(t, ds, "residents"), plinthtest.Entity(t, ds, "contacts")
	o := datasafety.NewObfuscator(obfKey).SetDomains(ds)
	g := datasafety.NewGenerator(5).SetDomains(ds)
	g.SetPopulation("residents", 10)
	res, err := o.Record(residents, g.At(residents, 3))
	if err != nil {
		t.Fatal(err)
	}
	doc := g.At(contacts, 0)
	doc["residentId"] = res["mosaicId"]
	con, err := o.Record(contacts, doc)
	if err != nil {
		t.Fatal(err)
	}
	if con["residentId"] != res["mosaicId"] {
		t.Fatalf("residentId %v no longer joins resident %v", con["residentId"], res["mosaicId"])
	}
	// Without the domains the reference is personal data like any other
	// and is mapped, so it would not join: SetDomains is what keeps it.
	if plain, _ := datasafety.NewObfuscator(obfKey).Record(contacts, doc); plain["residentId"] == res["mosaicId"] {
		t.Fatal("the test cannot tell a kept reference from a mapped one")
	}
}

// TestRecordInPlaceIsRecord: the in-place variant gives what Record gives,
// under both special-category policies, and Record leaves its input as it
// was.
func TestRecordInPlaceIsRecord(t *testing.T) {
	every := loadEvery(t)
	shipped, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, ds := range [][]*plinth.Domain{shipped, every} {
		g := datasafety.NewGenerator(3).SetDomains(ds)
		for _, policy := range []datasafety.SpecialPolicy{datasafety.SpecialRemove, datasafety.SpecialGeneralise} {
			o := datasafety.NewObfuscator(obfKey, datasafety.Policy{Special: policy}).SetDomains(ds)
			for _, e := range allEntities(ds) {
				docs, err := g.Batch(e, 0, 300)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range docs {
					canon := func() map[string]any {
						v, err := e.Validate(d, false)
						if err != nil {
							t.Fatal(err)
						}
						return v
					}
					orig, mine := canon(), canon()
					want, err1 := o.Record(e, orig)
					got, err2 := o.RecordInPlace(e, mine)
					if (err1 == nil) != (err2 == nil) || !reflect.DeepEqual(want, got) {
						t.Fatalf("%s: in place %v (%v), Record %v (%v)", e.Plural, got, err2, want, err1)
					}
					if !reflect.DeepEqual(orig, canon()) {
						t.Fatalf("%s: Record changed its input", e.Plural)
					}
				}
			}
		}
	}
}
