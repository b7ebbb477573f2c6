// Package datasafety keeps real personal data where it belongs: it generates
// clearly dummy records for development, pseudonymises records for staging,
// and guards which class of data each environment may hold.
package datasafety

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/brianvoe/gofakeit/v7"
	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
)

// Generator makes dummy records for any entity, driven by its spec. Values
// are chosen by format first (e-mail addresses only at the reserved
// example.org, example.com and example.net domains, Ofcom drama phone
// numbers, NHS numbers in the 999 test range, NI numbers with a prefix kept
// for administrative use and never issued), then by the field's name
// (names, titles, addresses, dates of birth …), then by its type and
// constraints (enum, min and max, maxLength, pattern).
//
// Record i of an entity is a function of the seed, the entity and i alone,
// so records can be generated in any order, on any number of goroutines,
// and a seed always gives the same data. At(e, i) is that record with its
// key (what seed loads); Record and Records hand out records 0, 1, 2 … of
// each entity in turn as documents for a create (a generated key left out).
//
// References: a field that refers to another entity's key (`references:
// <plural>` in the spec, or by convention a field named <entity>Id of the
// type of that entity's key, such as residentId for the entity resident)
// holds the key of one of that entity's records 0 … Population(plural)-1
// under the same seed. Keys are computed, not looked up: record i's key is
// i+1 for integer keys (generated or not), "DUMMY-%06d" of i+1 for string
// keys, and a version 4 UUID derived from the seed, the entity and i for
// uuid keys. So when both entities are loaded with At (as plinth seed does)
// with the same seed, and the referenced one with at least Population
// records, every reference joins.
//
// A Generator is safe for concurrent use.
type Generator struct {
	seed uint64
	mu   sync.Mutex
	next map[string]int // index of the next record Record hands out, per entity
	pop  map[string]int // population of each referenced entity, by plural
	cat  []*plinth.Domain
	// orders caches the fill order of each field list (fields that depend
	// on their siblings last), keyed by the list's owner.
	orders cache[any, []fillStep]
	enums  cache[*plinth.Field, []string]       // its valid enum values
	refs   cache[*plinth.Field, *plinth.Entity] // nil: no reference
	// entitySeeds holds each entity's share of a record's random seed.
	entitySeeds cache[*plinth.Entity, uint64]
}

// DefaultPopulation is the number of records of a referenced entity that
// references point into, unless SetPopulation says otherwise.
const DefaultPopulation = 1000

// NewGenerator returns a generator seeded with seed. Every seed, zero
// included, gives a reproducible sequence.
func NewGenerator(seed uint64) *Generator {
	return &Generator{seed: seed, next: map[string]int{}, pop: map[string]int{}}
}

// SetDomains gives the domains whose entities references may name (an
// entity's own domain is always known).
func (g *Generator) SetDomains(ds []*plinth.Domain) *Generator {
	g.mu.Lock()
	g.cat = ds
	g.mu.Unlock()
	return g
}

// SetPopulation says how many records of the entity with this plural
// exist (have been or will be loaded with At under the same seed), so
// references to it point at records 0 … n-1.
func (g *Generator) SetPopulation(plural string, n int) *Generator {
	g.mu.Lock()
	g.pop[plural] = n
	g.mu.Unlock()
	return g
}

func (g *Generator) population(plural string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n, ok := g.pop[plural]; ok {
		return n
	}
	return DefaultPopulation
}

// gen is the state of one goroutine generating records: a random source
// reseeded for each record.
type gen struct {
	*Generator
	pcg  *rand.PCG
	fake *gofakeit.Faker
	cur  *plinth.Entity // the entity being generated
	// missing names required fields no valid value was found for, with why.
	missing []string
}

func (g *Generator) worker() *gen {
	pcg := rand.NewPCG(0, 0)
	return &gen{Generator: g, pcg: pcg, fake: gofakeit.NewFaker(pcg, false)}
}

// entityID names an entity across domains.
func entityID(e *plinth.Entity) string {
	id := e.Plural + "\x00" + e.Name
	if e.Domain != nil {
		id = e.Domain.Name + "\x00" + id
	}
	return id
}

func hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// mix is SplitMix64's finaliser: a bijective scramble of x.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Key returns the key of record i of the entity under the generator's seed
// (see Generator for the rule).
func (g *Generator) Key(e *plinth.Entity, i int) any {
	switch e.Key.Type {
	case plinth.KeyUUID:
		h := mix(g.seed ^ mix(hash64(entityID(e))))
		var u uuid.UUID
		binary.BigEndian.PutUint64(u[:8], mix(h^mix(uint64(i))))
		binary.BigEndian.PutUint64(u[8:], mix(h+mix(uint64(i)^0x5bd1e995)))
		u[6] = u[6]&0x0f | 0x40 // version 4
		u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
		return u.String()
	case plinth.KeyInteger:
		return int64(i) + 1
	default:
		return fmt.Sprintf("DUMMY-%06d", i+1)
	}
}

