package plinth

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// DataClass is the class of the data a store (or an export bundle) holds.
// The organisation's rule: development holds only dummy data; staging
// dummy or obfuscated data; production real data.
type DataClass string

// Data classes.
const (
	ClassDummy      DataClass = "dummy"      // made up by plinth seed
	ClassObfuscated DataClass = "obfuscated" // pseudonymised from real data by plinth obfuscate
	ClassReal       DataClass = "real"       // real people's data
)

// Provenance says what class of data a store holds, where it came from
// and when. Stores made before provenance was recorded hold ClassReal
// unless Plinth's own seed filled them.
type Provenance struct {
	Class DataClass `json:"class"`
	// Source says where the data came from: "seed" (Detail: the seed
	// number), "obfuscate" (Detail: the source and the key's fingerprint),
	// "migrate" (Detail: the legacy system), "load" (Detail: the bundle),
	// "mark" (Detail: the reason a person gave).
	Source string    `json:"source"`
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at"`
	// By is who recorded it, for a mark.
	By string `json:"by,omitempty"`
}

// provenanceCheckpoint is the checkpoint a store's provenance is kept in:
// every store keeps checkpoints, so provenance needs nothing more of them.
const provenanceCheckpoint = "plinth.provenance"

// StoreProvenance returns the provenance recorded in a store; found is
// false when none was (see Provenance for what that means).
func StoreProvenance(ctx context.Context, st Store) (p Provenance, found bool, err error) {
	c, found, err := st.Checkpoint(ctx, provenanceCheckpoint)
	if err != nil || !found {
		return Provenance{}, false, err
	}
	if err := json.Unmarshal(c.Value, &p); err != nil {
		return Provenance{}, false, fmt.Errorf("the store's provenance does not decode: %w", err)
	}
	return p, true, nil
}

// CheckpointSetter is what provenance is recorded through: a Store, or a
// Tx so that the provenance commits with what it describes (an audit
// record, the data).
type CheckpointSetter interface {
	SetCheckpoint(ctx context.Context, name string, value []byte) error
}

// SetStoreProvenance records p in the store (or within a transaction),
// replacing what was recorded.
func SetStoreProvenance(ctx context.Context, st CheckpointSetter, p Provenance) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return st.SetCheckpoint(ctx, provenanceCheckpoint, b)
}

// Sources of provenance. The first six are recorded in a store; the last
// three are what ClassOf concludes when nothing was recorded.
const (
	SourceSeed      = "seed"      // Plinth's seed (Detail: the seed number)
	SourceObfuscate = "obfuscate" // Detail: the source and the key's fingerprint
	SourceMigrate   = "migrate"   // Detail: the legacy system
	SourceLoad      = "load"      // Detail: the bundle
	SourceMark      = "mark"      // Detail: the reason a person gave (By: who)
	SourceServe     = "serve"     // an empty store, classed by the first environment that served it

	SourceEmpty      = "empty"      // no records and nothing recorded
	SourceRecognised = "recognised" // nothing recorded; the records look seeded (see ClassOf)
	SourceUnrecorded = "unrecorded" // nothing recorded; the records count as real
)

// Recorded reports whether p was recorded in the store, rather than
// concluded by ClassOf.
func (p Provenance) Recorded() bool {
	switch p.Source {
	case SourceEmpty, SourceRecognised, SourceUnrecorded:
		return false
	}
	return true
}

// ValidClass reports whether c is one of the three data classes.
func ValidClass(c DataClass) bool {
	return c == ClassDummy || c == ClassObfuscated || c == ClassReal
}

// String describes p in a sentence fragment for messages, such as
// "real data (nothing recorded: …)" or "dummy data (seed: seed 42, 2026-01-02 10:00 UTC)".
func (p Provenance) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s data (%s", p.Class, p.Source)
	if p.Detail != "" {
		fmt.Fprintf(&b, ": %s", p.Detail)
	}
	if p.By != "" {
		fmt.Fprintf(&b, ", by %s", p.By)
	}
	if !p.At.IsZero() {
		fmt.Fprintf(&b, ", %s", p.At.UTC().Format("2006-01-02 15:04 UTC"))
	}
	b.WriteString(")")
	return b.String()
}

// RecognitionSample is how many records of each entity ClassOf reads, the
// first in key order, to recognise a store Plinth's seed filled before
// provenance was recorded.
const RecognitionSample = 200

