package datasafety

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"maps"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plinth-data/plinth"
)

// MinKeyBytes is the shortest obfuscation key accepted.
const MinKeyBytes = 32

// SpecialPolicy says what happens to special-category fields (ethnicity,
// religion, health …).
type SpecialPolicy string

const (
	// SpecialRemove drops special-category fields (the default).
	SpecialRemove SpecialPolicy = "remove"
	// SpecialGeneralise keeps a coarse form: ethnicity as its top-level
	// census group, religion as one of the census's broad answers, dates
	// as the first of January of their year, numbers to the ten below;
	// enum values and booleans are kept (already coarse); other text is
	// removed.
	SpecialGeneralise SpecialPolicy = "keep-generalised"
)

// NHSRange says where obfuscated NHS numbers land. NHS numbers are
// identifiers, so the mapping should be one to one; the 999 range the NHS
// reserves for testing holds only 909,091 valid numbers (999 and six
// digits, less those without a check digit), so no mapping of every NHS
// number into it can be: the two goals conflict, and the default keeps
// the mapping one to one.
type NHSRange string

const (
	// NHSFull (the default) is a keyed bijection of all valid NHS numbers
	// (FF1 over the nine digits before the check digit, cycle-walking to
	// numbers that take one) that maps the test range onto itself and
	// every other number to another outside it: injective for any input
	// and any row order, dummy data stays in the test range; but an
	// obfuscated real number looks like (and may be) an issued number.
	NHSFull NHSRange = "full"
	// NHSTestRange maps every NHS number into the 999 test range, with a
	// valid check digit: a bijection of that range (numbers already in
	// it, as in dummy data, never collide), but numbers from outside it
	// can collide with one another (of n distinct numbers, about
	// n²/1,818,182 pairs do: ~55 for 10,000; certainly some beyond
	// 909,091), so joins on them may join different people.
	NHSTestRange NHSRange = "test"
)

// Policy tunes an Obfuscator. The zero value is the default.
type Policy struct {
	// Special, when set, applies to every domain not named in
	// SpecialByDomain, whatever its spec says. Empty: each domain's spec
	// decides (dataSafety.special of the field, else of the domain), and
	// a spec that says nothing means SpecialRemove.
	Special SpecialPolicy
	// SpecialByDomain sets the policy per domain name, whatever the spec
	// says (the command's --special-for domain=policy).
	SpecialByDomain map[string]SpecialPolicy
	// DateWindowDays bounds the shift of personal dates: each record's
	// dates move by the same number of days, 1 to DateWindowDays earlier
	// or later. 0 means 180.
	DateWindowDays int
	// NHS says where NHS numbers land; empty means NHSFull.
	NHS NHSRange
}

// Counts counts what an Obfuscator did to field values, by PII class.
type Counts struct {
	Records int64
	// None fields copied unchanged.
	Copied int64
	// Personal values replaced by a pseudonym (or shifted, for dates).
	Pseudonymised int64
	// Personal values kept as they were: generated keys, booleans and
	// enum values (categories, not identifying on their own).
	Kept int64
	// Special values removed or generalised.
	Removed     int64
	Generalised int64
}

// Sub returns c - d, for the counts of one stretch of work.
func (c Counts) Sub(d Counts) Counts {
	return Counts{c.Records - d.Records, c.Copied - d.Copied, c.Pseudonymised - d.Pseudonymised, c.Kept - d.Kept, c.Removed - d.Removed, c.Generalised - d.Generalised}
}