// Records returns the entity's next n dummy records as documents for a
// create (see Record).
func (g *Generator) Records(e *plinth.Entity, n int) []map[string]any {
	if n <= 0 {
		return []map[string]any{}
	}
	id := entityID(e)
	g.mu.Lock()
	from := g.next[id]
	g.next[id] += n
	g.mu.Unlock()
	out, _ := g.batch(e, from, n, !e.Key.Generated)
	return out
}

// Record returns the entity's next dummy record as a document that passes
// e.Validate(doc, true): a generated key is left out, a natural key is
// unique among the records of this generator.
func (g *Generator) Record(e *plinth.Entity) map[string]any {
	return g.Records(e, 1)[0]
}

// At returns record i of the entity with its key (generated or not), as a
// document that passes e.Validate(doc, false).
func (g *Generator) At(e *plinth.Entity, i int) map[string]any {
	return g.worker().record(e, i, true)
}

// Batch returns records from … from+n-1 of the entity with their keys (as
// At does), generated on every core. It fails, naming the field, when a
// required field has a constraint (such as a pattern) no generated value
// met.
func (g *Generator) Batch(e *plinth.Entity, from, n int) ([]map[string]any, error) {
	return g.batch(e, from, n, true)
}

// batch generates records from … from+n-1 in parallel; each worker takes
// chunks of consecutive indexes.
func (g *Generator) batch(e *plinth.Entity, from, n int, withKey bool) ([]map[string]any, error) {
	out := make([]map[string]any, max(n, 0))
	if n <= 0 {
		return out, nil
	}
	const chunk = 64
	workers := min(runtime.GOMAXPROCS(0), (n+chunk-1)/chunk)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := g.worker()
			for {
				lo := int(next.Add(chunk)) - chunk
				if lo >= n {
					return
				}
				for j := lo; j < min(lo+chunk, n); j++ {
					out[j] = w.record(e, from+j, withKey)
				}
				if len(w.missing) > 0 {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("dummy data for %s: %s", e.Plural, w.missing[0])
					}
					mu.Unlock()
					w.missing = nil
				}
			}
		}()
	}
	wg.Wait()
	return out, firstErr
}

// record makes record i of e, with its key when withKey (else only a
// natural key).
func (g *gen) record(e *plinth.Entity, i int, withKey bool) map[string]any {
	h, ok := g.entitySeeds.load(e)
	if !ok {
		h = mix(g.seed ^ mix(hash64(entityID(e))))
		g.entitySeeds.store(e, h)
	}
	g.pcg.Seed(h, mix(uint64(i)^h))
	g.cur = e
	rs := &recordState{}
	fields := e.Fields
	doc := make(map[string]any, len(fields))
	if len(fields) > 0 && fields[0] != nil && fields[0].Name == e.Key.Name {
		if withKey || !e.Key.Generated {
			if k, err := fields[0].Canonical(g.Key(e, i)); err == nil {
				doc[fields[0].Name] = k
			}
		}
		fields = fields[1:]
	}
	g.fillObject(e, fields, doc, "", "", rs)
	return doc
}

// refDate is the "today" of dummy data, fixed so that a seed gives the same
// records on any day.
var refDate = time.Date(2025, time.December, 31, 0, 0, 0, 0, time.UTC)

// recordState carries what one record has chosen so far, so that later
// values agree with earlier ones (an e-mail address made of the name).
type recordState struct {
	first, last string
}

// reference returns the entity a top-level field refers to, or nil.
func (g *Generator) reference(e *plinth.Entity, f *plinth.Field) *plinth.Entity {
	if r, ok := g.refs.load(f); ok {
		return r
	}
	var found *plinth.Entity
	g.mu.Lock()
	ds := slices.Clone(g.cat)
	g.mu.Unlock()
	if e.Domain != nil && !slices.Contains(ds, e.Domain) {
		ds = append(ds, e.Domain)
	}
	found = plinth.ReferencedEntity(ds, e, f)
	g.refs.store(f, found)
	return found
}

// fillObject sets a value for each field in doc. Fields that depend on
// others (an end date on its start date, an e-mail address on the name, a
// contact value on its type) are generated after them. owner (the entity
// or the object field) keys the cached fill order; path is the dotted path
// of the enclosing field ("" at the top), parent its name (for array items,
// the array's).
func (g *gen) fillObject(owner any, fields []*plinth.Field, doc map[string]any, path, parent string, rs *recordState) {
	for _, st := range g.fillOrder(owner, fields) {
		f := st.f
		if !f.Required && g.fake.Float64() >= st.presence {
			continue
		}
		sc := scope{name: f.Name, ni: st.name, prefix: path, parent: parent, siblings: doc, rec: rs}
		v, ok := g.value(f, sc)
		if !ok {
			if f.Required {
				g.fail(f, sc.path())
			}
			continue
		}
		doc[f.Name] = v
		if path == "" {
			if s, ok := v.(string); ok {
				switch st.name.kind {
				case kindFirstName:
					rs.first = s
				case kindLastName:
					rs.last = s
				}
			}
		}
	}
}

