package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
)

// RunAccess runs the contract suite of plinth.AccessStore. open must return
// a fresh, empty store that is ready for use (for the sqlite and postgres
// stores: Prepare has run), and arrange for it to be closed when the test
// ends.
//
// What the suite holds a store to, beyond the AccessStore documentation:
//
//   - Every field of a Grant round-trips; text byte for byte. Times come
//     back in UTC, truncated to microseconds. A zero ExpiresAt (no expiry)
//     comes back zero. A zero CreatedAt becomes the time of creation and a
//     zero UpdatedAt the CreatedAt.
//   - Nil lists (Grant.Methods, and the ReadGroups, WriteGroups and
//     ReportingGroups of an AccessPolicy) come back as empty, non-nil
//     slices, so that they are [] in JSON, never null.
//   - An EntityPolicy's nil list ("keep the domain's groups") comes back nil
//     and an empty one ("no group may") empty: they mean different things.
//     A policy without overrides comes back with no entries in Entities.
//   - Grants come in the byte order of their IDs, as Go compares strings;
//     limit <= 0 means plinth.DefaultLimit. Policies come in the byte order
//     of their domains.
//   - SetGrantEnabled and PutPolicy set UpdatedAt to plinth.Now().
//   - Of concurrent CreateGrant calls with one ID, one succeeds and the
//     others return plinth.ErrConflict.
//   - A store that is also a plinth.Store passes a Tx that implements
//     plinth.AccessTx to Write's fn, with the semantics and errors of the
//     Store's methods; what fn changed through it is kept when fn returns
//     nil and is not when fn returns an error.
func RunAccess(t *testing.T, open func(t *testing.T) plinth.AccessStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s plinth.AccessStore)
	}{
		{"GrantRoundTrip", testGrantRoundTrip},
		{"GrantDefaults", testGrantDefaults},
		{"GrantDuplicateID", testGrantDuplicate},
		{"GrantConcurrentDuplicates", testGrantConcurrentDuplicates},
		{"GrantNotFound", testGrantNotFound},
		{"GrantEnableDisable", testGrantEnable},
		{"GrantPagination", testGrantPagination},
		{"PolicyRoundTrip", testPolicyRoundTrip},
		{"PolicyUpsertReplaces", testPolicyUpsert},
		{"PoliciesByEnvironment", testPoliciesByEnvironment},
		{"PolicyOverridesNilAndEmpty", testPolicyOverrides},
		{"PolicyDelete", testPolicyDelete},
		{"AccessTx", testAccessTx},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// ---- grants ----

// fullGrant returns a grant with every field set.
func fullGrant(id string) plinth.Grant {
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		london = time.FixedZone("BST", 3600)
	}
	return plinth.Grant{
		ID:           id,
		Consumer:     "Zoë’s housing-benefits listener ☂ 日本",
		ConsumerType: "listener",
		API:          "residents",
		Endpoint:     "/api/v1/residents/{id}",
		Methods:      []string{"GET", "PATCH", "DELETE"},
		Environment:  plinth.EnvStaging,
		ExpiresAt:    time.Date(2031, 7, 14, 23, 59, 58, 123456000, london),
		RequestedBy:  "ana.lópez@example.org",
		AuthorisedBy: "security-team@example.org",
		Enabled:      true,
		CreatedAt:    time.Date(2024, 2, 29, 9, 30, 1, 654321000, time.UTC),
		UpdatedAt:    time.Date(2024, 3, 1, 10, 0, 0, 1000, time.UTC),
		Contract:     "contract-0b6e1c1a-8f0e-4f55-9a43-2c8a51d5e7f1",
	}
}

// normalGrant is g as a store returns it.
func normalGrant(g plinth.Grant) plinth.Grant {
	if g.Methods == nil {
		g.Methods = []string{}
	}
	norm := func(t time.Time) time.Time {
		if t.IsZero() {
			return time.Time{}
		}
		return t.UTC().Truncate(time.Microsecond)
	}
	g.ExpiresAt, g.CreatedAt, g.UpdatedAt = norm(g.ExpiresAt), norm(g.CreatedAt), norm(g.UpdatedAt)
	return g
}

