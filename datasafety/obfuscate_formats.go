package datasafety

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/brianvoe/gofakeit/v7/data"

	"github.com/plinth-data/plinth"
)

var (
	obfEmailRE    = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
	obfPostcodeRE = regexp.MustCompile(`^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$`)
	obfTrailingPC = regexp.MustCompile(`(?i)[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$`)
	obfPhoneRE    = regexp.MustCompile(`^(\+|0)[0-9][0-9 ()-]{5,}$`)
	obfUUIDRE     = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

	obfFirstNames = data.Person["first"]
	obfLastNames  = data.Person["last"]
	obfWords      = data.Lorem["word"]
	obfTitles     = []string{"Mr", "Mrs", "Ms", "Miss", "Mx", "Dr"}
	obfStreets    = []string{"Street", "Road", "Lane", "Close", "Avenue", "Crescent", "Grove", "Way", "Gardens", "Place", "Terrace"}
	obfDistricts  = []string{"Hackney", "Dalston", "Homerton", "Stoke Newington", "Clapton", "Hoxton", "Shoreditch", "Haggerston", "De Beauvoir", "Hackney Wick"}
	obfTowns      = []string{"London", "Manchester", "Leeds", "Bristol", "Birmingham", "Cardiff", "Glasgow", "Belfast", "Sheffield", "Nottingham", "Leicester", "Liverpool"}
	obfNations    = []string{"British", "Irish", "Polish", "Turkish", "Nigerian", "Ghanaian", "Jamaican", "Bangladeshi", "Indian", "Pakistani", "Somali", "Portuguese", "Romanian", "Vietnamese", "French"}
	obfLanguages  = []string{"English", "Turkish", "Polish", "Bengali", "Yoruba", "Somali", "Portuguese", "Spanish", "Urdu", "Gujarati", "Vietnamese", "Yiddish", "Kurdish", "Romanian"}
	// Ofcom's ranges for drama: each prefix takes three more digits.
	obfGeoPhones = []string{"0113 496 0", "0114 496 0", "0115 496 0", "0116 496 0", "0117 496 0", "0118 496 0", "0121 496 0", "0131 496 0", "0141 496 0", "0151 496 0", "0161 496 0", "0191 498 0", "01632 960"}
	obfAreas     = []string{"E", "N", "EC", "SE", "SW", "W", "NW", "WC", "B", "M", "LS", "BS", "G", "CF", "L", "S", "NG", "LE"}
	// National Insurance prefixes HMRC uses for administrative numbers
	// and never issues to people (HMRC manual NIM39110) that Plinth's NI
	// format accepts ("OO" is one too, but O may not be the second letter).
	obfNIPrefixes = []string{"CR", "FY", "MW", "NC", "PP", "PY", "PZ"}
)

const obfUnitLetters = "ABDEFGHJLNPQRSTUWXYZ"

var (
	// obfFirstASCII and obfLastASCII are obfASCII of each name, for
	// e-mail addresses.
	obfFirstASCII = obfASCIIAll(obfFirstNames)
	obfLastASCII  = obfASCIIAll(obfLastNames)
	// obfWordKinds names the keyed choice of each word of free text.
	obfWordKinds [40]string
)

func init() {
	for i := range obfWordKinds {
		obfWordKinds[i] = "word" + strconv.Itoa(i)
	}
}

func obfASCIIAll(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = obfASCII(s)
	}
	return out
}

// The shape tests below check a cheap condition each regular expression
// implies before running it.

func obfIsEmail(s string) bool {
	return strings.IndexByte(s, '@') > 0 && obfEmailRE.MatchString(s)
}

// obfIsPostcode tests s in upper case. A match has 5 to 8 ASCII
// characters, each the upper case of a rune of at most 2 bytes (ı, ſ).
func obfIsPostcode(s string) bool {
	return len(s) >= 5 && len(s) <= 16 && obfPostcodeRE.MatchString(strings.ToUpper(s))
}

func obfIsPhone(s string) bool {
	return len(s) >= 7 && (s[0] == '+' || s[0] == '0') && obfPhoneRE.MatchString(s)
}