// Obfuscator pseudonymises records for staging copies, driven by each
// field's PII class and format in the spec:
//
//   - none: copied untouched.
//   - personal: replaced by a keyed, deterministic pseudonym that keeps
//     the value's format (see the mapping functions: UUID, Integer,
//     NHSNumber, NINumber, UPRN, Postcode, Phone, Email, Identifier, and
//     names from name lists); dates shifted per record (ShiftDays).
//   - special: removed, or generalised (Policy).
//
// The same value of the same kind gives the same output with the same key,
// whatever the field, entity, domain, run or record order, so references
// still join. Identifiers map injectively through FF1 (format-preserving
// encryption): keys that are personal data and not generated, uuids,
// integers, UPRNs, NI numbers (per original prefix), NHS numbers (see
// NHSRange), and strings that look like identifiers (the key, fields named
// …id, …ref, …reference, …number or …code, and values shaped like them).
// Generated keys are kept. It is safe for concurrent use.
type Obfuscator struct {
	policy Policy
	mac    sync.Pool // of *obfMAC: HMAC-SHA256 under the PRF key
	ff     *ff1
	seal   cipher.AEAD
	fp     string
	small  cache[string, []byte]    // kind → keyed permutation of 0..9
	hints  cache[any, *obfHintKind] // by *plinth.Field or hint string

	// domains are the loaded domains, so that a reference (see
	// plinth.ReferencedEntity) maps exactly as the key it holds; refs
	// caches the referenced entity of each field.
	domains []*plinth.Domain
	refs    cache[*plinth.Field, *plinth.Entity] // nil: none

	memo prfMemo // of pick

	records, copied, pseudonymised, kept, removed, generalised atomic.Int64
}

// NewObfuscator returns an obfuscator for key (at least MinKeyBytes bytes;
// a shorter key panics: check with CheckKey first) and policy.
func NewObfuscator(key []byte, policy ...Policy) *Obfuscator {
	if err := CheckKey(key); err != nil {
		panic(err)
	}
	o := &Obfuscator{fp: KeyFingerprint(key)}
	if len(policy) > 0 {
		o.policy = policy[0]
	}
	if o.policy.DateWindowDays <= 0 {
		o.policy.DateWindowDays = 180
	}
	if o.policy.NHS == "" {
		o.policy.NHS = NHSFull
	}
	// Separate keys for FF1 and for the keyed choices, derived from the
	// key file, so neither use reveals anything about the other.
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte("plinth obfuscate v1 " + label))
		return m.Sum(nil)
	}
	ff, err := newFF1(derive("ff1"))
	if err != nil {
		panic(err)
	}
	o.ff = ff
	blk, err := aes.NewCipher(derive("seal"))
	if err != nil {
		panic(err)
	}
	if o.seal, err = cipher.NewGCM(blk); err != nil {
		panic(err)
	}
	prfKey := derive("prf")
	o.mac.New = func() any { return &obfMAC{h: hmac.New(sha256.New, prfKey)} }
	return o
}

// CheckKey reports whether key is long enough.
func CheckKey(key []byte) error {
	if len(key) < MinKeyBytes {
		return fmt.Errorf("the obfuscation key has %d bytes; it needs at least %d random bytes (make one with: head -c 32 /dev/urandom > obfuscate.key)", len(key), MinKeyBytes)
	}
	return nil
}

// KeyFingerprint names a key without revealing it: "sha256:" and the
// first 12 hex digits of its SHA-256.
func KeyFingerprint(key []byte) string {
	s := sha256.Sum256(key)
	return "sha256:" + hex.EncodeToString(s[:])[:12]
}

// Fingerprint is KeyFingerprint of the obfuscator's key.
func (o *Obfuscator) Fingerprint() string { return o.fp }

