// Package storetest is the contract every plinth.Store implementation must
// pass. A store's tests call Run with a function that opens a fresh, empty
// store on which Prepare has already been called with Domains(t):
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) plinth.Store {
//			s := openEmptyStore(t) // and t.Cleanup(func() { s.Close() })
//			if err := s.Prepare(t.Context(), storetest.Domains(t)); err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// What the suite holds a store to, beyond the Store documentation:
//
//   - The suite parses its own copy of the domains, so the entities it
//     passes are not the pointers given to Prepare: a store finds an
//     entity's storage from its domain name and plural.
//   - Keys come in ascending order: integers numerically, UUIDs and strings
//     by their UTF-8 bytes, as Go compares strings (in PostgreSQL that is
//     COLLATE "C", not the database's locale).
//   - Data round-trips exactly: canonical types (int64, float64, bool,
//     string, map[string]any, []any) at every depth, integers beyond 2^53
//     in nested objects, empty strings, arrays and objects kept (not made
//     null), text byte for byte (no Unicode normalisation), datetimes with
//     microseconds. Absent fields stay absent: never a nil value in Data.
//   - Conditions are ANDed. Conditions of different filters that reach into
//     the same array are matched independently ("any address with this
//     postcode, and any address whose first line starts so"), not
//     necessarily by the same item.
//   - A generated integer key is never handed out twice, also after a
//     BulkInsert that supplied explicit keys: the next Insert gets a key
//     above them.
//   - Write returns fn's error unchanged (the same value), and a failed
//     Write leaves nothing behind, including the shadow data filters use.
package storetest

import (
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/spec"
)

//go:embed testdata/store-test.yaml
var testSpec []byte

// Domains returns the domains the suite runs against, freshly parsed: one
// domain, store-test, with the entities people (generated integer key),
// access-cards (generated UUID key) and categories (natural string key),
// which between them use every field type and every kind of filter.
func Domains(t testing.TB) []*plinth.Domain {
	t.Helper()
	d, err := spec.Parse("storetest/testdata/store-test.yaml", testSpec)
	if err != nil {
		t.Fatalf("storetest: the test spec does not load: %v", err)
	}
	return []*plinth.Domain{d}
}

// Capabilities declares where a store's engine cannot keep a rule of the
// contract in its strongest form. The suite then holds the store to the
// weaker rule the field names, so the difference is tested, not skipped;
// docs/store-contract.md lists each store's capabilities.
type Capabilities struct {
	// NoSnapshotScan: Scan does not read one snapshot (DynamoDB has none).
	// Each record is read as it is when its page is read. The suite checks
	// that every record present throughout the scan is seen exactly once,
	// in key order, in its state before or after a concurrent write; a
	// record inserted or deleted during the scan may or may not be seen.
	NoSnapshotScan bool
	// ScanMemoryRecords is how many records the flat-memory scan test
	// loads; 0 means 20,000. (Not a difference of meaning: an emulator
	// whose transactions copy the whole table loads 20,000 too slowly.)
	ScanMemoryRecords int
}

// suite holds what the contract tests share.
type suite struct {
	caps       Capabilities
	open       func(t *testing.T) plinth.Store
	people     *plinth.Entity
	cards      *plinth.Entity
	categories *plinth.Entity
}

// Run runs the contract suite. open must return a fresh, empty store that
// has been prepared with Domains(t), and arrange for it to be closed when
// the test ends.
func Run(t *testing.T, open func(t *testing.T) plinth.Store) {
	RunWith(t, Capabilities{}, open)
}

// RunWith is Run for a store that declares capabilities.
func RunWith(t *testing.T, caps Capabilities, open func(t *testing.T) plinth.Store) {
	ds := Domains(t)
	su := &suite{open: open, caps: caps}
	for _, e := range ds[0].Entities {
		switch e.Plural {
		case "people":
			su.people = e
		case "access-cards":
			su.cards = e
		case "categories":
			su.categories = e
		}
	}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"CRUD", su.testCRUD},
		{"RoundTripEveryType", su.testRoundTrip},
		{"AbsentAndEmptyValues", su.testAbsentAndEmpty},
		{"GetUnknown", su.testGetUnknown},
		{"ConcurrentGets", su.testConcurrentGets},
		{"DuplicateKey", su.testDuplicateKey},
		{"StaleAndMissingVersions", su.testVersions},
		{"ConcurrentUpdatesOneWins", su.testConcurrentSameVersion},
		{"ConcurrentIncrementsLoseNothing", su.testConcurrentIncrements},
		{"ShortWritesStayAtomic", su.testShortWrites},
		{"Filters", su.testFilters},
		{"ContainsAndPrefixMatchMetacharactersLiterally", su.testMetacharacters},
		{"KeyOrder", su.testKeyOrder},
		{"PageBoundaries", su.testPageBoundaries},
		{"PaginationUnderConcurrentWrites", su.testConcurrentPagination},
		{"WriteIsAtomic", su.testAtomicity},
		{"WriteSeesItsOwnChanges", su.testWriteSeesOwnChanges},
		{"BulkInsert", su.testBulkInsert},
		{"BulkInsertKeepsGivenKeys", su.testBulkInsertGivenKeys},
		{"FilterDataFollowsUpdatesAndDeletes", su.testShadowsFollowChanges},
		{"ScanReadsOneSnapshot", su.testScanSnapshot},
		{"ScanFilters", su.testScanFilters},
		{"RecordJSON", su.testRecordJSON},
		{"ScanStops", su.testScanStops},
		{"ScanMemoryIsFlat", su.testScanMemoryIsFlat},
		{"Upsert", su.testUpsert},
		{"ConcurrentUpsertsOfANewKey", su.testConcurrentUpserts},
		{"GeneratedUUIDsAreVersion7", su.testGeneratedUUIDs},
		{"BulkLoadIsAtomic", su.testBulkAtomic},
		{"BulkLoadConflictPolicies", su.testBulkConflictPolicies},
		{"BulkLoadBeforeCommit", su.testBulkBeforeCommit},
		{"BulkLoadKeepsMetadata", su.testBulkKeepsMetadata},
		{"Checkpoints", su.testCheckpoints},
		{"SwapCheckpoint", su.testSwapCheckpoint},
		{"WatermarkLateCommit", su.testWatermarkLateCommit},
		{"IncrementalScan", su.testIncrementalScan},
		{"Deletions", su.testDeletions},
		{"PurgeTombstones", su.testPurgeTombstones},
		{"LastUpdated", su.testLastUpdated},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.fn)
	}
}

// ---- helpers ----

// validate turns a document into canonical record data, as the API does.
func validate(t testing.TB, e *plinth.Entity, doc map[string]any, create bool) map[string]any {
	t.Helper()
	data, err := e.Validate(doc, create)
	if err != nil {
		t.Fatalf("storetest: test document for %s does not validate: %v", e.Name, err)
	}
	return data
}

func tryInsert(t testing.TB, s plinth.Store, e *plinth.Entity, data map[string]any) (plinth.Record, error) {
	var r plinth.Record
	err := s.Write(t.Context(), func(tx plinth.Tx) error {
		var err error
		r, err = tx.Insert(t.Context(), e, data)
		return err
	})
	return r, err
}

// insert validates doc and inserts it, failing the test on error.
func insert(t testing.TB, s plinth.Store, e *plinth.Entity, doc map[string]any) plinth.Record {
	t.Helper()
	r, err := tryInsert(t, s, e, validate(t, e, doc, true))
	if err != nil {
		t.Fatalf("insert %s: %v", e.Name, err)
	}
	return r
}

func tryUpdate(t testing.TB, s plinth.Store, e *plinth.Entity, id any, version int64, data map[string]any) (plinth.Record, error) {
	var r plinth.Record
	err := s.Write(t.Context(), func(tx plinth.Tx) error {
		var err error
		r, err = tx.Update(t.Context(), e, id, version, data)
		return err
	})
	return r, err
}

