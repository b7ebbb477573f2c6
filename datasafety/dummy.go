// Package datasafety keeps real personal data where it belongs: it generates
// clearly dummy records for development, pseudonymises records for staging,
// and guards which class of data each environment may hold.
package datasafety

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/brianvoe/gofakeit/v7"

	"github.com/plinth-data/plinth"
)

// Generator makes dummy records for any entity, driven by its spec. Values
// are chosen by format first (e-mail addresses only at the reserved
// example.org, example.com and example.net domains, Ofcom drama phone
// numbers, NHS numbers in the 999 test range), then by the field's name
// (names, titles, addresses, dates of birth …), then by its type and
// constraints. Every record passes Entity.Validate for a create.
//
// A Generator is deterministic: the same seed gives the same records for
// the same sequence of calls. It is safe for concurrent use, though records
// are then only deterministic per call order.
type Generator struct {
	mu   sync.Mutex
	fake *gofakeit.Faker
	keys map[string]int64 // next natural key number, per entity
	// orders caches the fill order of each field list (fields that depend
	// on their siblings last), keyed by the list's first element.
	orders map[**plinth.Field][]*plinth.Field
}

// NewGenerator returns a generator seeded with seed. Every seed, zero
// included, gives a reproducible sequence.
func NewGenerator(seed uint64) *Generator {
	return &Generator{
		fake:   gofakeit.NewFaker(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15), false),
		keys:   map[string]int64{},
		orders: map[**plinth.Field][]*plinth.Field{},
	}
}

// Records returns n dummy records for the entity.
func (g *Generator) Records(e *plinth.Entity, n int) []map[string]any {
	out := make([]map[string]any, 0, max(n, 0))
	for range n {
		out = append(out, g.Record(e))
	}
	return out
}