// obfHintKind is what a field's name says its text holds (see text).
type obfHintKind struct {
	title, first, last, name, email, phone, postcode, line1, line2, line3, nationality, language, id bool
}

func newHintKind(hint string) *obfHintKind {
	has := func(subs ...string) bool {
		for _, x := range subs {
			if strings.Contains(hint, x) {
				return true
			}
		}
		return false
	}
	return &obfHintKind{
		title:       hint == "title" || hint == "honorific" || hint == "salutation",
		first:       has("firstname", "forename", "givenname", "middlename", "preferredname", "knownas"),
		last:        has("lastname", "surname", "familyname", "maidenname"),
		name:        hint == "name" || has("fullname", "displayname", "personname", "contactname") || strings.HasSuffix(hint, "edby"),
		email:       has("email"),
		phone:       has("phone", "mobile", "telephone", "fax"),
		postcode:    has("postcode", "postalcode"),
		line1:       has("addressline1", "line1", "street", "housenumber", "buildingname"),
		line2:       has("addressline2", "line2", "district", "locality"),
		line3:       has("addressline", "line3", "line4", "town", "city"),
		nationality: has("nationality"),
		language:    has("language"),
		id:          strings.HasSuffix(hint, "id") || has("reference", "number", "code") || strings.HasSuffix(hint, "ref") || strings.HasSuffix(hint, "no"),
	}
}

// hintKind returns the hint of the field a value is in (obfHint),
// classified once per field or hint.
func (o *Obfuscator) hintKind(f *plinth.Field, path *obfPath) *obfHintKind {
	if f.Name != "" {
		if h, ok := o.hints.load(f); ok {
			return h
		}
		h := newHintKind(strings.ToLower(f.Name))
		o.hints.store(f, h)
		return h
	}
	p := ""
	if path != nil {
		p = path.String()
	}
	hint := obfHint(f, p)
	if h, ok := o.hints.load(hint); ok {
		return h
	}
	h := newHintKind(hint)
	o.hints.store(hint, h)
	return h
}

// formatted maps a personal string by its format, then by what the field's
// name says it holds, then by the value's shape. The result keeps the
// field's maxLength and pattern, or it is an error (naming the field, never
// the value).
func (o *Obfuscator) formatted(f *plinth.Field, s string, path *obfPath) (string, error) {
	var r string
	switch f.Format {
	case plinth.FormatEmail:
		r = o.Email(s)
	case plinth.FormatPhone:
		r = o.Phone(s)
	case plinth.FormatUKPostcode:
		r = o.Postcode(s)
	case plinth.FormatNHSNumber:
		r = o.NHSNumber(s)
	case plinth.FormatNINumber:
		r = o.NINumber(s)
	case plinth.FormatUPRN:
		r = o.UPRN(s)
	default:
		r = o.text(o.hintKind(f, path), s)
		if f.MaxLength != nil && utf8.RuneCountInString(r) > *f.MaxLength {
			r = string([]rune(r)[:*f.MaxLength])
		}
	}
	if f.Pattern != nil && !f.Pattern.MatchString(r) {
		r = o.Identifier("pattern", s)
		if !f.Pattern.MatchString(r) {
			where := f.Name
			if path != nil {
				where = path.String()
			}
			return "", fmt.Errorf("%s: no pseudonym of this value matches the field's pattern %s; give the field a format or mark it pii: none if it is not personal", where, f.Pattern)
		}
	}
	return r, nil
}

// obfHint is the lower-cased name of the field a value is in (the array's
// name for an array item).
func obfHint(f *plinth.Field, path string) string {
	if f.Name != "" {
		return strings.ToLower(f.Name)
	}
	if i := strings.LastIndexByte(path, '['); i >= 0 {
		path = path[:i]
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		path = path[i+1:]
	}
	return strings.ToLower(path)
}