func tryDelete(t testing.TB, s plinth.Store, e *plinth.Entity, id any, version int64) error {
	return s.Write(t.Context(), func(tx plinth.Tx) error {
		return tx.Delete(t.Context(), e, id, version)
	})
}

func get(t testing.TB, s plinth.Store, e *plinth.Entity, id any) plinth.Record {
	t.Helper()
	r, err := s.Get(t.Context(), e, id)
	if err != nil {
		t.Fatalf("get %s %v: %v", e.Name, id, err)
	}
	return r
}

func count(t testing.TB, s plinth.Store, e *plinth.Entity) int64 {
	t.Helper()
	n, err := s.Count(t.Context(), e)
	if err != nil {
		t.Fatalf("count %s: %v", e.Name, err)
	}
	return n
}

// withKey returns a copy of data with the key set.
func withKey(e *plinth.Entity, data map[string]any, key any) map[string]any {
	out := maps.Clone(data)
	out[e.Key.Name] = key
	return out
}

// checkData fails unless got equals want exactly, types included.
func checkData(t testing.TB, what string, got, want map[string]any) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(mergeKeys(got, want))) {
		g, gok := got[k]
		w, wok := want[k]
		if gok != wok || !reflect.DeepEqual(g, w) {
			fmt.Fprintf(&b, "\n  %s: got %s, want %s", k, show(g, gok), show(w, wok))
		}
	}
	t.Errorf("%s: data differs:%s", what, b.String())
}

func mergeKeys(a, b map[string]any) map[string]bool {
	m := map[string]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}

func show(v any, present bool) string {
	if !present {
		return "(absent)"
	}
	s := fmt.Sprintf("%#v", v)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// checkRecord compares a record read back with the one a write returned.
func checkRecord(t testing.TB, what string, got, want plinth.Record) {
	t.Helper()
	checkData(t, what, got.Data, want.Data)
	if got.Version != want.Version {
		t.Errorf("%s: version %d, want %d", what, got.Version, want.Version)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("%s: createdAt %s, want %s", what, got.CreatedAt.Format(time.RFC3339Nano), want.CreatedAt.Format(time.RFC3339Nano))
	}
	if !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("%s: updatedAt %s, want %s", what, got.UpdatedAt.Format(time.RFC3339Nano), want.UpdatedAt.Format(time.RFC3339Nano))
	}
}

// keyLess orders keys as stores must: integers numerically, strings by
// bytes.
func keyLess(a, b any) bool {
	switch x := a.(type) {
	case int64:
		y, ok := b.(int64)
		return ok && x < y
	case string:
		y, ok := b.(string)
		return ok && x < y
	}
	return false
}

// listAll walks every page of a list with the query parameters params and
// page size limit, following cursors as API clients do, and checks that
// keys strictly ascend.
func listAll(t testing.TB, s plinth.Store, e *plinth.Entity, params url.Values, limit int) []plinth.Record {
	t.Helper()
	return walk(t, s, e, params, limit, nil)
}

// walk is listAll calling between (when not nil) between pages.
func walk(t testing.TB, s plinth.Store, e *plinth.Entity, params url.Values, limit int, between func()) []plinth.Record {
	t.Helper()
	var all []plinth.Record
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 100000 {
			t.Fatalf("list %s?%s: the pages do not end", e.Plural, params.Encode())
		}
		v := url.Values{}
		for k, vs := range params {
			v[k] = slices.Clone(vs)
		}
		v.Set("limit", strconv.Itoa(limit))
		if cursor != "" {
			v.Set("cursor", cursor)
		}
		q, err := e.ParseQuery(v)
		if err != nil {
			t.Fatalf("storetest: bad test query %s?%s: %v", e.Plural, v.Encode(), err)
		}
		page, err := s.List(t.Context(), e, q)
		if err != nil {
			t.Fatalf("list %s?%s: %v", e.Plural, v.Encode(), err)
		}
		if len(page.Records) > limit {
			t.Fatalf("list %s?%s: %d records, more than the limit", e.Plural, v.Encode(), len(page.Records))
		}
		all = append(all, page.Records...)
		if !page.More {
			break
		}
		if len(page.Records) == 0 {
			t.Fatalf("list %s?%s: an empty page says more follow", e.Plural, v.Encode())
		}
		cursor = e.Cursor(e.KeyOf(page.Records[len(page.Records)-1]), q)
		if between != nil {
			between()
		}
	}
	for i := 1; i < len(all); i++ {
		if !keyLess(e.KeyOf(all[i-1]), e.KeyOf(all[i])) {
			t.Fatalf("list %s?%s: key %#v comes after %#v: keys must strictly ascend",
				e.Plural, params.Encode(), e.KeyOf(all[i]), e.KeyOf(all[i-1]))
		}
	}
	return all
}

func keys(e *plinth.Entity, rs []plinth.Record) []any {
	out := make([]any, len(rs))
	for i, r := range rs {
		out[i] = e.KeyOf(r)
	}
	return out
}

func firstNames(rs []plinth.Record) []string {
	out := []string{}
	for _, r := range rs {
		s, _ := r.Data["firstName"].(string)
		out = append(out, s)
	}
	return out
}

// ---- the contract ----

func (su *suite) testCRUD(t *testing.T) {
	for _, tc := range []struct {
		e              *plinth.Entity
		create, change map[string]any
		checkKey       func(any) error
	}{
		{
			e:      su.people,
			create: map[string]any{"firstName": "Ada", "lastName": "Lovelace"},
			change: map[string]any{"firstName": "Ada", "lastName": "King", "status": "active"},
			checkKey: func(k any) error {
				if n, ok := k.(int64); !ok || n <= 0 {
					return fmt.Errorf("a generated integer key must be a positive int64, not %#v", k)
				}
				return nil
			},
		},
		{
			e:      su.cards,
			create: map[string]any{"label": "Front door", "holderId": 1},
			change: map[string]any{"label": "Back door", "active": true},
			checkKey: func(k any) error {
				s, ok := k.(string)
				if u, err := uuid.Parse(s); !ok || err != nil || u.String() != s {
					return fmt.Errorf("a generated UUID key must be a lower-case UUID string, not %#v", k)
				}
				return nil
			},
		},
		{
			e:      su.categories,
			create: map[string]any{"code": "books", "title": "Books"},
			change: map[string]any{"code": "books", "title": "Books and maps", "rank": 2},
			checkKey: func(k any) error {
				if k != "books" {
					return fmt.Errorf("the natural key must be kept, got %#v", k)
				}
				return nil
			},
		},
	} {
		t.Run(tc.e.Plural, func(t *testing.T) {
			s := su.open(t)
			e := tc.e
			before := time.Now()
			data := validate(t, e, tc.create, true)
			created, err := tryInsert(t, s, e, data)
			if err != nil {
				t.Fatalf("insert: %v", err)
			}
			key := e.KeyOf(created)
			if err := tc.checkKey(key); err != nil {
				t.Fatal(err)
			}
			checkData(t, "insert result", created.Data, withKey(e, data, key))
			if created.Version != 1 {
				t.Errorf("a new record has version %d, want 1", created.Version)
			}
			if created.CreatedAt.IsZero() || !created.CreatedAt.Equal(created.UpdatedAt) {
				t.Errorf("a new record has createdAt %v and updatedAt %v; want both set and equal", created.CreatedAt, created.UpdatedAt)
			}
			if d := created.CreatedAt.Sub(before); d < -time.Minute || d > time.Minute {
				t.Errorf("createdAt %v is far from now (%v)", created.CreatedAt, before)
			}
			checkRecord(t, "get after insert", get(t, s, e, key), created)
			if n := count(t, s, e); n != 1 {
				t.Errorf("count %d, want 1", n)
			}

			if e.Key.Generated {
				other, err := tryInsert(t, s, e, data)
				if err != nil {
					t.Fatalf("second insert: %v", err)
				}
				if e.KeyOf(other) == key {
					t.Fatalf("two inserts got the same generated key %v", key)
				}
				if err := tryDelete(t, s, e, e.KeyOf(other), 1); err != nil {
					t.Fatalf("delete the second record: %v", err)
				}
			}

			time.Sleep(2 * time.Millisecond) // so updatedAt moves on
			change := validate(t, e, tc.change, false)
			updated, err := tryUpdate(t, s, e, key, 1, change)
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			checkData(t, "update result", updated.Data, withKey(e, change, key))
			if updated.Version != 2 {
				t.Errorf("an updated record has version %d, want 2", updated.Version)
			}
			if !updated.CreatedAt.Equal(created.CreatedAt) {
				t.Errorf("update changed createdAt from %v to %v", created.CreatedAt, updated.CreatedAt)
			}
			if !updated.UpdatedAt.After(created.UpdatedAt) {
				t.Errorf("update left updatedAt at %v (created %v)", updated.UpdatedAt, created.UpdatedAt)
			}
			checkRecord(t, "get after update", get(t, s, e, key), updated)

			if err := tryDelete(t, s, e, key, 2); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if _, err := s.Get(t.Context(), e, key); !errors.Is(err, plinth.ErrNotFound) {
				t.Errorf("get after delete: %v, want ErrNotFound", err)
			}
			if n := count(t, s, e); n != 0 {
				t.Errorf("count after delete %d, want 0", n)
			}
		})
	}
}