// Record returns one dummy record for the entity, as a document that passes
// e.Validate(doc, true): a generated key is left out, a natural key is
// unique among the records of this generator (integer keys count up from 1,
// string keys read "DUMMY-000001", uuid keys are random).
func (g *Generator) Record(e *plinth.Entity) map[string]any {
	g.mu.Lock()
	defer g.mu.Unlock()
	rs := &recordState{}
	var fields []*plinth.Field
	doc := map[string]any{}
	for i, f := range e.Fields {
		if f == nil {
			continue
		}
		if i == 0 && f.Name == e.Key.Name {
			if !e.Key.Generated {
				if k, ok := g.naturalKey(e, f); ok {
					doc[f.Name] = k
				}
			}
			continue
		}
		fields = append(fields, f)
	}
	g.fillObject(fields, doc, "", true, rs)
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

func (g *Generator) naturalKey(e *plinth.Entity, f *plinth.Field) (any, bool) {
	id := e.Plural + "\x00" + e.Name
	if e.Domain != nil {
		id = e.Domain.Name + "\x00" + id
	}
	for range 1000 {
		var cand any
		switch e.Key.Type {
		case plinth.KeyUUID:
			cand = g.fake.UUID()
		case plinth.KeyInteger:
			g.keys[id]++
			cand = g.keys[id]
		default:
			g.keys[id]++
			cand = fmt.Sprintf("DUMMY-%06d", g.keys[id])
		}
		if v, err := f.Canonical(cand); err == nil {
			return v, true
		}
	}
	return nil, false
}

// fillObject sets a value for each field in doc. Fields that depend on
// others (an end date on its start date, an e-mail address on the name, a
// contact value on its type) are generated after them.
// parent names the enclosing field (for array items, the array); top is
// true for the record's own fields.
func (g *Generator) fillObject(fields []*plinth.Field, doc map[string]any, parent string, top bool, rs *recordState) {
	for _, f := range g.fillOrder(fields) {
		if f == nil || f.Name == "" {
			continue
		}
		if !f.Required && g.fake.Float64() >= presence(f) {
			continue
		}
		sc := scope{name: f.Name, parent: parent, siblings: doc, rec: rs}
		if v, ok := g.value(f, sc); ok {
			doc[f.Name] = v
			if top {
				if s, ok := v.(string); ok {
					switch nameKind(strings.ToLower(f.Name)) {
					case kindFirstName:
						rs.first = s
					case kindLastName:
						rs.last = s
					}
				}
			}
		}
	}
}

// fillOrder returns fields with those that depend on their siblings last.
func (g *Generator) fillOrder(fields []*plinth.Field) []*plinth.Field {
	if len(fields) == 0 {
		return nil
	}
	if order, ok := g.orders[&fields[0]]; ok {
		return order
	}
	order := slices.Clone(fields)
	slices.SortStableFunc(order, func(a, b *plinth.Field) int { return dependent(a) - dependent(b) })
	g.orders[&fields[0]] = order
	return order
}

func dependent(f *plinth.Field) int {
	if f == nil {
		return 0
	}
	n := strings.ToLower(f.Name)
	switch {
	case isDeathDate(n), isEndDate(n), strings.Contains(n, "email"), n == "value":
		return 1
	}
	return 0
}

// presence is the chance an optional field is present.
func presence(f *plinth.Field) float64 {
	n := strings.ToLower(f.Name)
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
	parent   string
	siblings map[string]any
	rec      *recordState
	try      int // the attempt number, so later attempts can try shorter forms
}

// attempts is how many candidates a value gets before the generator gives
// up on a field (leaving an optional field out).
const attempts = 120

// value generates a canonical value for f, or reports false when it found
// none (a constraint it cannot satisfy, or a broken field).
func (g *Generator) value(f *plinth.Field, sc scope) (any, bool) {
	switch f.Type {
	case plinth.TypeObject:
		m := map[string]any{}
		g.fillObject(f.Fields, m, sc.name, false, sc.rec)
		return m, true
	case plinth.TypeArray:
		if f.Items == nil {
			return nil, false
		}
		lo, hi := 0, 3
		if f.Items.Type == plinth.TypeObject && strings.Contains(strings.ToLower(f.Name), "address") {
			lo, hi = 1, 2
		}
		n := lo + g.fake.IntN(hi-lo+1)
		items := make([]any, 0, n)
		for range n {
			isc := scope{name: f.Name, parent: sc.parent, rec: sc.rec}
			if v, ok := g.value(f.Items, isc); ok {
				items = append(items, v)
			}
		}
		return items, true
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
func (g *Generator) str(f *plinth.Field, sc scope) (any, bool) {
	if len(f.Enum) > 0 {
		var ok []string
		for _, v := range f.Enum {
			if _, err := f.Canonical(v); err == nil {
				ok = append(ok, v)
			}
		}
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
		if v, err := f.Canonical(cand); err == nil {
			return v, true
		}
	}
	return nil, false
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
func (g *Generator) pickEnum(values []string, sc scope) string {
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
func (g *Generator) text(f *plinth.Field, sc scope) string {
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
	n := strings.ToLower(sc.name)
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
	switch nameKind(n) {
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
		if strings.Contains(strings.ToLower(sc.parent), "phone") {
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

func (g *Generator) pick(list []string) string { return list[g.fake.IntN(len(list))] }

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

func (g *Generator) firstName() string {
	if g.fake.Float64() < 0.2 {
		return g.pick(unicodeFirstNames)
	}
	return g.fake.FirstName()
}

func (g *Generator) lastName() string {
	if g.fake.Float64() < 0.2 {
		return g.pick(unicodeLastNames)
	}
	return g.fake.LastName()
}

// email makes an address at a reserved example domain (RFC 2606), from the
// record's name when it has one. Later tries (when a maxLength or pattern
// refused the first) use shorter forms.
func (g *Generator) email(rs *recordState, try int) string {
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
func (g *Generator) staffEmail() string {
	return asciiWord(g.fake.FirstName()) + "." + asciiWord(g.fake.LastName()) + "@" + g.pick(emailDomains)
}

var asciiFor = strings.NewReplacer("ł", "l", "ø", "o", "đ", "d", "ß", "ss", "æ", "ae", "œ", "oe", "ı", "i")

// asciiWord folds a name to lower-case ASCII letters and digits, for the
// local part of an e-mail address.
func asciiWord(s string) string {
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

func (g *Generator) phone() string {
	p := g.pick(dramaPhones) + fmt.Sprintf("%03d", g.fake.IntN(1000))
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
func (g *Generator) postcode() string {
	area := g.pick(postcodeAreas)
	district := strconv.Itoa(1 + g.fake.IntN(20))
	unit := string(postcodeLetters[g.fake.IntN(len(postcodeLetters))]) + string(postcodeLetters[g.fake.IntN(len(postcodeLetters))])
	return area + district + " " + strconv.Itoa(g.fake.IntN(10)) + unit
}

// nhsNumber makes a number in the 999 range, which the NHS reserves for
// testing, with a valid check digit.
func (g *Generator) nhsNumber() string {
	for {
		first9 := "999" + fmt.Sprintf("%06d", g.fake.IntN(1000000))
		if c, ok := plinth.NHSCheckDigit(first9); ok {
			return first9 + string(c)
		}
	}
}

// niPrefixes are National Insurance prefixes of a valid form.
var niPrefixes = []string{"AB", "AE", "CE", "EH", "GY", "HR", "JA", "JG", "KC", "LP", "MW", "NE", "OA", "PR", "RW", "SC", "TB", "WK", "YH", "ZA"}

func (g *Generator) niNumber() string {
	return g.pick(niPrefixes) + fmt.Sprintf("%06d", g.fake.IntN(1000000)) + string("ABCD"[g.fake.IntN(4)])
}

// uprn makes a 12-digit Unique Property Reference Number.
func (g *Generator) uprn() string {
	return "1000" + fmt.Sprintf("%08d", g.fake.IntN(100000000))
}

// addressLine1 makes a first address line that says it is dummy, such as
// "12 Dummy Street", so nobody mistakes it for a real address.
func (g *Generator) addressLine1() string {
	street := "Dummy " + g.pick(streetKinds)
	if g.fake.Float64() < 0.3 {
		street = "Dummy " + g.pick(streetNames) + " " + g.pick(streetKinds)
	}
	if g.fake.Float64() < 0.2 {
		return fmt.Sprintf("Flat %d, %d %s", 1+g.fake.IntN(40), 1+g.fake.IntN(200), street)
	}
	return fmt.Sprintf("%d %s", 1+g.fake.IntN(200), street)
}

func (g *Generator) boolean(sc scope) bool {
	n := strings.ToLower(sc.name)
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

// date makes a date: 1930–2020 for a date of birth, after it for a date of
// death, after the start for an end date, recent otherwise.
func (g *Generator) date(f *plinth.Field, sc scope) string {
	n := strings.ToLower(sc.name)
	lo, hi := day(1990, 1, 1), refDate
	switch {
	case isBirthDate(n):
		lo, hi = day(1930, 1, 1), day(2020, 12, 31)
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
	return g.timeBetween(lo, hi).Format(time.DateOnly)
}

func (g *Generator) siblingDate(sc scope, match func(string) bool) (time.Time, bool) {
	keys := make([]string, 0, len(sc.siblings))
	for k := range sc.siblings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !match(strings.ToLower(k)) {
			continue
		}
		if s, ok := sc.siblings[k].(string); ok {
			if t, err := time.Parse(time.DateOnly, s); err == nil {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

// timeBetween returns a time in [lo, hi], to the second.
func (g *Generator) timeBetween(lo, hi time.Time) time.Time {
	span := int64(hi.Sub(lo) / time.Second)
	if span <= 0 {
		return lo
	}
	return lo.Add(time.Duration(g.between(0, span)) * time.Second)
}

// between returns an integer in [lo, hi].
func (g *Generator) between(lo, hi int64) int64 {
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
	if l, h, ok := numberRange(strings.ToLower(name)); ok {
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

func (g *Generator) integer(f *plinth.Field, sc scope) (any, bool) {
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

func (g *Generator) number(f *plinth.Field, sc scope) (any, bool) {
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