// text maps a string with no format: by what the field's name says it
// holds (h), then by the value's shape.
func (o *Obfuscator) text(h *obfHintKind, s string) string {
	switch {
	case h.title:
		return o.pick(obfTitles, "title", s)
	case h.first:
		return o.FirstName(s)
	case h.last:
		return o.LastName(s)
	case h.name:
		if obfIsEmail(s) {
			return o.Email(s)
		}
		return o.FirstName(s) + " " + o.LastName(s)
	case h.email && obfIsEmail(s):
		return o.Email(s)
	case h.phone && obfIsPhone(s):
		return o.Phone(s)
	case h.postcode && obfIsPostcode(s):
		return o.Postcode(strings.ToUpper(s))
	case h.line1:
		return o.AddressLine(s)
	case h.line2:
		return o.pick(obfDistricts, "district", s)
	case h.line3:
		return o.pick(obfTowns, "town", s)
	case h.nationality:
		return o.pick(obfNations, "nationality", s)
	case h.language:
		return o.pick(obfLanguages, "language", s)
	case h.id:
		return o.Identifier("id", s)
	}
	switch {
	case obfIsEmail(s):
		return o.Email(s)
	case obfIsPostcode(s):
		return o.Postcode(strings.ToUpper(s))
	case len(s) == 36 && obfUUIDRE.MatchString(s):
		return o.UUID(strings.ToLower(s))
	case obfIsPhone(s) && digitCount(s) >= 7 && digitCount(s) <= 15:
		return o.Phone(s)
	case len(s) >= 5 && strings.ContainsAny(s, " ,") && obfTrailingPC.MatchString(s):
		// An address in one line, ending with its postcode.
		pc := obfTrailingPC.FindString(s)
		return o.AddressLine(s) + ", " + o.pick(obfTowns, "town", s) + " " + o.Postcode(strings.ToUpper(pc))
	case !strings.ContainsAny(s, " \t\n") && strings.ContainsAny(s, "0123456789"):
		return o.Identifier("id", s)
	}
	return o.words(s)
}

func digitCount(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			n++
		}
	}
	return n
}

// words replaces free text by as many keyed words (at most 40), keeping
// an initial capital.
func (o *Obfuscator) words(s string) string {
	n := min(max(len(strings.Fields(s)), 1), 40)
	ws := make([]string, n)
	for i := range ws {
		ws[i] = o.pick(obfWords, obfWordKinds[i], s)
	}
	r := strings.Join(ws, " ")
	if c, _ := utf8.DecodeRuneInString(s); unicode.IsUpper(c) {
		r = strings.ToUpper(r[:1]) + r[1:]
	}
	return r
}

// FirstName returns a first name chosen by a keyed hash of s.
func (o *Obfuscator) FirstName(s string) string { return o.pick(obfFirstNames, "first-name", s) }

// LastName returns a last name chosen by a keyed hash of s.
func (o *Obfuscator) LastName(s string) string { return o.pick(obfLastNames, "last-name", s) }

// AddressLine returns a first address line such as "27 Morgan Road".
func (o *Obfuscator) AddressLine(s string) string {
	h := o.prf("address-line", s)
	return strconv.FormatUint(1+h%200, 10) + " " + obfLastNames[(h>>8)%uint64(len(obfLastNames))] + " " + obfStreets[(h>>32)%uint64(len(obfStreets))]
}

// Email returns an address of the same shape at example.org, a domain
// reserved for examples: a keyed first and last name and a keyed 8-symbol
// tag (41 bits, so a million addresses are all but certain to stay
// distinct).
func (o *Obfuscator) Email(s string) string {
	s = strings.ToLower(s)
	h := o.prf("email", s)
	tag := strconv.FormatUint(h, 36)
	if len(tag) > 8 {
		tag = tag[:8]
	}
	first := obfFirstASCII[o.prf("email-first", s)%uint64(len(obfFirstNames))]
	last := obfLastASCII[o.prf("email-last", s)%uint64(len(obfLastNames))]
	return first + "." + last + "." + tag + "@example.org"
}

func obfASCII(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "x"
	}
	return b.String()
}