const nfdZoe = "Zoe\u0308" // "Zoë" with a combining diaeresis, kept as is

func (su *suite) testRoundTrip(t *testing.T) {
	s := su.open(t)
	e := su.people
	long := strings.Repeat("abcdefghij", 1000)
	doc := map[string]any{
		"firstName":   "Zoë 😀",
		"lastName":    "O'Brien-Łukasz 李小龍 \"quoted\" back\\slash <b>&amp;</b>\ttab\nline",
		"status":      "active",
		"age":         int64(math.MaxInt64),
		"score":       6.02214076e23,
		"verified":    false,
		"dateOfBirth": "1815-12-10",
		"lastSeen":    "2024-05-01T10:30:00.123456+01:00",
		"externalId":  "3F2B8C1E-7D4A-4F0E-9B1A-2C6D8E0F1A2B",
		"notes":       long,
		"profile": map[string]any{
			"nickname": nfdZoe,
			"height":   1.62,
			"visits":   int64(9007199254740993), // 2^53+1: lost if read through float64
			"updated":  "2024-01-01T00:00:00.5Z",
			"preferences": map[string]any{
				"newsletter": false,
				"channels":   []any{"email", "sms", "東京", "<b>&</b>"},
			},
		},
		"addresses": []any{
			map[string]any{"line1": "Flat 1, 10 Downing Street", "postCode": "sw1a 2aa", "since": "2020-02-29", "current": true, "rooms": 3},
			map[string]any{"line1": "Ulica Łódzka 5", "postCode": "E8 1DY", "current": false, "rooms": math.MinInt64},
		},
		"tags": []any{"a", "ß", "", "🏳️‍🌈", strings.Repeat("字", 10000)},
	}
	data := validate(t, e, doc, true)
	// The canonical forms the API hands the store.
	if data["lastSeen"] != "2024-05-01T09:30:00.123456Z" || data["externalId"] != "3f2b8c1e-7d4a-4f0e-9b1a-2c6d8e0f1a2b" {
		t.Fatalf("storetest: unexpected canonical values %v, %v", data["lastSeen"], data["externalId"])
	}
	r, err := tryInsert(t, s, e, data)
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	want := withKey(e, data, e.KeyOf(r))
	checkData(t, "insert result", r.Data, want)
	checkData(t, "get", get(t, s, e, e.KeyOf(r)).Data, want)
	q := url.Values{"person_id": {plinth.KeyString(e.KeyOf(r))}}
	listed := listAll(t, s, e, q, 10)
	if len(listed) != 1 {
		t.Fatalf("list by key: %d records, want 1", len(listed))
	}
	checkData(t, "list", listed[0].Data, want)
	profile, _ := get(t, s, e, e.KeyOf(r)).Data["profile"].(map[string]any)
	if v, ok := profile["visits"].(int64); !ok || v != 9007199254740993 {
		t.Errorf("a nested integer came back as %#v, want int64(9007199254740993)", profile["visits"])
	}

	// UUID keys and datetimes on the second entity.
	card := validate(t, su.cards, map[string]any{"label": "Łódź 😀", "holderId": -42, "issuedAt": "2024-02-29T23:59:59.999999Z", "active": true}, true)
	cr, err := tryInsert(t, s, su.cards, card)
	if err != nil {
		t.Fatalf("insert card: %v", err)
	}
	checkData(t, "get card", get(t, s, su.cards, su.cards.KeyOf(cr)).Data, withKey(su.cards, card, su.cards.KeyOf(cr)))

	// A natural key in any script, and 10,000 characters of CJK text.
	cat := validate(t, su.categories, map[string]any{"code": "Łódź/😀 ключ", "title": strings.Repeat("漢字かな", 2500), "rank": 0}, true)
	if _, err := tryInsert(t, s, su.categories, cat); err != nil {
		t.Fatalf("insert category: %v", err)
	}
	checkData(t, "get category", get(t, s, su.categories, "Łódź/😀 ключ").Data, cat)
}

func (su *suite) testAbsentAndEmpty(t *testing.T) {
	s := su.open(t)
	e := su.people

	// Only the required fields: every other field is absent, not nil.
	minimal := validate(t, e, map[string]any{"firstName": "Min", "lastName": "Imal"}, true)
	r, err := tryInsert(t, s, e, minimal)
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	got := get(t, s, e, e.KeyOf(r))
	checkData(t, "minimal record", got.Data, withKey(e, minimal, e.KeyOf(r)))

	// Zero values are values: 0, 0.0, false, "", [] and {} all survive.
	zero := validate(t, e, map[string]any{
		"firstName": "", "lastName": "", "age": 0, "score": 0.0, "verified": false, "notes": "",
		"profile": map[string]any{}, "addresses": []any{}, "tags": []any{},
	}, true)
	z, err := tryInsert(t, s, e, zero)
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	checkData(t, "zero values", get(t, s, e, e.KeyOf(z)).Data, withKey(e, zero, e.KeyOf(z)))

	// An update that leaves fields out removes them.
	full := validate(t, e, map[string]any{
		"firstName": "Full", "lastName": "Record", "status": "inactive", "age": 7, "score": 1.25,
		"verified": true, "dateOfBirth": "2001-01-01", "lastSeen": "2001-01-01T00:00:00Z",
		"externalId": "6f1c2b9e-0d3a-4e8b-9c7d-1a2b3c4d5e6f", "notes": "n",
		"profile":   map[string]any{"nickname": "F", "preferences": map[string]any{"channels": []any{}}},
		"addresses": []any{map[string]any{"line1": "1 Road"}}, "tags": []any{"t"},
	}, false)
	u, err := tryUpdate(t, s, e, e.KeyOf(r), 1, full)
	if err != nil {
		t.Fatalf("update to full: %v", err)
	}
	checkData(t, "full record", get(t, s, e, e.KeyOf(r)).Data, withKey(e, full, e.KeyOf(r)))
	back := validate(t, e, map[string]any{"firstName": "Min", "lastName": "Imal", "profile": map[string]any{"nickname": "F"}}, false)
	if _, err := tryUpdate(t, s, e, e.KeyOf(r), u.Version, back); err != nil {
		t.Fatalf("update to minimal: %v", err)
	}
	got = get(t, s, e, e.KeyOf(r))
	checkData(t, "fields removed by update", got.Data, withKey(e, back, e.KeyOf(r)))
	for k, v := range got.Data {
		if v == nil {
			t.Errorf("field %s is present with a nil value; absent fields must be left out", k)
		}
	}
}