// fail records that no valid value was found for a required field.
func (g *gen) fail(f *plinth.Field, path string) {
	if len(g.missing) > 0 {
		return
	}
	why := "its constraints"
	switch {
	case f.Pattern != nil:
		why = fmt.Sprintf("its pattern %s", f.Pattern)
	case f.Type == plinth.TypeArray || f.Type == plinth.TypeObject:
		why = "its items or fields"
	}
	g.missing = append(g.missing, fmt.Sprintf("no generated value for the required field %q met %s; loosen the constraint or give the field a format", path, why))
}

// fillStep is a field to fill, with what its name says, worked out once
// per field list rather than once per record.
type fillStep struct {
	f        *plinth.Field
	name     nameInfo
	presence float64
}

// fillOrder returns fields with those that depend on their siblings last
// (fields without a name left out).
func (g *gen) fillOrder(owner any, fields []*plinth.Field) []fillStep {
	if len(fields) == 0 {
		return nil
	}
	if order, ok := g.orders.load(owner); ok {
		return order
	}
	sorted := slices.Clone(fields)
	slices.SortStableFunc(sorted, func(a, b *plinth.Field) int { return dependent(a) - dependent(b) })
	order := make([]fillStep, 0, len(sorted))
	for _, f := range sorted {
		if f != nil && f.Name != "" {
			order = append(order, fillStep{f: f, name: info(f.Name), presence: presence(f)})
		}
	}
	g.orders.store(owner, order)
	return order
}

func dependent(f *plinth.Field) int {
	if f == nil {
		return 0
	}
	n := lower(f.Name)
	switch {
	case isDeathDate(n), isEndDate(n), strings.Contains(n, "email"), n == "value":
		return 1
	}
	return 0
}

// presence is the chance an optional field is present.
func presence(f *plinth.Field) float64 {
	n := lower(f.Name)
	switch {
	case f.Type == plinth.TypeDate || f.Type == plinth.TypeDateTime:
		if isDeathDate(n) {
			return 0.05
		}
		if isEndDate(n) {
			return 0.3
		}
	}
	return 0.85
}

// scope is where a value is being generated: the field's name (for array
// items, the array's), the enclosing field, and the values chosen so far
// for its siblings.
type scope struct {
	name     string
	ni       nameInfo // info(name)
	prefix   string   // the dotted path of the enclosing field and a dot, or ""
	parent   string
	siblings map[string]any
	rec      *recordState
	try      int // the attempt number, so later attempts can try shorter forms
}

// path is the value's dotted path, for messages.
func (sc scope) path() string { return sc.prefix + sc.name }

// attempts is how many candidates a value gets before the generator gives
// up on a field (leaving an optional field out).
const attempts = 120

// value generates a canonical value for f, or reports false when it found
// none (a constraint it cannot satisfy, or a broken field).
func (g *gen) value(f *plinth.Field, sc scope) (any, bool) {
	switch f.Type {
	case plinth.TypeObject:
		m := make(map[string]any, len(f.Fields))
		g.fillObject(f, f.Fields, m, sc.path()+".", sc.name, sc.rec)
		return m, true
	case plinth.TypeArray:
		if f.Items == nil {
			return nil, false
		}
		lo, hi := 0, 3
		if f.Items.Type == plinth.TypeObject && strings.Contains(lower(f.Name), "address") {
			lo, hi = 1, 2
		}
		n := lo + g.fake.IntN(hi-lo+1)
		items := make([]any, 0, n)
		ni := sc.ni
		if f.Name != sc.name {
			ni = info(f.Name)
		}
		for range n {
			isc := scope{name: f.Name, ni: ni, prefix: sc.prefix, parent: sc.parent, rec: sc.rec}
			if v, ok := g.value(f.Items, isc); ok {
				items = append(items, v)
			}
		}
		return items, true
	}
	if r := g.reference(g.cur, f); r != nil && len(r.Fields) > 0 {
		// A reference: the key of one of the referenced entity's records.
		if v, err := f.Canonical(g.Key(r, g.fake.IntN(max(g.population(r.Plural), 1)))); err == nil {
			return v, true
		}
	}
	switch f.Type {
	case plinth.TypeInteger:
		return g.integer(f, sc)
	case plinth.TypeNumber:
		return g.number(f, sc)
	case plinth.TypeBoolean:
		return g.boolean(sc), true
	case plinth.TypeUUID:
		return g.fake.UUID(), true
	case plinth.TypeDate:
		return g.date(f, sc), true
	case plinth.TypeDateTime:
		t := g.timeBetween(time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC), refDate.Add(24*time.Hour-time.Second))
		return plinth.FormatTime(t), true
	case plinth.TypeString:
		return g.str(f, sc)
	}
	return nil, false
}

