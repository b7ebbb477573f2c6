package postgres

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/spec"
)

func TestPlanCreatesAccessTables(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	// Even without domains, a fresh database needs the access tables.
	for _, ds := range [][]*plinth.Domain{nil, loadDomains(t)} {
		p, err := s.Plan(ctx, ds)
		if err != nil {
			t.Fatal(err)
		}
		out := p.String()
		for _, want := range []string{
			`CREATE SCHEMA IF NOT EXISTS "plinth"`,
			`CREATE TABLE IF NOT EXISTS "plinth"."grants"`,
			`"id" text COLLATE "C" PRIMARY KEY`,
			`"methods" text[] NOT NULL`,
			`CREATE TABLE IF NOT EXISTS "plinth"."access_policies"`,
			`"entities" jsonb NOT NULL`,
			`PRIMARY KEY ("domain", "environment")`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("plan for %d domains lacks %s:\n%s", len(ds), want, out)
			}
		}
		if len(p.Refusals) > 0 {
			t.Errorf("refusals on a fresh database: %v", p.Refusals)
		}
	}
	// Prepare without domains creates them; then nothing is left to do,
	// with or without domains already prepared.
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Plan(ctx, nil); err != nil || !p.Empty() {
		t.Fatalf("plan after preparing no domains: %v\n%s", err, p)
	}
	ds := loadDomains(t)
	if err := s.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Plan(ctx, ds); err != nil || !p.Empty() {
		t.Fatalf("plan after preparing: %v\n%s", err, p)
	}
	if err := s.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateGrant(ctx, plinth.Grant{ID: "g1", Methods: []string{"GET"}}); err != nil {
		t.Fatal(err)
	}
}

func TestForeignAccessTableRefused(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	if _, err := s.pool.Exec(ctx, `CREATE SCHEMA plinth; CREATE TABLE plinth.grants (id text PRIMARY KEY, note text)`); err != nil {
		t.Fatal(err)
	}
	p, err := s.Plan(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Refusals) != 1 || !strings.Contains(p.Refusals[0], "plinth.grants: the table exists but has no column consumer") {
		t.Errorf("refusals %q", p.Refusals)
	}
	if strings.Contains(p.String(), `CREATE SCHEMA IF NOT EXISTS "plinth"`) {
		t.Errorf("the plan creates an existing schema:\n%s", p)
	}
	var re *RefusedError
	if err := s.Prepare(ctx, nil); !errors.As(err, &re) {
		t.Errorf("Prepare: %v, want a RefusedError", err)
	}
}