func (su *suite) testGetUnknown(t *testing.T) {
	s := su.open(t)
	for _, tc := range []struct {
		e  *plinth.Entity
		id any
	}{
		{su.people, int64(987654321)},
		{su.cards, uuid.NewString()},
		{su.categories, "no-such-code"},
	} {
		if _, err := s.Get(t.Context(), tc.e, tc.id); !errors.Is(err, plinth.ErrNotFound) {
			t.Errorf("get unknown %s %v: %v, want ErrNotFound", tc.e.Name, tc.id, err)
		}
	}
	// Inside a transaction too.
	err := s.Write(t.Context(), func(tx plinth.Tx) error {
		_, err := tx.Get(t.Context(), su.people, int64(987654321))
		return err
	})
	if !errors.Is(err, plinth.ErrNotFound) {
		t.Errorf("Tx.Get unknown: %v, want ErrNotFound", err)
	}
}

func (su *suite) testDuplicateKey(t *testing.T) {
	s := su.open(t)
	e := su.categories
	first := insert(t, s, e, map[string]any{"code": "dup", "title": "First"})
	_, err := tryInsert(t, s, e, validate(t, e, map[string]any{"code": "dup", "title": "Second"}, true))
	if !errors.Is(err, plinth.ErrConflict) {
		t.Fatalf("insert with an existing key: %v, want ErrConflict", err)
	}
	checkRecord(t, "the first record after the conflict", get(t, s, e, "dup"), first)
	if n := count(t, s, e); n != 1 {
		t.Errorf("count %d, want 1", n)
	}
	// A key supplied for a generated-key entity conflicts the same way.
	p := insert(t, s, su.people, map[string]any{"firstName": "A", "lastName": "B"})
	data := validate(t, su.people, map[string]any{"personId": su.people.KeyOf(p), "firstName": "C", "lastName": "D"}, false)
	if _, err := tryInsert(t, s, su.people, data); !errors.Is(err, plinth.ErrConflict) {
		t.Errorf("insert with an existing generated key: %v, want ErrConflict", err)
	}
}

func (su *suite) testVersions(t *testing.T) {
	s := su.open(t)
	for _, e := range []*plinth.Entity{su.people, su.cards, su.categories} {
		doc := map[string]any{"firstName": "V", "lastName": "W", "label": "L", "title": "T", "code": "c1"}
		for k := range doc {
			if e.Field(k) == nil {
				delete(doc, k)
			}
		}
		r := insert(t, s, e, doc)
		key := e.KeyOf(r)
		data := validate(t, e, doc, false)
		for _, stale := range []int64{0, 2, 7} {
			if _, err := tryUpdate(t, s, e, key, stale, data); !errors.Is(err, plinth.ErrVersionConflict) {
				t.Errorf("%s: update with version %d of a version-1 record: %v, want ErrVersionConflict", e.Name, stale, err)
			}
			if err := tryDelete(t, s, e, key, stale); !errors.Is(err, plinth.ErrVersionConflict) {
				t.Errorf("%s: delete with version %d of a version-1 record: %v, want ErrVersionConflict", e.Name, stale, err)
			}
		}
		checkRecord(t, e.Name+" after refused writes", get(t, s, e, key), r)

		var missing any
		switch e.Key.Type {
		case plinth.KeyInteger:
			missing = int64(987654321)
		case plinth.KeyUUID:
			missing = uuid.NewString()
		default:
			missing = "missing"
		}
		if _, err := tryUpdate(t, s, e, missing, 1, data); !errors.Is(err, plinth.ErrNotFound) {
			t.Errorf("%s: update of a missing record: %v, want ErrNotFound", e.Name, err)
		}
		if err := tryDelete(t, s, e, missing, 1); !errors.Is(err, plinth.ErrNotFound) {
			t.Errorf("%s: delete of a missing record: %v, want ErrNotFound", e.Name, err)
		}

		// A deleted record is missing, whatever version is given.
		if err := tryDelete(t, s, e, key, 1); err != nil {
			t.Fatalf("%s: delete: %v", e.Name, err)
		}
		if _, err := tryUpdate(t, s, e, key, 1, data); !errors.Is(err, plinth.ErrNotFound) {
			t.Errorf("%s: update of a deleted record: %v, want ErrNotFound", e.Name, err)
		}
		if err := tryDelete(t, s, e, key, 1); !errors.Is(err, plinth.ErrNotFound) {
			t.Errorf("%s: second delete: %v, want ErrNotFound", e.Name, err)
		}
	}
}