// str generates a string: from the enum when there is one, else by format,
// then by name, then generic text, alternating with strings generated from
// the pattern when there is one. Every candidate is checked against the
// field, so a value is only returned when it is valid.
func (g *gen) str(f *plinth.Field, sc scope) (any, bool) {
	if len(f.Enum) > 0 {
		ok := g.validEnum(f)
		if len(ok) == 0 {
			return nil, false
		}
		return g.pickEnum(ok, sc), true
	}
	n := attempts
	if f.Pattern != nil && f.Format != "" {
		// The format's generator has to hit the pattern by chance.
		n = 10 * attempts
	}
	for i := range n {
		var cand string
		if f.Pattern != nil && i%2 == 1 {
			cand = g.fake.Regex(f.Pattern.String())
		} else {
			sc.try = i
			cand = g.text(f, sc)
			if f.MaxLength != nil && f.Format == "" && f.Pattern == nil {
				cand = truncate(cand, *f.MaxLength)
			}
		}
		if f.Pattern == nil {
			// The generators make canonical values of their format (the
			// tests validate every kind), so only the length needs a check.
			if f.MaxLength == nil || utf8.RuneCountInString(cand) <= *f.MaxLength {
				return cand, true
			}
			continue
		}
		if v, err := f.Canonical(cand); err == nil {
			return v, true
		}
	}
	return nil, false
}

// validEnum returns the enum values of f that pass its other constraints,
// worked out once per field.
func (g *gen) validEnum(f *plinth.Field) []string {
	if ok, found := g.enums.load(f); found {
		return ok
	}
	var ok []string
	for _, v := range f.Enum {
		if _, err := f.Canonical(v); err == nil {
			ok = append(ok, v)
		}
	}
	g.enums.store(f, ok)
	return ok
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)[:n]
	return strings.TrimRight(string(r), " ,.-'")
}

// pickEnum picks an enum value, keeping a contact's sub-type in line with
// its type.
func (g *gen) pickEnum(values []string, sc scope) string {
	if t, ok := sc.siblings["type"].(string); ok && strings.EqualFold(sc.name, "subType") {
		var fit []string
		for _, v := range values {
			isAddr := strings.Contains(strings.ToLower(v), "address")
			if isAddr == (t == "address") {
				fit = append(fit, v)
			}
		}
		if len(fit) > 0 {
			values = fit
		}
	}
	return values[g.fake.IntN(len(values))]
}

// text proposes a string for f: by format, then name, then generic.
func (g *gen) text(f *plinth.Field, sc scope) string {
	switch f.Format {
	case plinth.FormatEmail:
		return g.email(sc.rec, sc.try)
	case plinth.FormatPhone:
		return g.phone()
	case plinth.FormatUKPostcode:
		return g.postcode()
	case plinth.FormatNHSNumber:
		return g.nhsNumber()
	case plinth.FormatNINumber:
		return g.niNumber()
	case plinth.FormatUPRN:
		return g.uprn()
	}
	n := sc.ni.lower
	if n == "value" {
		if t, ok := sc.siblings["type"].(string); ok {
			switch strings.ToLower(t) {
			case "email":
				return g.email(sc.rec, sc.try)
			case "phone", "mobile", "telephone":
				return g.phone()
			case "address":
				return g.addressLine1() + ", London " + g.postcode()
			}
		}
	}
	switch sc.ni.kind {
	case kindTitle:
		return g.pick(titles)
	case kindFirstName:
		return g.firstName()
	case kindLastName:
		return g.lastName()
	case kindFullName:
		return g.firstName() + " " + g.lastName()
	case kindEmail:
		return g.email(sc.rec, sc.try)
	case kindPhone:
		return g.phone()
	case kindPostcode:
		return g.postcode()
	case kindNHS:
		return g.nhsNumber()
	case kindNI:
		return g.niNumber()
	case kindUPRN:
		return g.uprn()
	case kindAddressLine1:
		return g.addressLine1()
	case kindAddressLine2:
		return g.pick(districts)
	case kindTown:
		return g.pick(towns)
	case kindAddress:
		return g.addressLine1() + ", " + g.pick(districts) + ", London " + g.postcode()
	case kindCountry:
		if g.fake.Float64() < 0.8 {
			return "United Kingdom"
		}
		return g.fake.Country()
	case kindNationality:
		return g.pick(nationalities)
	case kindEthnicity:
		return g.pick(ethnicities)
	case kindReligion:
		return g.pick(religions)
	case kindLanguage:
		return g.pick(languages)
	case kindGender:
		return g.pick(genders)
	case kindText:
		return "Dummy note: " + g.fake.Sentence()
	case kindJob:
		return g.fake.JobTitle()
	case kindOrganisation:
		return "Dummy " + g.fake.Company()
	case kindURL:
		return "https://example.org/dummy/" + strings.ToLower(g.fake.LetterN(8))
	case kindUsername:
		return strings.ToLower(g.fake.Username())
	case kindPerson:
		return g.staffEmail()
	case kindReference:
		return fmt.Sprintf("DUMMY-%06d", g.fake.IntN(1000000))
	case kindCode:
		return strings.ToUpper(g.fake.Lexify("???")) + g.fake.Numerify("###")
	case kindColour:
		return g.fake.Color()
	case kindType:
		if strings.Contains(lower(sc.parent), "phone") {
			return g.pick(phoneTypes)
		}
	}
	w := g.fake.Word()
	if w == "" {
		w = "dummy"
	}
	return strings.ToUpper(w[:1]) + w[1:]
}