// ClassOf returns the class of the data in the store and where it came
// from: what the store records, or, when nothing is recorded, what it can
// be recognised as. This is the one place the decision is made:
//
//   - recorded provenance wins;
//   - a store with no records of any of the domains' entities is empty:
//     Class dummy, Source "empty" (nothing in it yet; seed, or the first
//     serve, records its class);
//   - a store whose records look made by Plinth's seed is dummy, Source
//     "recognised" (see below);
//   - anything else is real, Source "unrecorded".
//
// The recognition rule reads the first RecognitionSample records (in key
// order) of every entity and looks at every string value, nested ones too:
//
//   - every e-mail address (a field of format email, or any value shaped
//     like one) must be at example.org, example.com or example.net, the
//     domains RFC 2606 reserves, where the seed puts every address;
//   - every NHS number (format nhsNumber) must be in the 999 range, which
//     the NHS reserves for testing and never issues;
//   - every phone number (format phone) must be in one of Ofcom's ranges
//     reserved for drama (020 7946 0xxx, 07700 900xxx …);
//   - and every entity that has records must show at least one mark of the
//     seed: such an e-mail address or NHS number, or the word "dummy" (the
//     seed's "12 Dummy Street" address lines, "Dummy note:" texts, "Dummy"
//     organisations, "DUMMY-000001" references).
//
// One value outside those ranges, or an entity without a mark, makes the
// store real: when in doubt, real. Real people have none of these values,
// since the ranges are reserved so that no one does.
func ClassOf(ctx context.Context, st Store, domains []*Domain) (Provenance, error) {
	p, found, err := StoreProvenance(ctx, st)
	if err != nil {
		return Provenance{}, err
	}
	if found {
		if !ValidClass(p.Class) {
			return Provenance{}, fmt.Errorf("the store records an unknown data class %q: record the right one with plinth store mark --class dummy|obfuscated|real --reason \"…\"", p.Class)
		}
		return p, nil
	}
	empty := true
	var why []string
	dummy := true
	for _, d := range domains {
		for _, e := range d.Entities {
			page, err := st.List(ctx, e, Query{Limit: RecognitionSample})
			if err != nil {
				return Provenance{}, fmt.Errorf("reading %s to recognise the class of its data: %w", e.Plural, err)
			}
			if len(page.Records) == 0 {
				continue
			}
			empty = false
			if !dummy {
				continue
			}
			r := recognition{}
			for _, rec := range page.Records {
				r.object(e.Fields, rec.Data)
			}
			switch {
			case r.against != "":
				dummy = false
				why = []string{fmt.Sprintf("%s holds %s", e.Plural, r.against)}
			case !r.marked:
				dummy = false
				why = []string{fmt.Sprintf("no record of the first %d of %s shows a mark of Plinth's seed", len(page.Records), e.Plural)}
			default:
				why = append(why, e.Plural)
			}
		}
	}
	switch {
	case empty:
		return Provenance{Class: ClassDummy, Source: SourceEmpty, Detail: "the store has no records and no recorded provenance"}, nil
	case dummy:
		return Provenance{Class: ClassDummy, Source: SourceRecognised,
			Detail: "no provenance recorded; the records of " + strings.Join(why, ", ") + " look made by Plinth's seed (reserved e-mail domains, test NHS numbers, drama phone numbers, \"Dummy\" marks)"}, nil
	}
	return Provenance{Class: ClassReal, Source: SourceUnrecorded,
		Detail: "no provenance recorded, so the data counts as real (" + why[0] + ")"}, nil
}

// recognition gathers what the records ClassOf samples show.
type recognition struct {
	against string // the first value Plinth's seed would not make, described without the value
	marked  bool   // some value is one only the seed makes
}

var (
	emailShapeRE = regexp.MustCompile(`^[^@\s]+@([^@\s]+\.[^@\s]+)$`)
	// dramaPhonePrefixes are Ofcom's number ranges reserved for drama,
	// as digits with the leading 0.
	dramaPhonePrefixes = []string{"02079460", "01914980", "01134960", "01144960", "01154960", "01164960",
		"01174960", "01184960", "01214960", "01314960", "01414960", "01514960", "01614960", "02896496",
		"02920180", "01632960", "07700900", "08081570", "09098790", "03069990"}
)

func (r *recognition) object(fields []*Field, doc map[string]any) {
	for k, v := range doc {
		r.value(FieldByName(fields, k), k, v)
	}
}

func (r *recognition) value(f *Field, name string, v any) {
	if r.against != "" {
		return
	}
	switch v := v.(type) {
	case map[string]any:
		var fs []*Field
		if f != nil {
			fs = f.Fields
		}
		r.object(fs, v)
	case []any:
		var item *Field
		if f != nil {
			item = f.Items
		}
		for _, x := range v {
			r.value(item, name, x)
		}
	case string:
		r.text(f, name, v)
	}
}