// checkGrant compares a grant a store returned with the one expected,
// field by field; times must be equal and in UTC.
func checkGrant(t testing.TB, what string, got, want plinth.Grant) {
	t.Helper()
	checkTime := func(name string, got, want time.Time) {
		t.Helper()
		if !got.Equal(want) {
			t.Errorf("%s: %s = %s, want %s", what, name, got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
		}
		if !got.IsZero() && got.Location() != time.UTC {
			t.Errorf("%s: %s is in %s, want UTC", what, name, got.Location())
		}
	}
	checkTime("ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	checkTime("CreatedAt", got.CreatedAt, want.CreatedAt)
	checkTime("UpdatedAt", got.UpdatedAt, want.UpdatedAt)
	if got.Methods == nil {
		t.Errorf("%s: Methods is nil, want a non-nil slice", what)
	}
	got.ExpiresAt, got.CreatedAt, got.UpdatedAt = time.Time{}, time.Time{}, time.Time{}
	want.ExpiresAt, want.CreatedAt, want.UpdatedAt = time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

func createGrant(t testing.TB, s plinth.AccessStore, g plinth.Grant) {
	t.Helper()
	if err := s.CreateGrant(context.Background(), g); err != nil {
		t.Fatalf("create grant %q: %v", g.ID, err)
	}
}

func getGrant(t testing.TB, s plinth.AccessStore, id string) plinth.Grant {
	t.Helper()
	g, err := s.Grant(context.Background(), id)
	if err != nil {
		t.Fatalf("grant %q: %v", id, err)
	}
	return g
}

func testGrantRoundTrip(t *testing.T, s plinth.AccessStore) {
	g := fullGrant("gr_01HZX3J8Q5K8M9N0P1R2S3T4V5")
	createGrant(t, s, g)
	checkGrant(t, "grant after create", getGrant(t, s, g.ID), normalGrant(g))

	// Nanoseconds are cut to microseconds; a single method, a disabled
	// grant and empty texts are kept as they are.
	h := plinth.Grant{
		ID:          "gr-2 ünïcödé/ID",
		Consumer:    "",
		Methods:     []string{"POST"},
		Environment: plinth.EnvProduction,
		ExpiresAt:   time.Date(2025, 1, 2, 3, 4, 5, 999999999, time.UTC),
		CreatedAt:   time.Date(2025, 1, 1, 0, 0, 0, 1999, time.FixedZone("", -5*3600)),
		UpdatedAt:   time.Date(2025, 1, 1, 0, 0, 0, 2999, time.FixedZone("", 5*3600)),
	}
	createGrant(t, s, h)
	got := getGrant(t, s, h.ID)
	want := normalGrant(h)
	checkGrant(t, "grant with nanoseconds", got, want)
	if want.ExpiresAt.Nanosecond() != 999999000 {
		t.Fatalf("the test's own truncation is wrong: %v", want.ExpiresAt)
	}

	// Reading again gives the same.
	checkGrant(t, "grant read again", getGrant(t, s, g.ID), normalGrant(g))
}

func testGrantDefaults(t *testing.T, s plinth.AccessStore) {
	before := plinth.Now()
	g := plinth.Grant{ID: "defaults", Consumer: "c", API: "residents", Environment: plinth.EnvDevelopment}
	createGrant(t, s, g)
	after := plinth.Now()
	got := getGrant(t, s, g.ID)
	if got.CreatedAt.Before(before) || got.CreatedAt.After(after) {
		t.Errorf("a zero CreatedAt became %s, want between %s and %s", got.CreatedAt, before, after)
	}
	if !got.UpdatedAt.Equal(got.CreatedAt) {
		t.Errorf("a zero UpdatedAt became %s, want the CreatedAt %s", got.UpdatedAt, got.CreatedAt)
	}
	if !got.ExpiresAt.IsZero() {
		t.Errorf("a zero ExpiresAt became %s", got.ExpiresAt)
	}
	if got.Methods == nil || len(got.Methods) != 0 {
		t.Errorf("nil Methods came back as %#v, want an empty slice", got.Methods)
	}
	want := g
	want.Methods = []string{}
	want.CreatedAt, want.UpdatedAt = got.CreatedAt, got.UpdatedAt
	checkGrant(t, "grant with defaults", got, want)

	// An empty (non-nil) list is kept as well.
	e := plinth.Grant{ID: "empty-methods", Methods: []string{}}
	createGrant(t, s, e)
	if got := getGrant(t, s, e.ID); got.Methods == nil || len(got.Methods) != 0 {
		t.Errorf("empty Methods came back as %#v", got.Methods)
	}
}

func testGrantDuplicate(t *testing.T, s plinth.AccessStore) {
	g := fullGrant("dup")
	createGrant(t, s, g)
	other := fullGrant("dup")
	other.Consumer = "someone else"
	other.Enabled = false
	err := s.CreateGrant(context.Background(), other)
	if !errors.Is(err, plinth.ErrConflict) {
		t.Fatalf("creating a grant with an existing ID: %v, want ErrConflict", err)
	}
	checkGrant(t, "the grant after a duplicate create", getGrant(t, s, "dup"), normalGrant(g))

	// IDs are compared exactly: other cases and trailing spaces are other
	// IDs.
	for _, id := range []string{"DUP", "dup ", "Dup"} {
		createGrant(t, s, fullGrant(id))
	}
	grants, _, err := s.Grants(context.Background(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(grants) != 4 {
		t.Errorf("%d grants, want 4", len(grants))
	}
}

func testGrantConcurrentDuplicates(t *testing.T, s plinth.AccessStore) {
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := fullGrant("race")
			g.Consumer = fmt.Sprintf("consumer %d", i)
			errs[i] = s.CreateGrant(context.Background(), g)
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, plinth.ErrConflict):
			t.Errorf("create %d: %v, want nil or ErrConflict", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent creates with one ID succeeded, want 1", ok, n)
	}
}

func testGrantNotFound(t *testing.T, s plinth.AccessStore) {
	ctx := context.Background()
	if _, err := s.Grant(ctx, "missing"); !errors.Is(err, plinth.ErrNotFound) {
		t.Errorf("Grant of a missing ID: %v, want ErrNotFound", err)
	}
	if _, err := s.SetGrantEnabled(ctx, "missing", true); !errors.Is(err, plinth.ErrNotFound) {
		t.Errorf("SetGrantEnabled of a missing ID: %v, want ErrNotFound", err)
	}
	createGrant(t, s, fullGrant("present"))
	for _, id := range []string{"", "Present", "present ", "pres"} {
		if _, err := s.Grant(ctx, id); !errors.Is(err, plinth.ErrNotFound) {
			t.Errorf("Grant(%q) with only %q stored: %v, want ErrNotFound", id, "present", err)
		}
	}
	grants, more, err := s.Grants(ctx, "present", 10)
	if err != nil || len(grants) != 0 || more {
		t.Errorf("Grants after the last ID: %d grants, more %v, error %v; want none", len(grants), more, err)
	}
}

func testGrantEnable(t *testing.T, s plinth.AccessStore) {
	ctx := context.Background()
	g := fullGrant("toggle")
	createGrant(t, s, g)
	createGrant(t, s, fullGrant("bystander"))

	for _, enabled := range []bool{false, false, true, true, false} {
		before := plinth.Now()
		got, err := s.SetGrantEnabled(ctx, g.ID, enabled)
		after := plinth.Now()
		if err != nil {
			t.Fatalf("SetGrantEnabled(%v): %v", enabled, err)
		}
		if got.UpdatedAt.Before(before) || got.UpdatedAt.After(after) {
			t.Errorf("SetGrantEnabled(%v): UpdatedAt %s, want between %s and %s", enabled, got.UpdatedAt, before, after)
		}
		want := normalGrant(g)
		want.Enabled = enabled
		want.UpdatedAt = got.UpdatedAt
		checkGrant(t, fmt.Sprintf("SetGrantEnabled(%v) returned", enabled), got, want)
		checkGrant(t, fmt.Sprintf("after SetGrantEnabled(%v), Grant", enabled), getGrant(t, s, g.ID), got)
	}
	checkGrant(t, "the other grant", getGrant(t, s, "bystander"), normalGrant(fullGrant("bystander")))
}

func testGrantPagination(t *testing.T, s plinth.AccessStore) {
	ctx := context.Background()
	if grants, more, err := s.Grants(ctx, "", 0); err != nil || len(grants) != 0 || more {
		t.Errorf("Grants of an empty store: %v, more %v, error %v", grants, more, err)
	}
	// IDs whose byte order differs from a natural-language collation:
	// upper case before lower case, '-' and '_' by their code, and
	// non-ASCII after ASCII.
	ids := []string{
		"grant-b", "grant_a", "Grant-C", "grant-a", "grant10", "grant9", "gränt", "grant",
		"Z", "a", "é", "e", "E", "zz", "z-z", "zZ", "0", "00", "1", "10", "9", "~",
		"日本", "a b", "a-b",
	}
	if len(ids) != 25 {
		t.Fatalf("%d IDs, want 25", len(ids))
	}
	for i, id := range ids {
		g := fullGrant(id)
		g.Consumer = "consumer of " + id
		g.Enabled = i%2 == 0
		createGrant(t, s, g)
	}
	want := slices.Clone(ids)
	slices.Sort(want)

	var got []string
	after, pages := "", 0
	for {
		grants, more, err := s.Grants(ctx, after, 7)
		if err != nil {
			t.Fatalf("Grants(%q, 7): %v", after, err)
		}
		pages++
		if len(grants) > 7 {
			t.Fatalf("Grants(%q, 7) returned %d grants", after, len(grants))
		}
		for _, g := range grants {
			got = append(got, g.ID)
			if g.Consumer != "consumer of "+g.ID {
				t.Errorf("grant %q came with the consumer %q", g.ID, g.Consumer)
			}
		}
		wantMore := len(got) < len(ids)
		if more != wantMore {
			t.Errorf("page %d (after %q): more = %v, want %v", pages, after, more, wantMore)
		}
		if !more || len(grants) == 0 || pages > 10 {
			break
		}
		after = grants[len(grants)-1].ID
	}
	if pages != 4 {
		t.Errorf("%d pages of 7 for 25 grants, want 4", pages)
	}
	if !slices.Equal(got, want) {
		t.Errorf("walking the pages gave\n %q\nwant (byte order)\n %q", got, want)
	}

	// A full page of the default size says that more follow.
	grants, more, err := s.Grants(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(grants) != plinth.DefaultLimit || !more {
		t.Errorf("Grants(\"\", 0): %d grants, more %v; want %d and true", len(grants), more, plinth.DefaultLimit)
	}
	grants, more, err = s.Grants(ctx, "", -1)
	if err != nil || len(grants) != plinth.DefaultLimit || !more {
		t.Errorf("Grants(\"\", -1): %d grants, more %v, error %v; want %d and true", len(grants), more, err, plinth.DefaultLimit)
	}
	// A page that ends exactly at the last grant says none follow.
	grants, more, err = s.Grants(ctx, want[len(want)-6], 5)
	if err != nil || len(grants) != 5 || more {
		t.Errorf("the last 5 grants: %d grants, more %v, error %v; want 5 and false", len(grants), more, err)
	}
	// after need not be a stored ID.
	grants, _, err = s.Grants(ctx, "f", 100)
	if err != nil {
		t.Fatal(err)
	}
	var rest []string
	for _, id := range want {
		if id > "f" {
			rest = append(rest, id)
		}
	}
	if ids := grantIDs(grants); !slices.Equal(ids, rest) {
		t.Errorf("grants after %q: %q, want %q", "f", ids, rest)
	}
	// Every field comes back on a page, as from Grant.
	for _, g := range grants {
		checkGrant(t, "a grant from a page", g, getGrant(t, s, g.ID))
	}
}

func grantIDs(grants []plinth.Grant) []string {
	ids := make([]string, len(grants))
	for i, g := range grants {
		ids[i] = g.ID
	}
	return ids
}

// ---- policies ----

func putPolicy(t testing.TB, s plinth.AccessStore, p plinth.AccessPolicy) (before, after time.Time) {
	t.Helper()
	before = plinth.Now()
	if err := s.PutPolicy(context.Background(), p); err != nil {
		t.Fatalf("put policy %s/%s: %v", p.Domain, p.Environment, err)
	}
	return before, plinth.Now()
}

func policies(t testing.TB, s plinth.AccessStore, env string) []plinth.AccessPolicy {
	t.Helper()
	ps, err := s.Policies(context.Background(), env)
	if err != nil {
		t.Fatalf("policies of %s: %v", env, err)
	}
	return ps
}

// policy returns the policy of a domain in an environment, failing the
// test when there is none.
func policy(t testing.TB, s plinth.AccessStore, domain, env string) plinth.AccessPolicy {
	t.Helper()
	for _, p := range policies(t, s, env) {
		if p.Domain == domain {
			return p
		}
	}
	t.Fatalf("no policy %s/%s", domain, env)
	return plinth.AccessPolicy{}
}

// normalPolicy is p as a store returns it, but for UpdatedAt.
func normalPolicy(p plinth.AccessPolicy) plinth.AccessPolicy {
	for _, l := range []*[]string{&p.ReadGroups, &p.WriteGroups, &p.ReportingGroups} {
		if *l == nil {
			*l = []string{}
		}
	}
	if len(p.Entities) == 0 {
		p.Entities = nil
	}
	return p
}

// checkPolicy compares a policy a store returned with the one put, whose
// UpdatedAt must lie between before and after.
func checkPolicy(t testing.TB, what string, got, put plinth.AccessPolicy, before, after time.Time) {
	t.Helper()
	if got.UpdatedAt.Before(before) || got.UpdatedAt.After(after) {
		t.Errorf("%s: UpdatedAt %s, want between %s and %s", what, got.UpdatedAt.Format(time.RFC3339Nano),
			before.Format(time.RFC3339Nano), after.Format(time.RFC3339Nano))
	}
	if got.UpdatedAt.Location() != time.UTC {
		t.Errorf("%s: UpdatedAt is in %s, want UTC", what, got.UpdatedAt.Location())
	}
	if !got.UpdatedAt.Equal(got.UpdatedAt.Truncate(time.Microsecond)) {
		t.Errorf("%s: UpdatedAt %s is finer than microseconds", what, got.UpdatedAt.Format(time.RFC3339Nano))
	}
	for name, l := range map[string][]string{"ReadGroups": got.ReadGroups, "WriteGroups": got.WriteGroups, "ReportingGroups": got.ReportingGroups} {
		if l == nil {
			t.Errorf("%s: %s is nil, want a non-nil slice", what, name)
		}
	}
	want := normalPolicy(put)
	want.UpdatedAt = got.UpdatedAt
	if len(got.Entities) == 0 && want.Entities == nil {
		got.Entities = nil // nil or empty: both mean no overrides
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %s\nwant %s", what, showPolicy(got), showPolicy(want))
	}
}

// showPolicy prints a policy with nil lists told apart from empty ones.
func showPolicy(p plinth.AccessPolicy) string {
	list := func(l []string) string {
		if l == nil {
			return "nil"
		}
		return fmt.Sprintf("%q", l)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "{%s/%s read %s write %s writeImpliesRead %v reporting %s entities {", p.Domain, p.Environment,
		list(p.ReadGroups), list(p.WriteGroups), p.WriteImpliesRead, list(p.ReportingGroups))
	names := make([]string, 0, len(p.Entities))
	for name := range p.Entities {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		ep := p.Entities[name]
		fmt.Fprintf(&b, " %s: {read %s write %s}", name, list(ep.ReadGroups), list(ep.WriteGroups))
	}
	b.WriteString(" }}")
	return b.String()
}

func fullPolicy(domain, env string) plinth.AccessPolicy {
	return plinth.AccessPolicy{
		Domain:           domain,
		Environment:      env,
		ReadGroups:       []string{"housing-officers", "Résidents Readers ✓"},
		WriteGroups:      []string{"housing-admins"},
		WriteImpliesRead: true,
		ReportingGroups:  []string{"data-insight", "qlik-service", "power-bi"},
		Entities: map[string]plinth.EntityPolicy{
			"residents":      {ReadGroups: []string{"caseworkers"}, WriteGroups: []string{"caseworker-leads", "admins"}},
			"contact-notes":  {ReadGroups: []string{"safeguarding"}},
			"benefit-claims": {WriteGroups: []string{}},
		},
	}
}

func testPolicyRoundTrip(t *testing.T, s plinth.AccessStore) {
	p := fullPolicy("residents", plinth.EnvProduction)
	p.UpdatedAt = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) // ignored: the store sets it
	before, after := putPolicy(t, s, p)
	checkPolicy(t, "policy after put", policy(t, s, "residents", plinth.EnvProduction), p, before, after)

	// Nil lists come back empty; no overrides, no entries.
	bare := plinth.AccessPolicy{Domain: "bare", Environment: plinth.EnvProduction}
	before, after = putPolicy(t, s, bare)
	got := policy(t, s, "bare", plinth.EnvProduction)
	checkPolicy(t, "policy with nil lists", got, bare, before, after)
	if len(got.Entities) != 0 {
		t.Errorf("a policy without overrides came back with %v", got.Entities)
	}

	// Empty lists and an empty override map are kept as empty.
	empty := plinth.AccessPolicy{Domain: "empty", Environment: plinth.EnvProduction,
		ReadGroups: []string{}, WriteGroups: []string{}, ReportingGroups: []string{}, Entities: map[string]plinth.EntityPolicy{}}
	before, after = putPolicy(t, s, empty)
	checkPolicy(t, "policy with empty lists", policy(t, s, "empty", plinth.EnvProduction), empty, before, after)
}

func testPolicyUpsert(t *testing.T, s plinth.AccessStore) {
	first := fullPolicy("tenancies", plinth.EnvStaging)
	putPolicy(t, s, first)
	old := policy(t, s, "tenancies", plinth.EnvStaging)
	time.Sleep(2 * time.Millisecond) // not a wait: so updatedAt moves on

	// The second put replaces everything: fewer groups, no
	// write-implies-read, one override left (itself changed).
	second := plinth.AccessPolicy{
		Domain:          "tenancies",
		Environment:     plinth.EnvStaging,
		ReadGroups:      []string{"only-readers"},
		ReportingGroups: nil,
		Entities: map[string]plinth.EntityPolicy{
			"residents": {ReadGroups: []string{}},
		},
	}
	before, after := putPolicy(t, s, second)
	ps := policies(t, s, plinth.EnvStaging)
	if len(ps) != 1 {
		t.Fatalf("%d policies after putting one twice, want 1", len(ps))
	}
	checkPolicy(t, "policy after the second put", ps[0], second, before, after)
	if !ps[0].UpdatedAt.After(old.UpdatedAt) {
		t.Errorf("UpdatedAt went from %s to %s, want later", old.UpdatedAt, ps[0].UpdatedAt)
	}

	// And back: removing every override.
	third := fullPolicy("tenancies", plinth.EnvStaging)
	third.Entities = nil
	before, after = putPolicy(t, s, third)
	checkPolicy(t, "policy after the third put", policy(t, s, "tenancies", plinth.EnvStaging), third, before, after)
}

func testPoliciesByEnvironment(t *testing.T, s plinth.AccessStore) {
	if ps := policies(t, s, plinth.EnvProduction); len(ps) != 0 {
		t.Errorf("policies of an empty store: %v", ps)
	}
	// Domains whose byte order differs from a natural-language collation
	// ("a-z" before "ab" by bytes; a collation ignoring '-' puts it after).
	domains := []string{"residents", "a-z", "ab", "contacts", "benefit-claims", "Zeta"}
	put := map[string]plinth.AccessPolicy{}
	for i, d := range domains {
		for _, env := range []string{plinth.EnvDevelopment, plinth.EnvProduction} {
			if env == plinth.EnvDevelopment && i%2 == 1 {
				continue // development has only some of them
			}
			p := fullPolicy(d, env)
			p.ReadGroups = []string{env + "-readers-of-" + d}
			p.WriteImpliesRead = i%3 == 0
			putPolicy(t, s, p)
			put[d+"/"+env] = p
		}
	}
	for _, env := range []string{plinth.EnvDevelopment, plinth.EnvProduction, plinth.EnvStaging} {
		var want []string
		for _, d := range domains {
			if _, ok := put[d+"/"+env]; ok {
				want = append(want, d)
			}
		}
		slices.Sort(want)
		ps := policies(t, s, env)
		var got []string
		for _, p := range ps {
			got = append(got, p.Domain)
			if p.Environment != env {
				t.Errorf("Policies(%s) returned a policy of %s", env, p.Environment)
			}
			if w, ok := put[p.Domain+"/"+env]; ok {
				checkPolicy(t, "listed policy "+p.Domain+"/"+env, p, w, time.Time{}, plinth.Now())
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("Policies(%s) domains %q, want (byte order) %q", env, got, want)
		}
	}
	// Environment names are compared exactly.
	if ps := policies(t, s, "Production"); len(ps) != 0 {
		t.Errorf("Policies(%q) returned %d policies, want none", "Production", len(ps))
	}
}

func testPolicyOverrides(t *testing.T, s plinth.AccessStore) {
	p := plinth.AccessPolicy{
		Domain:      "residents",
		Environment: plinth.EnvDevelopment,
		ReadGroups:  []string{"readers"},
		WriteGroups: []string{"writers"},
		Entities: map[string]plinth.EntityPolicy{
			"inherit-both":  {},
			"nobody-reads":  {ReadGroups: []string{}},
			"nobody-writes": {WriteGroups: []string{}},
			"nobody-at-all": {ReadGroups: []string{}, WriteGroups: []string{}},
			"mixed":         {ReadGroups: []string{"a", "b"}, WriteGroups: nil},
		},
	}
	before, after := putPolicy(t, s, p)
	got := policy(t, s, "residents", plinth.EnvDevelopment)
	checkPolicy(t, "policy with overrides", got, p, before, after)
	if len(got.Entities) != len(p.Entities) {
		t.Fatalf("%d overrides came back, want %d", len(got.Entities), len(p.Entities))
	}
	for name, want := range p.Entities {
		ep, ok := got.Entities[name]
		if !ok {
			t.Errorf("override %q is missing", name)
			continue
		}
		for _, l := range []struct {
			what      string
			got, want []string
		}{{"ReadGroups", ep.ReadGroups, want.ReadGroups}, {"WriteGroups", ep.WriteGroups, want.WriteGroups}} {
			if (l.got == nil) != (l.want == nil) {
				t.Errorf("override %q: %s came back as %#v, want %#v (nil inherits, empty allows nobody)", name, l.what, l.got, l.want)
			}
		}
	}
}

func testPolicyDelete(t *testing.T, s plinth.AccessStore) {
	ctx := context.Background()
	if err := s.DeletePolicy(ctx, "residents", plinth.EnvProduction); !errors.Is(err, plinth.ErrNotFound) {
		t.Errorf("deleting a missing policy: %v, want ErrNotFound", err)
	}
	putPolicy(t, s, fullPolicy("residents", plinth.EnvProduction))
	putPolicy(t, s, fullPolicy("residents", plinth.EnvStaging))
	putPolicy(t, s, fullPolicy("contacts", plinth.EnvProduction))

	if err := s.DeletePolicy(ctx, "residents", plinth.EnvDevelopment); !errors.Is(err, plinth.ErrNotFound) {
		t.Errorf("deleting a policy of another environment: %v, want ErrNotFound", err)
	}
	if err := s.DeletePolicy(ctx, "residents", plinth.EnvProduction); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if ps := policies(t, s, plinth.EnvProduction); len(ps) != 1 || ps[0].Domain != "contacts" {
		t.Errorf("production policies after deleting residents: %v", ps)
	}
	if ps := policies(t, s, plinth.EnvStaging); len(ps) != 1 || ps[0].Domain != "residents" {
		t.Errorf("staging policies after deleting residents in production: %v", ps)
	}
	if err := s.DeletePolicy(ctx, "residents", plinth.EnvProduction); !errors.Is(err, plinth.ErrNotFound) {
		t.Errorf("deleting a policy twice: %v, want ErrNotFound", err)
	}
	// A deleted policy may be put again.
	before, after := putPolicy(t, s, fullPolicy("residents", plinth.EnvProduction))
	checkPolicy(t, "policy put again", policy(t, s, "residents", plinth.EnvProduction), fullPolicy("residents", plinth.EnvProduction), before, after)
}

// ---- within a write transaction ----

// accessTx runs fn in a write transaction of s, on its Tx as a
// plinth.AccessTx.
func accessTx(t testing.TB, s plinth.Store, fn func(plinth.AccessTx) error) error {
	t.Helper()
	return s.Write(context.Background(), func(tx plinth.Tx) error {
		atx, ok := tx.(plinth.AccessTx)
		if !ok {
			return fmt.Errorf("the Tx %T does not implement plinth.AccessTx", tx)
		}
		return fn(atx)
	})
}

func testAccessTx(t *testing.T, as plinth.AccessStore) {
	s, ok := as.(plinth.Store)
	if !ok {
		t.Skipf("%T is not a plinth.Store", as)
	}
	ctx := context.Background()
	createGrant(t, as, fullGrant("kept"))
	putPolicy(t, as, fullPolicy("residents", plinth.EnvProduction))
	keptGrant := getGrant(t, as, "kept")
	keptPolicies := policies(t, as, plinth.EnvProduction)

	// Committed: the changes are kept, and the Tx's methods answer as the
	// Store's do.
	g := fullGrant("in-tx")
	before := plinth.Now()
	var enabled plinth.Grant
	err := accessTx(t, s, func(tx plinth.AccessTx) error {
		if err := tx.CreateGrant(ctx, g); err != nil {
			return fmt.Errorf("CreateGrant: %w", err)
		}
		if err := tx.CreateGrant(ctx, fullGrant("kept")); !errors.Is(err, plinth.ErrConflict) {
			return fmt.Errorf("CreateGrant of an existing ID: %v, want ErrConflict", err)
		}
		if _, err := tx.SetGrantEnabled(ctx, "missing", true); !errors.Is(err, plinth.ErrNotFound) {
			return fmt.Errorf("SetGrantEnabled of a missing ID: %v, want ErrNotFound", err)
		}
		if err := tx.DeletePolicy(ctx, "missing", plinth.EnvProduction); !errors.Is(err, plinth.ErrNotFound) {
			return fmt.Errorf("DeletePolicy of a missing policy: %v, want ErrNotFound", err)
		}
		var err error
		if enabled, err = tx.SetGrantEnabled(ctx, g.ID, false); err != nil { // sees the grant created in the Tx
			return fmt.Errorf("SetGrantEnabled: %w", err)
		}
		if err := tx.PutPolicy(ctx, fullPolicy("contacts", plinth.EnvProduction)); err != nil {
			return fmt.Errorf("PutPolicy: %w", err)
		}
		return nil
	})
	after := plinth.Now()
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	want := normalGrant(g)
	want.Enabled = false
	want.UpdatedAt = enabled.UpdatedAt
	if enabled.UpdatedAt.Before(before) || enabled.UpdatedAt.After(after) {
		t.Errorf("Tx.SetGrantEnabled: UpdatedAt %s, want between %s and %s", enabled.UpdatedAt, before, after)
	}
	checkGrant(t, "Tx.SetGrantEnabled returned", enabled, want)
	checkGrant(t, "grant created in a committed Tx", getGrant(t, as, g.ID), want)
	checkPolicy(t, "policy put in a committed Tx", policy(t, as, "contacts", plinth.EnvProduction),
		fullPolicy("contacts", plinth.EnvProduction), before, after)
	keptPolicies = policies(t, as, plinth.EnvProduction)

	// Rolled back: fn's error comes back unchanged and none of the
	// changes is kept.
	errRollback := errors.New("roll back")
	err = accessTx(t, s, func(tx plinth.AccessTx) error {
		if err := tx.CreateGrant(ctx, fullGrant("rolled-back")); err != nil {
			return fmt.Errorf("CreateGrant: %w", err)
		}
		if _, err := tx.SetGrantEnabled(ctx, "kept", false); err != nil {
			return fmt.Errorf("SetGrantEnabled: %w", err)
		}
		if err := tx.PutPolicy(ctx, fullPolicy("tenancies", plinth.EnvProduction)); err != nil {
			return fmt.Errorf("PutPolicy: %w", err)
		}
		changed := fullPolicy("contacts", plinth.EnvProduction)
		changed.ReadGroups = []string{"someone-else"}
		if err := tx.PutPolicy(ctx, changed); err != nil {
			return fmt.Errorf("PutPolicy over an existing policy: %w", err)
		}
		if err := tx.DeletePolicy(ctx, "residents", plinth.EnvProduction); err != nil {
			return fmt.Errorf("DeletePolicy: %w", err)
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("Write whose fn failed: %v, want fn's error", err)
	}
	if _, err := as.Grant(ctx, "rolled-back"); !errors.Is(err, plinth.ErrNotFound) {
		t.Errorf("grant created in a rolled-back Tx: %v, want ErrNotFound", err)
	}
	checkGrant(t, "grant enabled in a rolled-back Tx", getGrant(t, as, "kept"), keptGrant)
	checkGrant(t, "grant of the committed Tx after a rolled-back one", getGrant(t, as, g.ID), want)
	if got := policies(t, as, plinth.EnvProduction); !reflect.DeepEqual(got, keptPolicies) {
		t.Errorf("policies after a rolled-back Tx:\n got %v\nwant %v", got, keptPolicies)
	}
}