// Phone returns a number in Ofcom's ranges reserved for drama: 07700 900xxx
// for a mobile number, 020 7946 0xxx for London, another geographic drama
// range otherwise; an international number (+44) stays international.
func (o *Obfuscator) Phone(s string) string {
	var buf [32]byte
	d := buf[:0]
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			d = append(d, s[i])
		}
	}
	national := string(d)
	intl := strings.HasPrefix(s, "+")
	if intl && strings.HasPrefix(national, "44") {
		national = "0" + national[2:]
	}
	h := o.prf("phone", national)
	var p string
	switch {
	case strings.HasPrefix(national, "07"):
		p = "07700 900"
	case strings.HasPrefix(national, "020"):
		p = "020 7946 0"
	default:
		p = obfGeoPhones[(h>>16)%uint64(len(obfGeoPhones))]
	}
	n := h % 1000
	p += string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
	if intl {
		p = "+44 " + p[1:]
	}
	return p
}

// Postcode returns a well-formed UK postcode chosen by a keyed hash of s,
// such as "SE14 7QH".
func (o *Obfuscator) Postcode(s string) string {
	h := o.prf("postcode", strings.ReplaceAll(strings.ToUpper(s), " ", ""))
	n := uint64(len(obfUnitLetters))
	return obfAreas[h%uint64(len(obfAreas))] + strconv.FormatUint(1+(h>>8)%20, 10) + " " +
		strconv.FormatUint((h>>16)%10, 10) + string(obfUnitLetters[(h>>24)%n]) + string(obfUnitLetters[(h>>32)%n])
}

// nhsValid reports whether the nine digits of body take a check digit
// (the modulus-11 rule of plinth.NHSCheckDigit).
func nhsValid(body uint64) bool {
	sum := uint64(0)
	for w := uint64(2); w <= 10; w++ {
		sum += (body % 10) * w
		body /= 10
	}
	return sum%11 != 1
}

// NHSNumber maps a 10-digit NHS number (canonical: digits only, valid check
// digit) to one with a valid modulus-11 check digit. A number of the 999
// test range maps to another in it (a bijection of the range) under either
// NHSRange. Any other maps, with NHSFull, to another valid number outside
// the test range (a bijection of those), or, with NHSTestRange, into the
// test range (not one to one). See NHSRange.
func (o *Obfuscator) NHSNumber(s string) string {
	if len(s) != 10 || digitCount(s) != 10 {
		return o.Identifier("nhs", s)
	}
	body, _ := strconv.ParseUint(s[:9], 10, 64)
	valid6 := func(x uint64) bool { return nhsValid(999_000_000 + x) }
	inTest := strings.HasPrefix(s, "999")
	if o.policy.NHS == NHSFull && !inTest {
		// FF1 over every valid number, walking on past the test range:
		// a bijection of the valid numbers outside it.
		outside := func(y uint64) bool { return y < 999_000_000 && nhsValid(y) }
		y := o.permute("nhs-full", body, 0, 999_999_999, outside)
		return obfNHS(obfPad(y, 9, ""))
	}
	var x uint64
	if inTest {
		x = body % 1_000_000
	} else {
		// Outside the test range: a keyed 6-digit start, moved on to
		// the next that can take a check digit.
		x = o.permute("nhs-full", body, 0, 999_999_999, nil) % 1_000_000
		for !valid6(x) {
			x = (x + 1) % 1_000_000
		}
	}
	return obfNHS(obfPad(o.permute("nhs-test", x, 0, 999_999, valid6), 6, "999"))
}

// obfPad returns prefix and x in n digits with leading zeros (x < 10^n).
func obfPad(x uint64, n int, prefix string) string {
	var buf [24]byte
	b := append(buf[:0], prefix...)
	for range n {
		b = append(b, '0')
	}
	for i := len(b) - 1; i >= len(prefix); i-- {
		b[i] = byte('0' + x%10)
		x /= 10
	}
	return string(b)
}

func obfNHS(body9 string) string {
	c, _ := plinth.NHSCheckDigit(body9)
	return body9 + string(c)
}