// Seal encrypts b (AES-GCM under a key derived from the obfuscation key),
// for what must be kept beside obfuscated data but not read without the
// key, such as the source key a resumable run stopped at.
func (o *Obfuscator) Seal(b []byte) []byte {
	nonce := make([]byte, o.seal.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	return o.seal.Seal(nonce, nonce, b, nil)
}

// Open decrypts what Seal made with the same key.
func (o *Obfuscator) Open(b []byte) ([]byte, error) {
	n := o.seal.NonceSize()
	if len(b) < n {
		return nil, fmt.Errorf("sealed data too short")
	}
	p, err := o.seal.Open(nil, b[:n], b[n:], nil)
	if err != nil {
		return nil, fmt.Errorf("sealed data does not open with this key")
	}
	return p, nil
}

// Counts returns what the obfuscator has done so far.
func (o *Obfuscator) Counts() Counts {
	return Counts{o.records.Load(), o.copied.Load(), o.pseudonymised.Load(), o.kept.Load(), o.removed.Load(), o.generalised.Load()}
}

// obfMAC is a pooled HMAC with its scratch space.
type obfMAC struct {
	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

// prf returns a keyed 64-bit hash of kind and value: the first 8 bytes of
// HMAC-SHA256(kind || 0 || value).
func (o *Obfuscator) prf(kind, value string) uint64 {
	m := o.mac.Get().(*obfMAC)
	m.h.Reset()
	m.buf = append(append(append(m.buf[:0], kind...), 0), value...)
	m.h.Write(m.buf)
	m.h.Sum(m.sum[:0])
	x := binary.BigEndian.Uint64(m.sum[:8])
	if cap(m.buf) > 4096 {
		m.buf = nil
	}
	o.mac.Put(m)
	return x
}

// pick chooses an element of list by a keyed hash of kind and value.
// What it picks for (names, titles, towns …) repeats across records, so
// the hashes are remembered (see prfMemo).
func (o *Obfuscator) pick(list []string, kind, value string) string {
	return list[o.memo.prf(o, kind, value)%uint64(len(list))]
}

// prfMemo remembers prf of values that repeat, up to prfMemoMax of them.
// Readers look in an immutable map without locking; new entries wait in
// pending (under mu) until there are enough to copy into a new map, so
// copying costs O(1) per entry overall.
type prfMemo struct {
	done    atomic.Pointer[map[prfKey]uint64]
	mu      sync.Mutex
	pending map[prfKey]uint64
	full    atomic.Bool
}

type prfKey struct{ kind, value string }

const prfMemoMax = 1 << 18

func (m *prfMemo) prf(o *Obfuscator, kind, value string) uint64 {
	k := prfKey{kind, value}
	if d := m.done.Load(); d != nil {
		if x, ok := (*d)[k]; ok {
			return x
		}
	}
	x := o.prf(kind, value)
	if m.full.Load() {
		return x
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending == nil {
		m.pending = map[prfKey]uint64{}
	}
	// A copy: value may be part of a larger string (a decoded row) that
	// the memo should not keep.
	m.pending[prfKey{strings.Clone(kind), strings.Clone(value)}] = x
	var d map[prfKey]uint64
	if p := m.done.Load(); p != nil {
		d = *p
	}
	if len(m.pending) >= max(256, len(d)/2) {
		next := make(map[prfKey]uint64, len(d)+len(m.pending))
		maps.Copy(next, d)
		maps.Copy(next, m.pending)
		m.done.Store(&next)
		m.pending = nil
		m.full.Store(len(next) >= prfMemoMax)
	}
	return x
}

// specialPolicy is the policy for e's special-category fields, and
// whether it was given to the obfuscator (so overrides the fields' own).
func (o *Obfuscator) specialPolicy(e *plinth.Entity) (p SpecialPolicy, given bool) {
	if e.Domain != nil {
		if p, ok := o.policy.SpecialByDomain[e.Domain.Name]; ok && p != "" {
			return p, true
		}
	}
	if o.policy.Special != "" {
		return o.policy.Special, true
	}
	if e.Domain != nil && e.Domain.DataSafety.Special != "" {
		return fromSpec(e.Domain.DataSafety.Special), false
	}
	return SpecialRemove, false
}

// fromSpec is the policy a spec's dataSafety.special names.
func fromSpec(h plinth.SpecialHandling) SpecialPolicy {
	if h == plinth.SpecialGeneralise {
		return SpecialGeneralise
	}
	return SpecialRemove
}

// fieldSpecial is the policy for the special-category field f of a record.
func (rs *obfRecord) fieldSpecial(f *plinth.Field) SpecialPolicy {
	if !rs.specialGiven && f.Special != "" {
		return fromSpec(f.Special)
	}
	return rs.special
}

// obfRecord is what one record's fields share, and what was done to
// them (added to the obfuscator's counts once per record).
type obfRecord struct {
	e            *plinth.Entity
	shift        int // days
	special      SpecialPolicy
	specialGiven bool // special was given to the obfuscator, not by the spec
	inPlace      bool // the result reuses the record's maps and slices

	copied, pseudonymised, kept, removed, generalised int64
}

// obfPath is the path of a value in a record ("addresses[0].line1"),
// made into a string only when it is needed (number jitter, the hint of
// an array's item, errors).
type obfPath struct {
	parent *obfPath
	name   string // a field's name; "" for an array item
	index  int
}

func (p *obfPath) String() string {
	if p.parent == nil {
		return p.name
	}
	if p.name == "" {
		return p.parent.String() + "[" + strconv.Itoa(p.index) + "]"
	}
	return p.parent.String() + "." + p.name
}

// Record returns the obfuscated copy of one record's canonical data (as
// Store.Scan gives it). data is not changed.
func (o *Obfuscator) Record(e *plinth.Entity, data map[string]any) (map[string]any, error) {
	return o.record(e, data, false)
}

// RecordInPlace is Record that builds the obfuscated copy in data's own
// maps and slices, for a caller that has no further use for the original
// (it saves allocating the copy). data is changed, also on error.
func (o *Obfuscator) RecordInPlace(e *plinth.Entity, data map[string]any) (map[string]any, error) {
	return o.record(e, data, true)
}

func (o *Obfuscator) record(e *plinth.Entity, data map[string]any, inPlace bool) (map[string]any, error) {
	kf := e.KeyField()
	rs := &obfRecord{e: e, inPlace: inPlace}
	rs.special, rs.specialGiven = o.specialPolicy(e)
	if kv, ok := data[kf.Name]; ok {
		var ks string
		switch k := kv.(type) {
		case string:
			ks = k
		case int64:
			ks = strconv.FormatInt(k, 10)
		default:
			ks = fmt.Sprint(kv)
		}
		rs.shift = o.ShiftDays(ks)
	}
	out := data
	if !inPlace {
		out = make(map[string]any, len(data))
	}
	for name, v := range data {
		f := e.Field(name)
		if f == nil {
			return nil, fmt.Errorf("%s: field %q is not in the spec", e.Name, name)
		}
		if f == kf {
			nv, err := o.key(rs, e, f, v)
			if err != nil {
				return nil, err
			}
			out[name] = nv
			continue
		}
		nv, keep, err := o.value(rs, f, &obfPath{name: name}, v)
		if err != nil {
			return nil, err
		}
		if keep {
			out[name] = nv
		} else if inPlace {
			delete(out, name)
		}
	}
	o.records.Add(1)
	for _, c := range [...]struct {
		n *int64
		a *atomic.Int64
	}{{&rs.copied, &o.copied}, {&rs.pseudonymised, &o.pseudonymised}, {&rs.kept, &o.kept}, {&rs.removed, &o.removed}, {&rs.generalised, &o.generalised}} {
		if *c.n != 0 {
			c.a.Add(*c.n)
		}
	}
	return out, nil
}

// key maps a record's key: generated keys and keys that are not personal
// data are kept; a natural key that is personal data is mapped injectively
// by its kind.
func (o *Obfuscator) key(rs *obfRecord, e *plinth.Entity, f *plinth.Field, v any) (any, error) {
	if e.Key.Generated || f.PII != plinth.PIIPersonal {
		if f.PII == plinth.PIIPersonal {
			rs.kept++
		} else {
			rs.copied++
		}
		return v, nil
	}
	rs.pseudonymised++
	switch x := v.(type) {
	case int64:
		return o.Integer(x, f.Min, f.Max), nil
	case string:
		if f.Type == plinth.TypeUUID {
			return o.UUID(x), nil
		}
		if f.Format != "" {
			return o.formatted(f, x, nil)
		}
		return o.Identifier("id", x), nil
	}
	return nil, fmt.Errorf("%s: key %s has an unexpected value type %T", e.Name, f.Name, v)
}

// SetDomains tells the obfuscator every loaded entity, so that a field
// that references another entity's key is mapped exactly as that key is
// (kept when generated), and references still join.
func (o *Obfuscator) SetDomains(ds []*plinth.Domain) *Obfuscator {
	o.domains = ds
	return o
}

// reference returns the entity a top-level field refers to, or nil.
func (o *Obfuscator) reference(e *plinth.Entity, f *plinth.Field) *plinth.Entity {
	if o.domains == nil {
		return nil
	}
	if r, ok := o.refs.load(f); ok {
		return r
	}
	r := plinth.ReferencedEntity(o.domains, e, f)
	o.refs.store(f, r)
	return r
}

// value maps one field value; keep is false when the field is removed.
func (o *Obfuscator) value(rs *obfRecord, f *plinth.Field, path *obfPath, v any) (out any, keep bool, err error) {
	if ref := o.reference(rs.e, f); ref != nil && f.PII != plinth.PIISpecial {
		out, err := o.key(rs, ref, ref.KeyField(), v)
		return out, true, err
	}
	switch f.PII {
	case plinth.PIISpecial:
		if rs.fieldSpecial(f) == SpecialGeneralise {
			if g, ok := obfGeneralise(f, v); ok {
				rs.generalised++
				return g, true, nil
			}
		}
		if f.Required {
			return nil, false, fmt.Errorf("%s: %s is special-category data and required, so it cannot be removed; generalise it (dataSafety: {special: generalise} in the spec, or --special keep-generalised) or make it optional", rs.e.Name, path.String())
		}
		rs.removed++
		return nil, false, nil
	case plinth.PIINone:
		// Objects and arrays go on: their fields may be personal.
		if f.Type != plinth.TypeObject && f.Type != plinth.TypeArray {
			rs.copied++
			return v, true, nil
		}
	}
	switch f.Type {
	case plinth.TypeObject:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false, fmt.Errorf("%s: %s is not an object", rs.e.Name, path.String())
		}
		nm := m
		if !rs.inPlace {
			nm = make(map[string]any, len(m))
		}
		for k, x := range m {
			nf := plinth.FieldByName(f.Fields, k)
			if nf == nil {
				return nil, false, fmt.Errorf("%s: field %s.%s is not in the spec", rs.e.Name, path.String(), k)
			}
			nv, keep, err := o.value(rs, nf, &obfPath{parent: path, name: k}, x)
			if err != nil {
				return nil, false, err
			}
			if keep {
				nm[k] = nv
			} else if rs.inPlace {
				delete(nm, k)
			}
		}
		return nm, true, nil
	case plinth.TypeArray:
		a, ok := v.([]any)
		if !ok {
			return nil, false, fmt.Errorf("%s: %s is not an array", rs.e.Name, path.String())
		}
		na := a[:0] // each item is written at or before where it was read
		if !rs.inPlace {
			na = make([]any, 0, len(a))
		}
		for i, x := range a {
			nv, keep, err := o.value(rs, f.Items, &obfPath{parent: path, index: i}, x)
			if err != nil {
				return nil, false, err
			}
			if keep {
				na = append(na, nv)
			}
		}
		return na, true, nil
	}
	// A personal scalar.
	if len(f.Enum) > 0 || f.Type == plinth.TypeBoolean {
		rs.kept++
		return v, true, nil
	}
	rs.pseudonymised++
	switch f.Type {
	case plinth.TypeDate, plinth.TypeDateTime:
		s, _ := v.(string)
		d, err := o.shiftDate(f.Type, s, rs.shift)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %s: %w", rs.e.Name, path.String(), err)
		}
		return d, true, nil
	case plinth.TypeUUID:
		s, _ := v.(string)
		return o.UUID(s), true, nil
	case plinth.TypeInteger:
		n, ok := v.(int64)
		if !ok {
			return nil, false, fmt.Errorf("%s: %s is not an integer", rs.e.Name, path.String())
		}
		if f.Format == plinth.FormatUPRN {
			return o.Integer(n, obfFloat(1), obfFloat(999999999999)), true, nil
		}
		return o.Integer(n, f.Min, f.Max), true, nil
	case plinth.TypeNumber:
		x, ok := v.(float64)
		if !ok {
			return nil, false, fmt.Errorf("%s: %s is not a number", rs.e.Name, path.String())
		}
		return o.jitter(path.String(), x, f.Min, f.Max), true, nil
	case plinth.TypeString:
		s, _ := v.(string)
		r, err := o.formatted(f, s, path)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", rs.e.Name, err)
		}
		return r, true, nil
	}
	return nil, false, fmt.Errorf("%s: %s has type %s, which obfuscation does not know", rs.e.Name, path.String(), f.Type)
}