type kind int

const (
	kindNone kind = iota
	kindTitle
	kindFirstName
	kindLastName
	kindFullName
	kindEmail
	kindPhone
	kindPostcode
	kindNHS
	kindNI
	kindUPRN
	kindAddressLine1
	kindAddressLine2
	kindTown
	kindAddress
	kindCountry
	kindNationality
	kindEthnicity
	kindReligion
	kindLanguage
	kindGender
	kindText
	kindJob
	kindOrganisation
	kindURL
	kindUsername
	kindPerson
	kindReference
	kindCode
	kindColour
	kindType
)

// names caches lower-cased field names and their kinds: field names are
// few, values many.
var names cache[string, nameInfo]

type nameInfo struct {
	lower string
	kind  kind
}

func info(name string) nameInfo {
	if ni, ok := names.load(name); ok {
		return ni
	}
	l := strings.ToLower(name)
	ni := nameInfo{lower: l, kind: nameKind(l)}
	names.store(name, ni)
	return ni
}

// lower is strings.ToLower of a field name, cached.
func lower(name string) string { return info(name).lower }

// kindOf is nameKind of a field name, cached.
func kindOf(name string) kind { return info(name).kind }

// nameKind guesses what a string field holds from its lower-cased name.
func nameKind(n string) kind {
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(n, s) {
				return true
			}
		}
		return false
	}
	switch {
	case n == "title" || n == "nametitle" || n == "honorific" || n == "salutation":
		return kindTitle
	case has("firstname", "forename", "givenname", "middlename", "preferredname", "knownas"):
		return kindFirstName
	case has("lastname", "surname", "familyname", "maidenname"):
		return kindLastName
	case n == "name" || has("fullname", "displayname", "personname", "contactname"):
		return kindFullName
	case has("email"):
		return kindEmail
	case has("phone", "mobile", "telephone", "fax"):
		return kindPhone
	case has("postcode", "postalcode", "zip"):
		return kindPostcode
	case has("nhsnumber", "nhsno"):
		return kindNHS
	case has("ninumber", "nationalinsurance", "nino"):
		return kindNI
	case has("uprn", "usrn"):
		return kindUPRN
	case has("addressline1", "line1", "street", "housenumber", "buildingname"):
		return kindAddressLine1
	case has("addressline2", "line2", "district", "locality"):
		return kindAddressLine2
	case has("nationality"):
		return kindNationality
	case has("ethnic"):
		return kindEthnicity
	case has("religion", "faith", "belief"):
		return kindReligion
	case has("language"):
		return kindLanguage
	case has("addressline", "line3", "line4", "town") || n == "city" || strings.HasSuffix(n, "city") && !has("capacity", "electricity", "elasticity"):
		return kindTown
	case n == "address" || has("fulladdress", "postaladdress"):
		return kindAddress
	case has("country"):
		return kindCountry
	case n == "gender" || n == "sex" || has("genderidentity"):
		return kindGender
	case has("description", "note", "comment", "summary", "reason", "detail"):
		return kindText
	case has("jobtitle", "occupation", "profession") || n == "role":
		return kindJob
	case has("company", "organisation", "organization", "employer", "agency"):
		return kindOrganisation
	case strings.HasSuffix(n, "url") || strings.HasSuffix(n, "link") || has("website"):
		return kindURL
	case has("username", "login"):
		return kindUsername
	case strings.HasSuffix(n, "edby"):
		return kindPerson
	case has("reference") || strings.HasSuffix(n, "ref") || strings.HasSuffix(n, "id"):
		return kindReference
	case has("code"):
		return kindCode
	case has("colour", "color"):
		return kindColour
	case n == "type" || n == "kind":
		return kindType
	}
	return kindNone
}

func (g *gen) pick(list []string) string { return list[g.fake.IntN(len(list))] }