// testConcurrentSameVersion: eight writers update one record from the same
// version; exactly one may win.
func (su *suite) testConcurrentSameVersion(t *testing.T) {
	s := su.open(t)
	e := su.people
	r := insert(t, s, e, map[string]any{"firstName": "Race", "lastName": "Start"})
	key := e.KeyOf(r)
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	results := make([]plinth.Record, writers)
	start := make(chan struct{})
	for i := range writers {
		data := validate(t, e, map[string]any{"firstName": "Race", "lastName": fmt.Sprintf("Writer %d", i)}, false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = tryUpdate(t, s, e, key, 1, data)
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("writers %d and %d both updated version 1", winner, i)
			}
			winner = i
		case !errors.Is(err, plinth.ErrVersionConflict):
			t.Errorf("writer %d: %v, want success or ErrVersionConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	got := get(t, s, e, key)
	if got.Version != 2 || got.Data["lastName"] != fmt.Sprintf("Writer %d", winner) {
		t.Errorf("after the race: version %d, lastName %v; want version 2 and writer %d's data", got.Version, got.Data["lastName"], winner)
	}
}

// testConcurrentIncrements: writers read-modify-write one counter inside
// transactions, retrying on version conflicts; no increment may be lost.
func (su *suite) testConcurrentIncrements(t *testing.T) {
	s := su.open(t)
	e := su.people
	r := insert(t, s, e, map[string]any{"firstName": "Counter", "lastName": "Zero", "age": 0})
	key := e.KeyOf(r)
	const writers, each = 8, 5
	var wg sync.WaitGroup
	var conflicts atomic.Int64
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < each; {
				err := s.Write(t.Context(), func(tx plinth.Tx) error {
					cur, err := tx.Get(t.Context(), e, key)
					if err != nil {
						return err
					}
					data := maps.Clone(cur.Data)
					data["age"] = cur.Data["age"].(int64) + 1
					_, err = tx.Update(t.Context(), e, key, cur.Version, data)
					return err
				})
				switch {
				case err == nil:
					done++
				case errors.Is(err, plinth.ErrVersionConflict):
					conflicts.Add(1) // another writer got in between; try again
				default:
					t.Errorf("increment: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got := get(t, s, e, key)
	if got.Data["age"] != int64(writers*each) || got.Version != writers*each+1 {
		t.Errorf("after %d increments: age %v, version %d; want %d and %d", writers*each, got.Data["age"], got.Version, writers*each, writers*each+1)
	}
	t.Logf("%d version conflicts retried", conflicts.Load())
}

// testShortWrites: concurrent Writes marked plinth.ShortWrite (which a
// store may commit together, sqlite's group commit) are each still atomic
// and isolated: each inserts a person and increments a shared counter,
// every fourth then fails; the counter and the people hold exactly the
// writes that succeeded.
func (su *suite) testShortWrites(t *testing.T) {
	s := su.open(t)
	e := su.people
	key := e.KeyOf(insert(t, s, e, map[string]any{"firstName": "Counter", "lastName": "Short", "age": 0}))
	const writers = 16
	refused := errors.New("refused")
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := plinth.ShortWrite(t.Context())
			for {
				err := s.Write(ctx, func(tx plinth.Tx) error {
					data, err := e.Validate(map[string]any{"firstName": fmt.Sprint("W", i), "lastName": "Short"}, true)
					if err != nil {
						return err
					}
					if _, err := tx.Insert(ctx, e, data); err != nil {
						return err
					}
					cur, err := tx.Get(ctx, e, key)
					if err != nil {
						return err
					}
					next := maps.Clone(cur.Data)
					next["age"] = cur.Data["age"].(int64) + 1
					if _, err := tx.Update(ctx, e, key, cur.Version, next); err != nil {
						return err
					}
					if i%4 == 3 {
						return refused
					}
					return nil
				})
				switch {
				case errors.Is(err, plinth.ErrVersionConflict):
					continue // another writer got in between; try again
				case i%4 == 3 && err != refused:
					t.Errorf("writer %d: %v, want its own error", i, err)
				case i%4 != 3 && err != nil:
					t.Errorf("writer %d: %v", i, err)
				}
				return
			}
		}()
	}
	wg.Wait()
	want := writers - writers/4
	if got := get(t, s, e, key); got.Data["age"] != int64(want) || got.Version != int64(want+1) {
		t.Errorf("counter: age %v, version %d; want %d and %d", got.Data["age"], got.Version, want, want+1)
	}
	var names []string
	for _, r := range listAll(t, s, e, url.Values{"last_name": {"Short"}}, 50) {
		if n := r.Data["firstName"].(string); n != "Counter" {
			names = append(names, n)
		}
	}
	if len(names) != want {
		t.Errorf("people of the writes: %v, want the %d that succeeded", names, want)
	}
	for _, n := range names {
		var i int
		fmt.Sscanf(n, "W%d", &i)
		if i%4 == 3 {
			t.Errorf("%s was stored by a write that failed", n)
		}
	}
}

// filterPeople are the records the filter tests search, in insertion (and
// so key) order.
var filterPeople = []map[string]any{
	{"firstName": "Zoë", "lastName": "Smith", "status": "active", "age": 30, "score": 1.5, "verified": true,
		"dateOfBirth": "1990-01-01", "lastSeen": "2024-01-01T10:00:00.5Z", "externalId": "6f1c2b9e-0d3a-4e8b-9c7d-1a2b3c4d5e6f",
		"addresses": []any{
			map[string]any{"line1": "Flat 1 High Street", "postCode": "E8 1DY"},
			map[string]any{"line1": "2 Low Road", "postCode": "N1 9GU"},
		}},
	{"firstName": "Zoe", "lastName": "Jones", "status": "inactive", "age": 31, "score": 2.5, "verified": false,
		"dateOfBirth": "1990-01-02", "lastSeen": "2024-01-01T10:00:00Z",
		"addresses": []any{map[string]any{"line1": "flat 9 Hill Road", "postCode": "E8 2AA"}}},
	{"firstName": "Seán", "lastName": "O'Brien", "status": "active", "age": 40, "score": -1.0,
		"dateOfBirth": "1985-06-15", "lastSeen": "2024-01-01T09:59:59.999999Z",
		"addresses": []any{map[string]any{"line1": "Apartment 3", "postCode": "e8 1dy"}}},
	{"firstName": "Łukasz", "lastName": "Nowak", "status": "archived", "age": 29,
		"dateOfBirth": "1995-12-31", "lastSeen": "2024-01-01T11:00:00+01:00"},
	{"firstName": "Lukas", "lastName": "Berg"},
	{"firstName": "小龙", "lastName": "李"},
	{"firstName": "Ann", "lastName": "Smithson 😀"},
	{"firstName": "Mary  Ann", "lastName": "Mc Donald"},
	{"firstName": "Zo", "lastName": "Short"},
	{"firstName": "Zp", "lastName": "Next"},
	{"firstName": "_Under", "lastName": "Score_Case"},
	{"firstName": "%Percent", "lastName": "100% Sure"},
	{"firstName": "Ünal", "lastName": "Straße"},
	{"firstName": nfdZoe, "lastName": "Decomposed"},
}

func (su *suite) testFilters(t *testing.T) {
	s := su.open(t)
	e := su.people
	var recs []plinth.Record
	for _, doc := range filterPeople {
		recs = append(recs, insert(t, s, e, doc))
	}
	name := func(i int) string { return filterPeople[i]["firstName"].(string) }
	for _, tc := range []struct {
		query string
		want  []int // indexes into filterPeople
	}{
		// Prefix: case- and accent-insensitive, spaces collapsed.
		{"first_name=zoe", []int{0, 1, 13}},
		{"first_name=ZO%C3%8B", []int{0, 1, 13}}, // ZOË
		{"first_name=zo", []int{0, 1, 8, 13}},
		{"first_name=%C5%82uk", []int{3}}, // łuk
		{"first_name=%C5%81UK", []int{3}}, // ŁUK
		{"first_name=luk", []int{4}},      // Ł is a letter of its own, not an accented L
		{"first_name=sean", []int{2}},
		{"first_name=%E5%B0%8F", []int{5}}, // 小
		{"first_name=mary+ann", []int{7}},
		{"first_name=MARY+++ANN", []int{7}},
		{"first_name=un", []int{12}},
		{"first_name=xyz", nil},
		// Contains: the same folding, anywhere in the text.
		{"last_name=o'b", []int{2}},
		{"last_name=BRIEN", []int{2}},
		{"last_name='", []int{2}},
		{"last_name=smith", []int{0, 6}},
		{"last_name=SMITH", []int{0, 6}},
		{"last_name=%F0%9F%98%80", []int{6}}, // 😀
		{"last_name=mc+d", []int{7}},
		{"last_name=strasse", []int{12}},
		{"last_name=%E6%9D%8E", []int{5}}, // 李
		{"last_name=zzz", nil},
		// Exact.
		{"status=active", []int{0, 2}},
		{"verified=true", []int{0}},
		{"verified=false", []int{1}},
		{"external_id=6F1C2B9E-0D3A-4E8B-9C7D-1A2B3C4D5E6F", []int{0}},
		// Ranges, inclusive at both ends.
		{"age_from=30&age_to=31", []int{0, 1}},
		{"age=40", []int{2}},
		{"age_to=29", []int{3}},
		{"age_from=31", []int{1, 2}},
		{"score_from=1.5", []int{0, 1}},
		{"score_to=-1", []int{2}},
		{"score=2.5", []int{1}},
		{"date_of_birth_from=1990-01-01&date_of_birth_to=1990-01-02", []int{0, 1}},
		{"date_of_birth=1985-06-15", []int{2}},
		{"date_of_birth_from=1995-12-31", []int{3}},
		{"date_of_birth_to=1984-12-31", nil},
		// Datetimes compare as instants, fractions and offsets included.
		{"last_seen_from=2024-01-01T10:00:00Z", []int{0, 1, 3}},
		{"last_seen_to=2024-01-01T10:00:00Z", []int{1, 2, 3}},
		{"last_seen=2024-01-01T11:00:00%2B01:00", []int{1, 3}},
		{"last_seen_from=2024-01-01T10:00:00.4Z&last_seen_to=2024-01-01T10:00:00.6Z", []int{0}},
		// Reaching into an array of objects: any item matches.
		{"postcode=e8+1dy", []int{0, 2}},
		{"postcode=N1+9GU", []int{0}},
		{"postcode=E8+2AA", []int{1}},
		{"postcode=E9+9ZZ", nil},
		{"address=flat", []int{0, 1}},
		{"address=FLAT+1", []int{0}},
		{"address=apart", []int{2}},
		{"address=2+low", []int{0}},
		// Combinations are ANDed.
		{"first_name=zo&status=active", []int{0}},
		{"postcode=E8+1DY&status=active", []int{0, 2}},
		{"postcode=E8+1DY&address=apart", []int{2}},
		{"postcode=N1+9GU&address=flat", []int{0}}, // different items of one record
		{"age_from=30&last_name=o", []int{1, 2}},
	} {
		values, err := url.ParseQuery(tc.query)
		if err != nil {
			t.Fatalf("storetest: bad test query %q: %v", tc.query, err)
		}
		want := []string{}
		for _, i := range tc.want {
			want = append(want, name(i))
		}
		for _, limit := range []int{2, 100} {
			got := firstNames(listAll(t, s, e, values, limit))
			if !slices.Equal(got, want) {
				t.Errorf("?%s (limit %d): got %q, want %q", tc.query, limit, got, want)
			}
		}
	}
	// The key as an exact filter.
	key := e.KeyOf(recs[2])
	got := firstNames(listAll(t, s, e, url.Values{"person_id": {plinth.KeyString(key)}}, 10))
	if !slices.Equal(got, []string{name(2)}) {
		t.Errorf("?person_id=%v: got %q", key, got)
	}
	// Filters on the other key kinds' entities.
	c1 := insert(t, s, su.cards, map[string]any{"label": "Élan Door", "holderId": 7})
	insert(t, s, su.cards, map[string]any{"label": "Side door", "holderId": 8})
	if got := listAll(t, s, su.cards, url.Values{"label": {"elan"}, "holder_id": {"7"}}, 5); len(got) != 1 || su.cards.KeyOf(got[0]) != su.cards.KeyOf(c1) {
		t.Errorf("cards ?label=elan&holder_id=7: got %d records", len(got))
	}
	insert(t, s, su.categories, map[string]any{"code": "a", "title": "Garden tools", "rank": 1})
	insert(t, s, su.categories, map[string]any{"code": "b", "title": "Gardening", "rank": 5})
	insert(t, s, su.categories, map[string]any{"code": "c", "title": "Tools", "rank": 9})
	if got := keys(su.categories, listAll(t, s, su.categories, url.Values{"title": {"TOOL"}, "rank_to": {"8"}}, 5)); !slices.Equal(got, []any{"a"}) {
		t.Errorf("categories ?title=TOOL&rank_to=8: got %v, want [a]", got)
	}
}

func (su *suite) testMetacharacters(t *testing.T) {
	s := su.open(t)
	e := su.categories
	for i, title := range []string{"100% cotton", "50%", "snake_case", "snakeXcase", `back\slash`, "plain", "a*b?c", "[x]"} {
		insert(t, s, e, map[string]any{"code": fmt.Sprintf("c%d", i), "title": title})
	}
	titles := func(rs []plinth.Record) []string {
		out := []string{}
		for _, r := range rs {
			out = append(out, r.Data["title"].(string))
		}
		return out
	}
	for _, tc := range []struct {
		value string
		want  []string
	}{
		{"%", []string{"100% cotton", "50%"}},
		{"0% c", []string{"100% cotton"}},
		{"_", []string{"snake_case"}},
		{"e_c", []string{"snake_case"}},
		{`\`, []string{`back\slash`}},
		{`k\s`, []string{`back\slash`}},
		{"*", []string{"a*b?c"}},
		{"?", []string{"a*b?c"}},
		{"[x]", []string{"[x]"}},
		{"%%", nil},
	} {
		got := titles(listAll(t, s, e, url.Values{"title": {tc.value}}, 100))
		if !slices.Equal(got, tc.want) {
			t.Errorf("?title=%s: got %q, want %q", tc.value, got, tc.want)
		}
	}
	// Prefix filters take them literally too.
	p := su.people
	for _, n := range []string{"_ab", "xab", "%ab", "ab", `\ab`} {
		insert(t, s, p, map[string]any{"firstName": n, "lastName": "M"})
	}
	for _, tc := range []struct {
		value string
		want  []string
	}{
		{"_", []string{"_ab"}},
		{"_a", []string{"_ab"}},
		{"%", []string{"%ab"}},
		{`\`, []string{`\ab`}},
	} {
		got := firstNames(listAll(t, s, p, url.Values{"first_name": {tc.value}}, 100))
		if !slices.Equal(got, tc.want) {
			t.Errorf("?first_name=%s: got %q, want %q", tc.value, got, tc.want)
		}
	}
}

func (su *suite) testKeyOrder(t *testing.T) {
	s := su.open(t)
	e := su.categories
	codes := []string{"b", "B", "a", "aa", "é", "Z", "0", "a b", "a-b", "~", "ß", "😀", "日本"}
	for _, c := range codes {
		insert(t, s, e, map[string]any{"code": c, "title": "x"})
	}
	want := slices.Clone(codes)
	slices.Sort(want) // byte order, which for UTF-8 is code point order
	for _, limit := range []int{1, 3, 100} {
		var got []string
		for _, k := range keys(e, listAll(t, s, e, nil, limit)) {
			got = append(got, k.(string))
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: string keys in order %q, want %q", limit, got, want)
		}
	}
	// UUID keys: all of them, once each, ascending (listAll checks).
	for range 30 {
		insert(t, s, su.cards, map[string]any{"label": "card"})
	}
	if got := listAll(t, s, su.cards, nil, 4); len(got) != 30 {
		t.Errorf("cards: listed %d of 30", len(got))
	}
}

func (su *suite) testPageBoundaries(t *testing.T) {
	s := su.open(t)
	e := su.people
	var all []plinth.Record
	for i := range 14 {
		all = append(all, insert(t, s, e, map[string]any{"firstName": fmt.Sprintf("Page %02d", i), "lastName": "B"}))
	}
	list := func(limit int, after any) plinth.Page {
		t.Helper()
		p, err := s.List(t.Context(), e, plinth.Query{Limit: limit, After: after})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		return p
	}
	for _, tc := range []struct {
		limit, n int
		more     bool
	}{{7, 7, true}, {13, 13, true}, {14, 14, false}, {100, 14, false}} {
		p := list(tc.limit, nil)
		if len(p.Records) != tc.n || p.More != tc.more {
			t.Errorf("limit %d: %d records, more %v; want %d, %v", tc.limit, len(p.Records), p.More, tc.n, tc.more)
		}
	}
	p1 := list(7, nil)
	p2 := list(7, e.KeyOf(p1.Records[6]))
	if len(p2.Records) != 7 || p2.More || e.KeyOf(p2.Records[0]) != e.KeyOf(all[7]) {
		t.Errorf("second page: %d records from %v, more %v; want 7 from %v, no more", len(p2.Records), e.KeyOf(p2.Records[0]), p2.More, e.KeyOf(all[7]))
	}
	if p := list(7, e.KeyOf(all[13])); len(p.Records) != 0 || p.More {
		t.Errorf("after the last key: %d records, more %v; want none", len(p.Records), p.More)
	}
	// The record a cursor points at may be deleted before the next page.
	if err := tryDelete(t, s, e, e.KeyOf(all[6]), 1); err != nil {
		t.Fatal(err)
	}
	p2 = list(7, e.KeyOf(all[6]))
	if len(p2.Records) != 7 || e.KeyOf(p2.Records[0]) != e.KeyOf(all[7]) {
		t.Errorf("page after a deleted cursor record: %d records; want 7 from %v", len(p2.Records), e.KeyOf(all[7]))
	}
	// A filtered page that ends exactly at the last match has no more.
	fp, err := s.List(t.Context(), e, mustQuery(t, e, "first_name=page+1&limit=4"))
	if err != nil {
		t.Fatal(err)
	}
	if len(fp.Records) != 4 || fp.More {
		t.Errorf("?first_name=page 1&limit=4: %d records, more %v; want 4, no more", len(fp.Records), fp.More)
	}
}

func mustQuery(t testing.TB, e *plinth.Entity, raw string) plinth.Query {
	t.Helper()
	v, err := url.ParseQuery(raw)
	if err == nil {
		var q plinth.Query
		if q, err = e.ParseQuery(v); err == nil {
			return q
		}
	}
	t.Fatalf("storetest: bad test query %q: %v", raw, err)
	return plinth.Query{}
}

// testConcurrentPagination walks a list page by page while other writers
// insert records and delete records that are not part of the initial set:
// every initial record must appear exactly once, in key order.
func (su *suite) testConcurrentPagination(t *testing.T) {
	s := su.open(t)
	e := su.people
	initial := map[any]bool{}
	for i := range 60 {
		r := insert(t, s, e, map[string]any{"firstName": fmt.Sprintf("Initial %02d", i), "lastName": "Walk", "status": "active"})
		initial[e.KeyOf(r)] = true
	}
	stop := make(chan struct{})
	created := make(chan plinth.Record, 64)
	var wg sync.WaitGroup
	var inserted, deleted atomic.Int64
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				data := validate(t, e, map[string]any{"firstName": fmt.Sprintf("Initial extra %d-%d", w, i), "lastName": "Walk", "status": "active"}, true)
				r, err := tryInsert(t, s, e, data)
				if err != nil {
					t.Errorf("concurrent insert: %v", err)
					return
				}
				inserted.Add(1)
				select {
				case created <- r:
				default:
				}
				time.Sleep(200 * time.Microsecond) // pacing: a steady stream of writes
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case r := <-created:
				if err := tryDelete(t, s, e, e.KeyOf(r), r.Version); err != nil {
					t.Errorf("concurrent delete: %v", err)
					return
				}
				deleted.Add(1)
			}
		}
	}()
	stopped := false
	stopWriters := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopWriters() // also when a walk fails the test
	// Let the writers get going before walking.
	plinthtest.Eventually(t, 10*time.Second, func() bool { return inserted.Load() >= 5 || t.Failed() },
		"the writers did not get going")
	for _, params := range []url.Values{nil, {"first_name": {"initial"}}, {"status": {"active"}, "last_name": {"walk"}}} {
		seen := map[any]int{}
		// Between pages, wait for the writers to insert something.
		between := func() {
			n := inserted.Load()
			plinthtest.Eventually(t, 0, func() bool { return inserted.Load() != n || t.Failed() },
				"no insert landed between pages")
		}
		for _, r := range walk(t, s, e, params, 7, between) {
			seen[e.KeyOf(r)]++
		}
		for k := range initial {
			if seen[k] != 1 {
				t.Errorf("?%s: initial record %v listed %d times, want once", params.Encode(), k, seen[k])
			}
		}
	}
	stopWriters()
	t.Logf("%d records inserted and %d deleted during the walks", inserted.Load(), deleted.Load())
}

func (su *suite) testAtomicity(t *testing.T) {
	s := su.open(t)
	e := su.people
	boom := errors.New("boom")
	err := s.Write(t.Context(), func(tx plinth.Tx) error {
		if _, err := tx.Insert(t.Context(), e, validate(t, e, filterPeople[0], true)); err != nil {
			return err
		}
		if _, err := tx.Insert(t.Context(), su.categories, validate(t, su.categories, map[string]any{"code": "x", "title": "X"}, true)); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("Write returned %v; want fn's error, unchanged", err)
	}
	if n := count(t, s, e); n != 0 {
		t.Errorf("people after a failed Write: %d, want 0", n)
	}
	if n := count(t, s, su.categories); n != 0 {
		t.Errorf("categories after a failed Write: %d, want 0", n)
	}
	for _, q := range []string{"postcode=E8+1DY", "first_name=zoe", "last_name=smith", "address=flat"} {
		if got := listAll(t, s, e, mustValues(q), 10); len(got) != 0 {
			t.Errorf("?%s after a failed Write: %d records, want none", q, len(got))
		}
	}

	// Updates and deletes are undone as well; a wrapped error stays
	// recognisable.
	keep := insert(t, s, e, filterPeople[1])
	other := insert(t, s, e, filterPeople[2])
	err = s.Write(t.Context(), func(tx plinth.Tx) error {
		if _, err := tx.Update(t.Context(), e, e.KeyOf(keep), 1, validate(t, e, filterPeople[3], false)); err != nil {
			return err
		}
		if err := tx.Delete(t.Context(), e, e.KeyOf(other), 1); err != nil {
			return err
		}
		return fmt.Errorf("later step: %w", boom)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write returned %v; want an error wrapping boom", err)
	}
	checkRecord(t, "updated in a failed Write", get(t, s, e, e.KeyOf(keep)), keep)
	checkRecord(t, "deleted in a failed Write", get(t, s, e, e.KeyOf(other)), other)
	if got := firstNames(listAll(t, s, e, mustValues("postcode=E8+2AA"), 10)); !slices.Equal(got, []string{"Zoe"}) {
		t.Errorf("?postcode=E8 2AA after a failed update: %q, want [Zoe]", got)
	}

	// A Write whose fn succeeds keeps everything it did.
	err = s.Write(t.Context(), func(tx plinth.Tx) error {
		for i := range 3 {
			if _, err := tx.Insert(t.Context(), su.categories, validate(t, su.categories, map[string]any{"code": fmt.Sprintf("k%d", i), "title": "K"}, true)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, su.categories); n != 3 {
		t.Errorf("categories after a Write of three: %d", n)
	}
}

func mustValues(raw string) url.Values {
	v, err := url.ParseQuery(raw)
	if err != nil {
		panic(err)
	}
	return v
}

func (su *suite) testWriteSeesOwnChanges(t *testing.T) {
	s := su.open(t)
	e := su.people
	err := s.Write(t.Context(), func(tx plinth.Tx) error {
		r, err := tx.Insert(t.Context(), e, validate(t, e, filterPeople[0], true))
		if err != nil {
			return err
		}
		got, err := tx.Get(t.Context(), e, e.KeyOf(r))
		if err != nil {
			return fmt.Errorf("Tx.Get of a record inserted in the same transaction: %w", err)
		}
		checkRecord(t, "Tx.Get after Tx.Insert", got, r)
		u, err := tx.Update(t.Context(), e, e.KeyOf(r), 1, validate(t, e, filterPeople[1], false))
		if err != nil {
			return err
		}
		if u.Version != 2 {
			t.Errorf("update in the same transaction: version %d, want 2", u.Version)
		}
		if err := tx.Delete(t.Context(), e, e.KeyOf(r), 2); err != nil {
			return err
		}
		if _, err := tx.Get(t.Context(), e, e.KeyOf(r)); !errors.Is(err, plinth.ErrNotFound) {
			t.Errorf("Tx.Get after Tx.Delete: %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, e); n != 0 {
		t.Errorf("count %d, want 0", n)
	}
}

func (su *suite) testBulkInsert(t *testing.T) {
	s := su.open(t)
	e := su.people
	const n = 2500
	lastNames := []string{"Smith", "Jones", "Brown"}
	statuses := []string{"active", "inactive", "archived"}
	docs := make([]map[string]any, n)
	for i := range n {
		postCode := fmt.Sprintf("N%d 1AA", i%9+1)
		if i%5 == 0 {
			postCode = "E8 1DY"
		}
		docs[i] = validate(t, e, map[string]any{
			"firstName": fmt.Sprintf("Bulk %04d", i),
			"lastName":  lastNames[i%3],
			"status":    statuses[i%3],
			"age":       i % 90,
			"addresses": []any{map[string]any{"line1": fmt.Sprintf("%d Long Road", i), "postCode": postCode}},
		}, true)
	}
	if err := s.BulkInsert(t.Context(), e, docs); err != nil {
		t.Fatalf("bulk insert: %v", err)
	}
	if got := count(t, s, e); got != n {
		t.Fatalf("count after bulk insert: %d, want %d", got, n)
	}
	all := listAll(t, s, e, nil, 100)
	if len(all) != n {
		t.Fatalf("listed %d of %d", len(all), n)
	}
	byName := map[string]plinth.Record{}
	for _, r := range all {
		if r.Version != 1 || r.CreatedAt.IsZero() {
			t.Fatalf("bulk-inserted record %v: version %d, createdAt %v; want version 1 and a time", e.KeyOf(r), r.Version, r.CreatedAt)
		}
		byName[r.Data["firstName"].(string)] = r
	}
	for _, i := range []int{0, 1, 1234, n - 1} {
		r, ok := byName[fmt.Sprintf("Bulk %04d", i)]
		if !ok {
			t.Fatalf("record %d is missing", i)
		}
		checkData(t, fmt.Sprintf("bulk record %d", i), get(t, s, e, e.KeyOf(r)).Data, withKey(e, docs[i], e.KeyOf(r)))
	}
	for _, tc := range []struct {
		query string
		want  func(i int) bool
	}{
		{"status=archived", func(i int) bool { return i%3 == 2 }},
		{"postcode=E8+1DY", func(i int) bool { return i%5 == 0 }},
		{"first_name=bulk+00", func(i int) bool { return i < 100 }},
		{"last_name=ON&status=inactive", func(i int) bool { return i%3 == 1 }},
		{"age_from=10&age_to=11&address=1", func(i int) bool { return (i%90 == 10 || i%90 == 11) && strings.HasPrefix(strconv.Itoa(i), "1") }},
	} {
		var want []string
		for i := range n {
			if tc.want(i) {
				want = append(want, fmt.Sprintf("Bulk %04d", i))
			}
		}
		if got := firstNames(listAll(t, s, e, mustValues(tc.query), 100)); !slices.Equal(got, want) {
			t.Errorf("?%s after bulk insert: %d records, want %d", tc.query, len(got), len(want))
		}
	}

	// Generated UUID keys, and natural keys.
	cards := make([]map[string]any, 300)
	for i := range cards {
		cards[i] = validate(t, su.cards, map[string]any{"label": fmt.Sprintf("Card %d", i), "holderId": i % 7}, true)
	}
	if err := s.BulkInsert(t.Context(), su.cards, cards); err != nil {
		t.Fatalf("bulk insert cards: %v", err)
	}
	if got := listAll(t, s, su.cards, nil, 100); len(got) != len(cards) {
		t.Errorf("cards: %d listed, want %d", len(got), len(cards))
	}
	if got := listAll(t, s, su.cards, url.Values{"holder_id": {"3"}}, 100); len(got) != 43 {
		t.Errorf("cards ?holder_id=3: %d, want 43", len(got))
	}
	cats := make([]map[string]any, 50)
	for i := range cats {
		cats[i] = validate(t, su.categories, map[string]any{"code": fmt.Sprintf("cat-%02d", i), "title": "Bulk"}, true)
	}
	if err := s.BulkInsert(t.Context(), su.categories, cats); err != nil {
		t.Fatalf("bulk insert categories: %v", err)
	}
	if got := count(t, s, su.categories); got != 50 {
		t.Errorf("categories: %d, want 50", got)
	}
	if err := s.BulkInsert(t.Context(), su.categories, nil); err != nil {
		t.Errorf("bulk insert of nothing: %v", err)
	}
}

func (su *suite) testBulkInsertGivenKeys(t *testing.T) {
	s := su.open(t)
	e := su.people
	var docs []map[string]any
	for _, id := range []int64{100000, 100500} {
		docs = append(docs, validate(t, e, map[string]any{"personId": id, "firstName": "Legacy", "lastName": strconv.FormatInt(id, 10)}, false))
	}
	if err := s.BulkInsert(t.Context(), e, docs); err != nil {
		t.Fatalf("bulk insert with keys: %v", err)
	}
	for i, id := range []int64{100000, 100500} {
		checkData(t, "a record with a given key", get(t, s, e, id).Data, docs[i])
	}
	r := insert(t, s, e, map[string]any{"firstName": "New", "lastName": "One"})
	if k, _ := e.KeyOf(r).(int64); k <= 100500 {
		t.Errorf("insert after a bulk insert of keys up to 100500 got key %v; want a greater one", e.KeyOf(r))
	}
	id := uuid.NewString()
	card := validate(t, su.cards, map[string]any{"cardId": id, "label": "Given"}, false)
	if err := s.BulkInsert(t.Context(), su.cards, []map[string]any{card}); err != nil {
		t.Fatalf("bulk insert a card with its key: %v", err)
	}
	checkData(t, "a card with a given key", get(t, s, su.cards, id).Data, card)
}

// testShadowsFollowChanges: whatever a store keeps to serve filters
// (folded copies, side tables) follows updates and deletes.
func (su *suite) testShadowsFollowChanges(t *testing.T) {
	s := su.open(t)
	e := su.people
	bystander := insert(t, s, e, map[string]any{"firstName": "Zoë", "lastName": "Stays",
		"addresses": []any{map[string]any{"line1": "Flat 2", "postCode": "E8 1DY"}}})
	r := insert(t, s, e, map[string]any{"firstName": "Zoë", "lastName": "Smith",
		"addresses": []any{map[string]any{"line1": "Flat 1", "postCode": "E8 1DY"}, map[string]any{"line1": "Old House", "postCode": "N1 9GU"}}})
	key := e.KeyOf(r)
	found := func(q string) []any { return keys(e, listAll(t, s, e, mustValues(q), 10)) }
	check := func(when, q string, want ...any) {
		t.Helper()
		if got := found(q); !slices.Equal(got, want) {
			t.Errorf("%s: ?%s found %v, want %v", when, q, got, want)
		}
	}
	bk := e.KeyOf(bystander)
	check("before", "postcode=E8+1DY", bk, key)
	check("before", "postcode=N1+9GU", key)
	check("before", "first_name=zoe", bk, key)

	u, err := tryUpdate(t, s, e, key, 1, validate(t, e, map[string]any{"firstName": "Mia", "lastName": "Jones",
		"addresses": []any{map[string]any{"line1": "New Build", "postCode": "SW1A 2AA"}}}, false))
	if err != nil {
		t.Fatal(err)
	}
	check("after update", "postcode=E8+1DY", bk)
	check("after update", "postcode=N1+9GU")
	check("after update", "postcode=SW1A+2AA", key)
	check("after update", "address=flat", bk)
	check("after update", "address=new", key)
	check("after update", "first_name=zoe", bk)
	check("after update", "first_name=mia", key)
	check("after update", "last_name=smith")
	check("after update", "last_name=jones", key)

	u, err = tryUpdate(t, s, e, key, u.Version, validate(t, e, map[string]any{"firstName": "Mia", "lastName": "Jones"}, false))
	if err != nil {
		t.Fatal(err)
	}
	check("after removing the addresses", "postcode=SW1A+2AA")
	check("after removing the addresses", "address=new")

	if _, err := tryUpdate(t, s, e, key, u.Version, validate(t, e, map[string]any{"firstName": "Mia", "lastName": "Jones",
		"addresses": []any{map[string]any{"line1": "Back Again", "postCode": "E8 1DY"}}}, false)); err != nil {
		t.Fatal(err)
	}
	check("after adding an address", "postcode=E8+1DY", bk, key)
	if err := tryDelete(t, s, e, key, u.Version+1); err != nil {
		t.Fatal(err)
	}
	check("after delete", "postcode=E8+1DY", bk)
	check("after delete", "first_name=mia")
	check("after delete", "address=back")
	check("after delete", "last_name=jones")
}