func obfFloat(x float64) *float64 { return &x }

// obfIntegerKinds names the permutation of integers of each number of
// digits ("integer7"; obfNegIntegerKinds: "integer7-").
var obfIntegerKinds, obfNegIntegerKinds [21]string

func init() {
	for n := range obfIntegerKinds {
		obfIntegerKinds[n] = "integer" + strconv.Itoa(n)
		obfNegIntegerKinds[n] = obfIntegerKinds[n] + "-"
	}
}

// ShiftDays returns the number of days a record's personal dates move by:
// keyed on the record's key, so one person's dates shift alike wherever
// that key appears, never zero, within the window.
func (o *Obfuscator) ShiftDays(recordKey string) int {
	w := uint64(o.policy.DateWindowDays)
	d := int(o.prf("date-shift", recordKey)%(2*w)) - int(w) // -w .. w-1
	if d >= 0 {
		d++ // -w .. -1, 1 .. w
	}
	return d
}

func (o *Obfuscator) shiftDate(t plinth.Type, s string, days int) (string, error) {
	if t == plinth.TypeDate {
		if r, ok := obfShiftDateOnly(s, days); ok {
			return r, nil
		}
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return "", fmt.Errorf("not a date")
		}
		return d.AddDate(0, 0, days).Format(time.DateOnly), nil
	}
	d, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return "", fmt.Errorf("not a date and time")
	}
	return plinth.FormatTime(d.AddDate(0, 0, days)), nil
}