// A share of names are non-ASCII or have apostrophes and spaces, so demos
// exercise Unicode, folding and escaping.
var (
	unicodeFirstNames = []string{"Zoë", "Łukasz", "Siobhán", "Chloé", "Seán", "Aoife", "Oisín", "Niamh", "José", "François", "Björn", "Małgorzata", "Bartłomiej", "Zsófia", "Renée", "Jürgen", "Håkon", "Øystein", "Şükrü", "Çağla", "Adébáyọ̀", "Mícheál", "Ngozi", "Thảo", "Anaïs", "Dorothée", "Pádraig"}
	unicodeLastNames  = []string{"O'Brien", "Ó Súilleabháin", "Müller", "Nowak", "Wójcik", "Brontë", "D'Souza", "García", "Núñez", "Öztürk", "Kowalczyk-Żak", "Mac Giolla Íosa", "Nguyễn", "Đặng", "Ångström", "Smith-Jones", "O'Connor", "Dvořák", "Łęcki", "Ní Bhriain", "Çelik", "Okonkwo-Adébáyọ̀", "de la Cruz", "Van der Berg"}
	titles            = []string{"Mr", "Mrs", "Ms", "Miss", "Mx", "Dr"}
	districts         = []string{"Dummy Estate", "Hackney", "Dalston", "Homerton", "Stoke Newington", "Clapton", "Hoxton", "Shoreditch", "Haggerston", "De Beauvoir"}
	towns             = []string{"London", "Dummytown", "Manchester", "Leeds", "Bristol", "Birmingham", "Cardiff", "Glasgow", "Belfast"}
	streetKinds       = []string{"Street", "Road", "Lane", "Close", "Avenue", "Crescent", "Grove", "Way", "Gardens"}
	streetNames       = []string{"Example", "Sample", "Test", "Fictional", "Placeholder", "Mill", "Church"}
	nationalities     = []string{"British", "British", "British", "Irish", "Polish", "Turkish", "Nigerian", "Ghanaian", "Jamaican", "Bangladeshi", "Indian", "Pakistani", "Somali", "Portuguese", "Romanian", "Vietnamese", "Kurdish", "French"}
	ethnicities       = []string{"White: British", "White: Irish", "White: Gypsy or Irish Traveller", "White: Other", "Mixed: White and Black Caribbean", "Mixed: White and Black African", "Mixed: White and Asian", "Mixed: Other", "Asian or Asian British: Indian", "Asian or Asian British: Pakistani", "Asian or Asian British: Bangladeshi", "Asian or Asian British: Chinese", "Black or Black British: African", "Black or Black British: Caribbean", "Other ethnic group: Arab", "Not stated"}
	religions         = []string{"No religion", "Christian", "Muslim", "Jewish", "Hindu", "Sikh", "Buddhist", "Other religion", "Not stated"}
	languages         = []string{"English", "English", "English", "Turkish", "Polish", "Bengali", "Yoruba", "Somali", "Portuguese", "Spanish", "Urdu", "Gujarati", "Vietnamese", "Yiddish", "Kurdish", "Romanian", "British Sign Language"}
	genders           = []string{"Female", "Male", "Non-binary", "Prefer not to say"}
	phoneTypes        = []string{"Mobile", "Home", "Work"}
	emailDomains      = []string{"example.org", "example.com", "example.net"}
)

func (g *gen) firstName() string {
	if g.fake.Float64() < 0.2 {
		return g.pick(unicodeFirstNames)
	}
	return g.fake.FirstName()
}

func (g *gen) lastName() string {
	if g.fake.Float64() < 0.2 {
		return g.pick(unicodeLastNames)
	}
	return g.fake.LastName()
}

// email makes an address at a reserved example domain (RFC 2606), from the
// record's name when it has one. Later tries (when a maxLength or pattern
// refused the first) use shorter forms.
func (g *gen) email(rs *recordState, try int) string {
	first, last := "", ""
	if rs != nil && try < 10 {
		first, last = asciiWord(rs.first), asciiWord(rs.last)
	}
	if first == "" || last == "" {
		first, last = asciiWord(g.fake.FirstName()), asciiWord(g.fake.LastName())
	}
	var local string
	switch {
	case first == "" || last == "" || try >= 20:
		local = "dummy" + strconv.Itoa(g.fake.IntN(1000))
	case try >= 5 || g.fake.Float64() < 0.2:
		local = first[:1] + last
	default:
		local = first + "." + last
		if g.fake.Float64() < 0.3 {
			local += strconv.Itoa(g.fake.IntN(100))
		}
	}
	return local + "@" + g.pick(emailDomains)
}

// staffEmail names a member of staff, as in "addedBy".
func (g *gen) staffEmail() string {
	return asciiWord(g.fake.FirstName()) + "." + asciiWord(g.fake.LastName()) + "@" + g.pick(emailDomains)
}

var asciiFor = strings.NewReplacer("ł", "l", "ø", "o", "đ", "d", "ß", "ss", "æ", "ae", "œ", "oe", "ı", "i")

// asciiWord folds a name to lower-case ASCII letters and digits, for the
// local part of an e-mail address.
func asciiWord(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		var buf [64]byte // names are short: no allocation but the result's
		b := buf[:0]
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
				b = append(b, c)
			}
		}
		return string(b)
	}
	s = asciiFor.Replace(plinth.Fold(s))
	var b strings.Builder
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// dramaPhones are Ofcom's ranges reserved for drama and examples; each
// prefix takes three more random digits.
var dramaPhones = []string{"020 7946 0", "0113 496 0", "0121 496 0", "0161 496 0", "0117 496 0", "0131 496 0", "01632 960", "07700 900", "07700 900", "07700 900"}