func (r *recognition) text(f *Field, name, s string) {
	var format Format
	if f != nil {
		format = f.Format
	}
	if m := emailShapeRE.FindStringSubmatch(s); m != nil || format == FormatEmail {
		domain := ""
		if m != nil {
			domain = strings.ToLower(m[1])
		}
		switch domain {
		case "example.org", "example.com", "example.net":
			r.marked = true
		default:
			r.against = fmt.Sprintf("an e-mail address (%s) outside the reserved example domains", name)
		}
		return
	}
	switch format {
	case FormatNHSNumber:
		if strings.HasPrefix(strings.ReplaceAll(s, " ", ""), "999") {
			r.marked = true
		} else {
			r.against = fmt.Sprintf("an NHS number (%s) outside the 999 test range", name)
		}
		return
	case FormatPhone:
		digits := strings.Map(func(c rune) rune {
			if c >= '0' && c <= '9' {
				return c
			}
			return -1
		}, s)
		if strings.HasPrefix(strings.TrimSpace(s), "+44") {
			digits = "0" + strings.TrimPrefix(digits, "44")
		}
		for _, p := range dramaPhonePrefixes {
			if strings.HasPrefix(digits, p) {
				return
			}
		}
		r.against = fmt.Sprintf("a phone number (%s) outside Ofcom's drama ranges", name)
		return
	}
	if strings.Contains(strings.ToLower(s), "dummy") {
		r.marked = true
	}
}

// CheckServe says whether an environment may serve a store holding p:
// development only dummy data, staging dummy or obfuscated data,
// production any (it requires authentication and auditing, which the
// configuration enforces). The error says why and what to do instead.
func CheckServe(env string, p Provenance) error {
	switch {
	case env == EnvDevelopment && p.Class != ClassDummy:
		do := "serve it in staging (--env staging, with authentication), or serve a dummy store in development: a new, empty store (--store sqlite://plinth-data/dummy.db), which serve fills with demo data, or one filled by plinth seed"
		if p.Class == ClassReal {
			do = "serve a dummy store in development instead: a new, empty store (--store sqlite://plinth-data/dummy.db), which serve fills with demo data, or one filled by plinth seed; to work with this data outside production, obfuscate it into a new store with plinth obfuscate --from … --to … --key-file … and serve that in staging"
		}
		return fmt.Errorf("refusing to serve: development serves only dummy data, and this store holds %s. %s%s", p, upperFirst(do), markHint(p))
	case env == EnvStaging && p.Class == ClassReal:
		return fmt.Errorf("refusing to serve: staging serves only dummy or obfuscated data, and this store holds %s. Obfuscate it into a new store with plinth obfuscate --from … --to … --key-file … and serve that, or serve this store in production (--env production, with authentication and auditing)%s", p, markHint(p))
	}
	return nil
}

// CheckSeed says whether plinth seed may write dummy records into a store
// holding p: not into real or obfuscated data, which dummy records would
// mix with. The error says why and what to do instead.
func CheckSeed(p Provenance) error {
	if p.Class == ClassReal || p.Class == ClassObfuscated {
		return fmt.Errorf("refusing to seed: this store holds %s, and dummy records must not be mixed into it. Seed a new, empty store instead (--store sqlite://plinth-data/dummy.db, or a new PostgreSQL database)%s", p, markHint(p))
	}
	return nil
}

// markHint points at plinth store mark when the class was concluded, not
// recorded, and may be wrong.
func markHint(p Provenance) string {
	if p.Source != SourceUnrecorded {
		return ""
	}
	return `. If this store holds only made-up data, record that, with a reason that goes into the audit trail: plinth store mark --class dummy --reason "…"`
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// CheckMigrate says whether a migration from a legacy system may write into
// a store of the environment env. A legacy system holds real people's data
// (sourceClass, ClassReal unless its operator says otherwise), so into
// development or staging it must go through obfuscation (obfuscated true:
// plinth migrate --obfuscate --key-file …); development takes only dummy
// data, so even obfuscated real data is refused there. Production takes
// real data. The error says why and what to do instead.
func CheckMigrate(env string, sourceClass DataClass, obfuscated bool) error {
	if sourceClass == "" {
		sourceClass = ClassReal
	}
	arrives := sourceClass
	if obfuscated && sourceClass == ClassReal {
		arrives = ClassObfuscated
	}
	switch {
	case env == EnvDevelopment && arrives != ClassDummy:
		return fmt.Errorf("refusing to migrate: development holds only dummy data, and this migration would bring %s data. Migrate into staging with --obfuscate --key-file K (pseudonymised), or into production; for development, use plinth seed", arrives)
	case env == EnvStaging && arrives == ClassReal:
		return fmt.Errorf("refusing to migrate: staging holds only dummy or obfuscated data, and the legacy system holds real data. Add --obfuscate --key-file K so that it is pseudonymised on the way in (the key file holds at least 32 random bytes: head -c 32 /dev/urandom > obfuscate.key), or migrate into production")
	}
	return nil
}