func TestDomainClashingWithAccessTablesRefused(t *testing.T) {
	d, err := spec.Parse("plinth.yaml", []byte(`
domain: plinth
description: A domain whose name is the system schema.
owner: {serviceArea: Test, productOwner: test@example.org}
entities:
  - name: grant
    plural: grants
    key: {name: id, type: string, pii: none}
    fields:
      - {name: note, type: string, pii: none}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := openStore(t, nil)
	p, err := s.Plan(context.Background(), []*plinth.Domain{d})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Refusals) != 1 || !strings.Contains(p.Refusals[0], `entity "grant" of domain "plinth" would be stored in the table plinth keeps its service-token grants in`) {
		t.Errorf("refusals %q", p.Refusals)
	}
	if n := strings.Count(p.String(), `CREATE SCHEMA IF NOT EXISTS "plinth"`); n != 1 {
		t.Errorf("the plan creates the schema %d times:\n%s", n, p)
	}
}

func TestAccessUnavailableDuringOutage(t *testing.T) {
	dbURL := pgtest.Database(t)
	u, _ := url.Parse(dbURL)
	p := newProxy(t, u.Host)
	u.Host = p.addr
	ctx := context.Background()
	s, err := Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateGrant(ctx, plinth.Grant{ID: "g1"}); err != nil {
		t.Fatal(err)
	}

	p.stop()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	calls := map[string]func() error{
		"CreateGrant":     func() error { return s.CreateGrant(cctx, plinth.Grant{ID: "g2"}) },
		"Grant":           func() error { _, err := s.Grant(cctx, "g1"); return err },
		"SetGrantEnabled": func() error { _, err := s.SetGrantEnabled(cctx, "g1", false); return err },
		"Grants":          func() error { _, _, err := s.Grants(cctx, "", 10); return err },
		"PutPolicy": func() error {
			return s.PutPolicy(cctx, plinth.AccessPolicy{Domain: "d", Environment: plinth.EnvProduction})
		},
		"DeletePolicy": func() error { return s.DeletePolicy(cctx, "d", plinth.EnvProduction) },
		"Policies":     func() error { _, err := s.Policies(cctx, plinth.EnvProduction); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, plinth.ErrUnavailable) {
			t.Errorf("%s during outage: %v, want ErrUnavailable", name, err)
		}
	}
}

func TestAccessNotPrepared(t *testing.T) {
	s, _ := openStore(t, nil)
	_, err := s.Grant(context.Background(), "g1")
	if err == nil || errors.Is(err, plinth.ErrNotFound) || !strings.Contains(err.Error(), "prepare the store") {
		t.Errorf("Grant before Prepare: %v; want an error saying to prepare", err)
	}
}

// A grants table made before grants recorded their contract gets the
// column, and its grants read back with none.
func TestGrantsTableGainsContractColumn(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	if _, err := s.pool.Exec(ctx, `CREATE SCHEMA plinth; CREATE TABLE plinth.grants (id text COLLATE "C" PRIMARY KEY, consumer text NOT NULL,
	consumer_type text NOT NULL, api text NOT NULL, endpoint text NOT NULL, methods text[] NOT NULL, environment text NOT NULL,
	expires_at timestamptz, requested_by text NOT NULL, authorised_by text NOT NULL, enabled boolean NOT NULL,
	created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
	INSERT INTO plinth.grants VALUES ('old', 'c', 'service', 'residents', '/api/v1/residents', '{GET}', 'development', NULL, 'a', 'b', true, now(), now())`); err != nil {
		t.Fatal(err)
	}
	p, err := s.Plan(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Refusals) > 0 || !strings.Contains(p.String(), `ALTER TABLE "plinth"."grants" ADD COLUMN IF NOT EXISTS "contract"`) {
		t.Fatalf("plan for an older grants table (refusals %q):\n%s", p.Refusals, p)
	}
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if g, err := s.Grant(ctx, "old"); err != nil || g.Contract != "" || g.Consumer != "c" {
		t.Fatalf("the older grant: %+v, %v", g, err)
	}
	g := plinth.Grant{ID: "new", Consumer: "c", ConsumerType: "service", API: "residents", Endpoint: "/api/v1/residents",
		Methods: []string{"GET"}, Environment: "development", RequestedBy: "a", AuthorisedBy: "b", Enabled: true, Contract: "contract-1"}
	if err := s.CreateGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Grant(ctx, "new"); err != nil || got.Contract != "contract-1" {
		t.Fatalf("a new grant's contract: %q, %v", got.Contract, err)
	}
}

// An outbox made before events carried their trace gets the column (the
// plan says so; nothing refused), and traced events keep theirs.
func TestOutboxGainsTraceColumn(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ALTER TABLE plinth.outbox DROP COLUMN trace`); err != nil { // as an older plinth left it
		t.Fatal(err)
	}
	p, err := s.Plan(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Refusals) > 0 || !strings.Contains(p.String(), `ALTER TABLE "plinth"."outbox" ADD COLUMN IF NOT EXISTS "trace"`) {
		t.Fatalf("plan for an older outbox (refusals %q):\n%s", p.Refusals, p)
	}
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if err := s.Write(ctx, func(tx plinth.Tx) error {
		return tx.(plinth.EventTx).AppendEvent(ctx, plinth.OutboxEntry{Domain: "d", Subject: "s", EventID: "traced", Payload: []byte("{}"), Trace: tp})
	}); err != nil {
		t.Fatal(err)
	}
	var es []plinth.OutboxEntry
	plinthtest.Eventually(t, 10*time.Second, func() bool {
		es, err = s.PendingEvents(ctx, 10)
		return err == nil && len(es) == 1
	}, "pending events %v, %v", plinthtest.Last(&es), plinthtest.Last(&err))
	if es[0].Trace != tp {
		t.Fatalf("the traced event came back with trace %q", es[0].Trace)
	}
}

// The chain's index on record ids made before with fastupdate off is given
// its storage parameters (the plan says so); once it has them the plan
// leaves it alone.
func TestRecordIDsIndexGainsItsOptions(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	options := func() []string {
		var o []string
		if err := s.pool.QueryRow(ctx, `SELECT reloptions FROM pg_class WHERE oid = 'plinth.audit__by_record_id'::regclass`).Scan(&o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	if o := options(); !slices.Equal(o, []string{"fastupdate=on", "gin_pending_list_limit=256"}) {
		t.Fatalf("a new index has options %q", o)
	}
	if _, err := s.pool.Exec(ctx, `ALTER INDEX plinth.audit__by_record_id SET (fastupdate = off); ALTER INDEX plinth.audit__by_record_id RESET (gin_pending_list_limit)`); err != nil { // as an older plinth made it
		t.Fatal(err)
	}
	const step = `ALTER INDEX "plinth"."audit__by_record_id" SET (fastupdate = on, gin_pending_list_limit = 256)`
	p, err := s.Plan(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Refusals) > 0 || !strings.Contains(p.String(), step) {
		t.Fatalf("plan for an older index (refusals %q):\n%s", p.Refusals, p)
	}
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if o := options(); !slices.Equal(o, []string{"fastupdate=on", "gin_pending_list_limit=256"}) {
		t.Fatalf("after Prepare the index has options %q", o)
	}
	if p, err := s.Plan(ctx, nil); err != nil || strings.Contains(p.String(), "audit__by_record_id") {
		t.Fatalf("plan once the index has its options: %v\n%s", err, p)
	}
}