func (g *gen) phone() string {
	p := g.pick(dramaPhones) + padded(g.fake.IntN(1000), 3)
	if g.fake.Float64() < 0.1 {
		// International form: +44 and the number without its leading 0.
		p = "+44 " + p[1:]
	}
	return p
}

var (
	postcodeAreas   = []string{"E", "N", "EC", "SE", "SW", "W", "NW", "WC", "B", "M", "LS", "BS", "G", "CF", "L", "S"}
	postcodeLetters = "ABDEFGHJLNPQRSTUWXYZ"
)

// postcode makes a well-formed postcode, such as "E8 1DY".
func (g *gen) postcode() string {
	area := g.pick(postcodeAreas)
	district := strconv.Itoa(1 + g.fake.IntN(20))
	unit := string(postcodeLetters[g.fake.IntN(len(postcodeLetters))]) + string(postcodeLetters[g.fake.IntN(len(postcodeLetters))])
	return area + district + " " + strconv.Itoa(g.fake.IntN(10)) + unit
}

// nhsNumber makes a number in the 999 range, which the NHS reserves for
// testing, with a valid check digit.
func (g *gen) nhsNumber() string {
	for {
		first9 := "999" + padded(g.fake.IntN(1000000), 6)
		if c, ok := plinth.NHSCheckDigit(first9); ok {
			return first9 + string(c)
		}
	}
}

// niPrefixes are National Insurance prefixes HMRC keeps for administrative
// use and never issues to a person (OO and FY, also administrative, are not
// of a valid form).
var niPrefixes = []string{"CR", "MW", "NC", "PP", "PY", "PZ"}

func (g *gen) niNumber() string {
	return g.pick(niPrefixes) + padded(g.fake.IntN(1000000), 6) + string("ABCD"[g.fake.IntN(4)])
}

// uprn makes a 12-digit Unique Property Reference Number.
func (g *gen) uprn() string {
	return "1000" + padded(g.fake.IntN(100000000), 8)
}

// addressLine1 makes a first address line that says it is dummy, such as
// "12 Dummy Street", so nobody mistakes it for a real address.
func (g *gen) addressLine1() string {
	street := "Dummy " + g.pick(streetKinds)
	if g.fake.Float64() < 0.3 {
		street = "Dummy " + g.pick(streetNames) + " " + g.pick(streetKinds)
	}
	if g.fake.Float64() < 0.2 {
		flat := strconv.Itoa(1 + g.fake.IntN(40))
		return "Flat " + flat + ", " + strconv.Itoa(1+g.fake.IntN(200)) + " " + street
	}
	return strconv.Itoa(1+g.fake.IntN(200)) + " " + street
}

// padded is n (not negative) in decimal, zero-padded to width digits, as
// fmt's %0*d.
func padded(n, width int) string {
	var b [20]byte
	i := len(b)
	for ; n > 0 || i > len(b)-width; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}

func (g *gen) boolean(sc scope) bool {
	n := sc.ni.lower
	switch {
	case strings.Contains(n, "restricted"), strings.Contains(n, "deceased"), strings.Contains(n, "sensitive"):
		return g.fake.Float64() < 0.1
	case strings.Contains(n, "active"), strings.Contains(n, "current"):
		return g.fake.Float64() < 0.85
	}
	return g.fake.Bool()
}

func isBirthDate(n string) bool {
	return strings.Contains(n, "birth") || n == "dob"
}

func isDeathDate(n string) bool {
	return strings.Contains(n, "death") || n == "dod"
}

func isEndDate(n string) bool {
	return strings.HasPrefix(n, "end") || strings.Contains(n, "enddate") || strings.Contains(n, "expir") || strings.HasSuffix(n, "to") || strings.HasSuffix(n, "until")
}

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// date makes a date: 1920–2020 for a date of birth, after it for a date of
// death, after the start for an end date, recent otherwise.
func (g *gen) date(f *plinth.Field, sc scope) string {
	n := sc.ni.lower
	lo, hi := day(1990, 1, 1), refDate
	switch {
	case isBirthDate(n):
		lo, hi = day(1920, 1, 1), day(2020, 12, 31)
	case isDeathDate(n):
		lo = day(1950, 1, 1)
		if t, ok := g.siblingDate(sc, isBirthDate); ok {
			lo = t.AddDate(0, 0, 1)
		}
	case isEndDate(n):
		lo = day(2000, 1, 1)
		if t, ok := g.siblingDate(sc, func(s string) bool {
			return strings.HasPrefix(s, "start") || strings.Contains(s, "startdate") || strings.HasSuffix(s, "from")
		}); ok {
			lo = t.AddDate(0, 0, 1)
		}
	case strings.HasPrefix(n, "start") || strings.Contains(n, "startdate"):
		lo = day(2000, 1, 1)
	}
	if hi.Before(lo) {
		hi = lo
	}
	return dateOnly(g.timeBetween(lo, hi))
}