// obfShiftDateOnly is shiftDate of a date for the common case, without
// time.Parse and Format: a well-formed YYYY-MM-DD whose result is in years
// 0000 to 9999. ok is false otherwise (the caller then takes the general
// path, with the same result).
func obfShiftDateOnly(s string, days int) (string, bool) {
	t, ok := parseDateOnly(s)
	if !ok {
		return "", false
	}
	t = t.AddDate(0, 0, days)
	if t.Year() < 0 || t.Year() > 9999 {
		return "", false
	}
	return dateOnly(t), true
}

// parseDateOnly is time.Parse(time.DateOnly, s) for a well-formed
// YYYY-MM-DD, without the layout parsing; false for anything else.
func parseDateOnly(s string) (time.Time, bool) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return time.Time{}, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if i == 4 || i == 7 {
			continue
		}
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, false
		}
		n = n*10 + int(s[i]-'0')
	}
	y, m, d := n/10000, time.Month(n/100%100), n%100
	t := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	if m < 1 || m > 12 || d < 1 || t.Day() != d {
		return time.Time{}, false
	}
	return t, true
}

// jitter moves a personal number by up to 10%, keyed on its value, within
// the field's bounds.
func (o *Obfuscator) jitter(kind string, x float64, lo, hi *float64) float64 {
	h := o.prf("number:"+kind, strconv.FormatFloat(x, 'g', -1, 64))
	f := 0.9 + 0.2*float64(h>>11)/float64(1<<53)
	y := x * f
	if x == math.Trunc(x) {
		y = math.Round(y)
	}
	if lo != nil && y < *lo {
		y = *lo
	}
	if hi != nil && y > *hi {
		y = *hi
	}
	return y
}