// NINumber maps a National Insurance number (canonical: "AB123456C") to
// one with an administrative prefix HMRC never issues (CR, FY, MW, NC, PP,
// PY, PZ), chosen by a keyed hash of the original prefix; the six digits
// and the suffix go through FF1 as one number under that prefix, so
// numbers that share a prefix never collide.
func (o *Obfuscator) NINumber(s string) string {
	if len(s) != 9 {
		return o.Identifier("ni", s)
	}
	p, digits, suffix := s[:2], s[2:8], s[8]
	outP := o.pick(obfNIPrefixes, "ni-prefix", p)
	for _, a := range obfNIPrefixes {
		if a == p {
			outP = p
		}
	}
	d, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || suffix < 'A' || suffix > 'D' {
		return o.Identifier("ni", s)
	}
	y := o.permute("ni:"+p, d*4+uint64(suffix-'A'), 0, 3_999_999, nil)
	return obfPad(y/4, 6, outP) + string(rune('A'+byte(y%4)))
}

// UPRN maps a Unique Property Reference Number (1 to 12 digits) injectively
// to another of as many digits.
func (o *Obfuscator) UPRN(s string) string {
	x, err := strconv.ParseInt(s, 10, 64)
	if err != nil || x <= 0 || s[0] == '0' {
		return o.Identifier("uprn", s)
	}
	return strconv.FormatInt(o.Integer(x, obfFloat(1), obfFloat(999_999_999_999)), 10)
}

// obfGeneralise returns the coarse form of a special-category value, and
// false when it has none (the value is then removed).
func obfGeneralise(f *plinth.Field, v any) (any, bool) {
	if len(f.Enum) > 0 {
		return v, true
	}
	switch x := v.(type) {
	case bool:
		return x, true
	case int64:
		y := x - x%10
		if f.Min != nil && float64(y) < *f.Min {
			y = int64(*f.Min)
		}
		return y, true
	case float64:
		y := float64(int64(x/10) * 10)
		if f.Min != nil && y < *f.Min {
			y = *f.Min
		}
		return y, true
	case string:
		switch f.Type {
		case plinth.TypeDate:
			if t, err := time.Parse(time.DateOnly, x); err == nil {
				return fmt.Sprintf("%04d-01-01", t.Year()), true
			}
		case plinth.TypeDateTime:
			if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
				return plinth.FormatTime(time.Date(t.Year(), 1, 1, 0, 0, 0, 0, time.UTC)), true
			}
		case plinth.TypeString:
			n := strings.ToLower(f.Name)
			var g string
			switch {
			case strings.Contains(n, "ethnic"):
				g = obfEthnicGroup(x)
			case strings.Contains(n, "religion") || strings.Contains(n, "faith") || strings.Contains(n, "belief"):
				g = obfReligionGroup(x)
			}
			if g != "" && (f.MaxLength == nil || utf8.RuneCountInString(g) <= *f.MaxLength) && (f.Pattern == nil || f.Pattern.MatchString(g)) {
				return g, true
			}
		}
	}
	return nil, false
}

// obfEthnicGroup returns the census's top-level ethnic group of a value.
func obfEthnicGroup(s string) string {
	l := strings.ToLower(s)
	has := func(w ...string) bool {
		for _, x := range w {
			if strings.Contains(l, x) {
				return true
			}
		}
		return false
	}
	switch {
	case has("not stated", "not known", "unknown", "declined", "refused"):
		return "Not stated"
	case has("mixed", "multiple"):
		return "Mixed or Multiple ethnic groups"
	case has("white", "gypsy", "traveller", "roma"):
		return "White"
	case has("asian", "indian", "pakistani", "bangladeshi", "chinese"):
		return "Asian or Asian British"
	case has("black", "african", "caribbean"):
		return "Black or Black British"
	}
	return "Other ethnic group"
}

// obfReligionGroup returns one of the census's broad answers.
func obfReligionGroup(s string) string {
	for _, r := range []string{"No religion", "Christian", "Buddhist", "Hindu", "Jewish", "Muslim", "Sikh", "Not stated"} {
		if strings.EqualFold(strings.TrimSpace(s), r) {
			return r
		}
	}
	return "Other religion"
}