// dateOnly is t.Format(time.DateOnly) for years 0 to 9999, without the
// layout parsing.
func dateOnly(t time.Time) string {
	y, m, d := t.Date()
	if y < 0 || y > 9999 {
		return t.Format(time.DateOnly)
	}
	b := []byte("0000-00-00")
	b[0], b[1], b[2], b[3] = byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10)
	b[5], b[6] = byte('0'+int(m)/10), byte('0'+int(m)%10)
	b[8], b[9] = byte('0'+d/10), byte('0'+d%10)
	return string(b)
}

// siblingDate is the date of the first sibling, in name order, whose
// lower-cased name match accepts and that holds a date.
func (g *gen) siblingDate(sc scope, match func(string) bool) (time.Time, bool) {
	var first string
	var date time.Time
	found := false
	for k, v := range sc.siblings {
		if found && k >= first || !match(lower(k)) {
			continue
		}
		if s, ok := v.(string); ok {
			if t, ok := parseDateOnly(s); ok {
				first, date, found = k, t, true
			}
		}
	}
	return date, found
}

// timeBetween returns a time in [lo, hi], to the second.
func (g *gen) timeBetween(lo, hi time.Time) time.Time {
	span := int64(hi.Sub(lo) / time.Second)
	if span <= 0 {
		return lo
	}
	return lo.Add(time.Duration(g.between(0, span)) * time.Second)
}

// between returns an integer in [lo, hi].
func (g *gen) between(lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	span := uint64(hi-lo) + 1
	if span == 0 {
		return int64(g.fake.Uint64())
	}
	return lo + int64(g.fake.Uint64()%span)
}

// numberRange is the range a numeric field's name suggests.
func numberRange(n string) (lo, hi float64, ok bool) {
	switch {
	case n == "age" || strings.HasPrefix(n, "age") || strings.HasSuffix(n, "age"):
		return 0, 100, true
	case strings.Contains(n, "year"):
		return 1950, 2025, true
	case strings.Contains(n, "percent"):
		return 0, 100, true
	case strings.Contains(n, "latitude") || n == "lat":
		return 51.50, 51.58, true
	case strings.Contains(n, "longitude") || n == "lng" || n == "lon":
		return -0.10, -0.02, true
	case strings.Contains(n, "amount") || strings.Contains(n, "balance") || strings.Contains(n, "price") || strings.Contains(n, "cost") || strings.Contains(n, "rent"):
		return 0, 2000, true
	case strings.Contains(n, "count") || strings.HasPrefix(n, "numberof"):
		return 0, 10, true
	}
	return 0, 0, false
}

// bounds combines a field's min and max with the range its name suggests
// and a default of [lo, lo+width].
func bounds(f *plinth.Field, name string, defLo, defHi float64) (float64, float64) {
	lo, hi := defLo, defHi
	if l, h, ok := numberRange(lower(name)); ok {
		lo, hi = l, h
	}
	if f.Format == plinth.FormatUPRN {
		lo, hi = 100000000000, 999999999999
	}
	width := hi - lo
	minV, maxV := -math.MaxFloat64, math.MaxFloat64
	if f.Type == plinth.TypeInteger {
		minV, maxV = -9e18, 9e18 // within int64
	}
	if f.Min != nil {
		minV = math.Max(minV, *f.Min)
	}
	if f.Max != nil {
		maxV = math.Min(maxV, *f.Max)
	}
	if f.Format == plinth.FormatUPRN {
		minV, maxV = math.Max(minV, 0), math.Min(maxV, 999999999999)
	}
	lo, hi = math.Max(lo, minV), math.Min(hi, maxV)
	if lo > hi {
		// The suggested range misses the allowed one: start at its edge.
		switch {
		case f.Min != nil:
			lo, hi = minV, math.Min(minV+width, maxV)
		default:
			lo, hi = math.Max(maxV-width, minV), maxV
		}
	}
	return lo, hi
}

func (g *gen) integer(f *plinth.Field, sc scope) (any, bool) {
	lo, hi := bounds(f, sc.name, 1, 10000)
	ilo, ihi := math.Ceil(lo), math.Floor(hi)
	if ilo > ihi {
		return nil, false
	}
	for range attempts {
		if v, err := f.Canonical(g.between(int64(ilo), int64(ihi))); err == nil {
			return v, true
		}
	}
	return nil, false
}

func (g *gen) number(f *plinth.Field, sc scope) (any, bool) {
	lo, hi := bounds(f, sc.name, 0, 1000)
	for i := range attempts {
		x := lo + g.fake.Float64()*(hi-lo)
		if i < attempts/2 {
			x = math.Round(x*100) / 100
		}
		if i == attempts-1 {
			x = lo
		}
		if v, err := f.Canonical(x); err == nil {
			return v, true
		}
	}
	return nil, false
}