// permute maps x in [lo, hi] to a value in [lo, hi] by a keyed permutation
// of that interval named by kind; accept, when not nil, restricts the
// permutation to the values it accepts (x must be one): cycle-walking
// keeps it a bijection of those.
func (o *Obfuscator) permute(kind string, x, lo, hi uint64, accept func(uint64) bool) uint64 {
	k := hi - lo // the interval has k+1 values
	if k == 0 {
		return x
	}
	digits := 1
	for m := k; m >= 10; m /= 10 {
		digits++
	}
	tweak := []byte(kind)
	y := x - lo
	var buf [20]byte
	for {
		if digits == 1 {
			y = uint64(o.smallPerm(kind)[y])
		} else {
			d := buf[:digits]
			ff1Str(d, y, 10)
			if err := o.ff.encrypt(d, 10, tweak); err != nil {
				panic(err) // digits <= 20 < ff1MaxLen(10)
			}
			y = ff1Num(d, 10)
		}
		if y <= k && (accept == nil || accept(y+lo)) {
			return y + lo
		}
	}
}

// smallPerm returns a keyed permutation of 0..9 for kind.
func (o *Obfuscator) smallPerm(kind string) []byte {
	if p, ok := o.small.load(kind); ok {
		return p
	}
	p := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	for i := 9; i > 0; i-- { // Fisher–Yates driven by the PRF
		j := o.prf("perm10:"+kind, strconv.Itoa(i)) % uint64(i+1)
		p[i], p[j] = p[j], p[i]
	}
	o.small.store(kind, p)
	return p
}

// Integer maps an integer injectively to one with the same sign and
// number of digits, within [min, max] when they are given (a value
// outside its own bounds is left as it is).
func (o *Obfuscator) Integer(x int64, min, max *float64) int64 {
	neg := x < 0
	a := uint64(x)
	if neg {
		a = -uint64(x)
	}
	n := 1
	for m := a; m >= 10; m /= 10 {
		n++
	}
	var lo, hi int64 = 0, math.MaxInt64
	if n > 1 {
		lo = int64(ff1Pow(10, n-1))
	}
	if n < 19 {
		hi = int64(ff1Pow(10, n)) - 1
	}
	if neg {
		lo, hi = -hi, -lo
	}
	if min != nil && *min > float64(lo) {
		lo = int64(math.Ceil(*min))
	}
	if max != nil && *max < float64(hi) {
		hi = int64(math.Floor(*max))
	}
	if x < lo || x > hi {
		return x
	}
	kind := obfIntegerKinds[n]
	if neg {
		kind = obfNegIntegerKinds[n]
	}
	return lo + int64(o.permute(kind, uint64(x-lo), 0, uint64(hi-lo), nil))
}

// UUID maps a uuid (canonical, lower case) by a keyed permutation of its
// 30 hexadecimal digits other than the version and variant digits, which
// are kept: injective, and a valid uuid of the same version.
func (o *Obfuscator) UUID(s string) string {
	if len(s) != 36 {
		return s
	}
	var d [30]byte
	j := 0
	for i := 0; i < 36; i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 || i == 14 || i == 19 {
			continue
		}
		d[j] = obfHexVal(s[i])
		j++
	}
	if err := o.ff.encrypt(d[:], 16, []byte("uuid")); err != nil {
		panic(err)
	}
	b := []byte(s)
	j = 0
	for i := 0; i < 36; i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 || i == 14 || i == 19 {
			continue
		}
		b[i] = "0123456789abcdef"[d[j]]
		j++
	}
	return string(b)
}

func obfHexVal(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}

// Identifier maps a string injectively to one of the same shape: each
// digit stays a digit, each upper-case letter an upper-case letter and
// each lower-case letter a lower-case one (the digits, upper-case and
// lower-case letters are each encrypted with FF1 as one string, in pieces
// chained on what came before when long); other characters are kept.
// "ABC-123456" may become "QZR-903817".
func (o *Obfuscator) Identifier(kind, s string) string {
	b := []byte(s)
	type class struct {
		radix int
		first byte
		in    func(byte) bool
	}
	for _, c := range []class{
		{10, '0', func(x byte) bool { return x >= '0' && x <= '9' }},
		{26, 'A', func(x byte) bool { return x >= 'A' && x <= 'Z' }},
		{26, 'a', func(x byte) bool { return x >= 'a' && x <= 'z' }},
	} {
		var pos []int
		var sym []byte
		for i, x := range b {
			if c.in(x) {
				pos = append(pos, i)
				sym = append(sym, x-c.first)
			}
		}
		if len(sym) == 0 {
			continue
		}
		o.encryptSymbols(kind+":"+string(c.first), sym, c.radix)
		for i, p := range pos {
			b[p] = sym[i] + c.first
		}
	}
	return string(b)
}

// encryptSymbols encrypts sym in place, injectively for each length:
// pieces of at most ff1MaxLen symbols, each under a tweak that names the
// plaintext before it; a single symbol goes through a keyed permutation.
func (o *Obfuscator) encryptSymbols(kind string, sym []byte, radix int) {
	if len(sym) == 1 {
		if radix == 10 {
			sym[0] = o.smallPerm(kind)[sym[0]]
			return
		}
		// A keyed rotation of the letters.
		sym[0] = byte((uint64(sym[0]) + o.prf("rot:"+kind, "")%uint64(radix)) % uint64(radix))
		return
	}
	max := ff1MaxLen(radix)
	prev := ""
	for start := 0; start < len(sym); {
		take := min(max, len(sym)-start)
		if len(sym)-start-take == 1 {
			take-- // leave no lone symbol for the last piece
		}
		piece := sym[start : start+take]
		plain := string(piece)
		tweak := kind
		if start > 0 {
			tweak += ":" + strconv.FormatUint(o.prf("chain", prev), 16)
		}
		if err := o.ff.encrypt(piece, radix, []byte(tweak)); err != nil {
			panic(err)
		}
		prev += plain
		start += take
	}
}
