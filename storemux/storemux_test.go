package storemux_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/dynamodb"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/ddbtest"
	"github.com/plinth-data/plinth/sqlite"
	"github.com/plinth-data/plinth/storemux"
)

// TestMixedEngines: residents on SQLite, contacts on DynamoDB. Records,
// their events and audit records land in their domain's store; a write
// that touches both domains is refused and leaves nothing; grants go to
// the default store.
func TestMixedEngines(t *testing.T) {
	ctx := t.Context()
	ds := plinthtest.Domains(t)
	var residents, contacts *plinth.Entity
	var resDomain, conDomain *plinth.Domain
	for _, d := range ds {
		for _, e := range d.Entities {
			switch e.Plural {
			case "residents":
				residents, resDomain = e, d
			case "contacts":
				contacts, conDomain = e, d
			}
		}
	}
	lite, err := sqlite.Open(ctx, t.TempDir()+"/p.db")
	if err != nil {
		t.Fatal(err)
	}
	ddb, err := dynamodb.Open(ctx, ddbtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	m := storemux.New(lite, map[string]plinth.Store{conDomain.Name: ddb})
	defer m.Close()
	if err := m.Prepare(ctx, []*plinth.Domain{resDomain, conDomain}); err != nil {
		t.Fatal(err)
	}
	contact, err := contacts.Validate(map[string]any{"firstName": "Ann", "lastName": "Lee"}, true)
	if err != nil {
		t.Fatalf("contact: %v", err)
	}
	var created plinth.Record
	err = m.Write(ctx, func(tx plinth.Tx) error {
		var err error
		if created, err = tx.Insert(ctx, contacts, contact); err != nil {
			return err
		}
		if err := tx.(plinth.EventTx).AppendEvent(ctx, plinth.OutboxEntry{Domain: conDomain.Name, Subject: "s", EventID: "ev-1", Payload: []byte("{}")}); err != nil {
			return err
		}
		_, err = tx.(plinth.AuditTx).AppendAudit(ctx, plinth.AuditRecord{Operation: "create", Decision: "allow", Domain: conDomain.Name})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ddb.Get(ctx, contacts, contacts.KeyOf(created)); err != nil {
		t.Errorf("the contact is not in DynamoDB: %v", err)
	}
	if n, _ := lite.Count(ctx, contacts); n != 0 {
		t.Errorf("SQLite holds %d contacts", n)
	}
	if es, _ := ddb.PendingEvents(ctx, 10); len(es) != 1 {
		t.Errorf("DynamoDB's outbox holds %d events, want 1", len(es))
	}
	if n, _ := ddb.CountUnchainedAudit(ctx); n != 1 {
		t.Errorf("DynamoDB's audit log holds %d records, want 1", n)
	}
	if got, err := m.Get(ctx, contacts, contacts.KeyOf(created)); err != nil || got.Data["firstName"] != "Ann" {
		t.Errorf("Get through the mux: %v %v", got.Data, err)
	}
	// One write, two stores: refused, nothing kept.
	resident, err := residents.Validate(map[string]any{"firstName": "Bo", "lastName": "Ng"}, true)
	if err != nil {
		t.Fatalf("resident: %v", err)
	}
	err = m.Write(ctx, func(tx plinth.Tx) error {
		if _, err := tx.Insert(ctx, residents, resident); err != nil {
			return err
		}
		_, err := tx.Insert(ctx, contacts, contact)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "one store") {
		t.Fatalf("a write over two stores: %v", err)
	}
	if n, _ := m.Count(ctx, residents); n != 0 {
		t.Errorf("the refused write left %d residents", n)
	}
	// fn's error comes back unchanged.
	boom := errors.New("boom")
	if err := m.Write(ctx, func(tx plinth.Tx) error {
		if _, err := tx.Insert(ctx, residents, resident); err != nil {
			return err
		}
		return boom
	}); err != boom {
		t.Errorf("fn's error: %v", err)
	}
	// Grants live in the default store.
	if err := m.Write(ctx, func(tx plinth.Tx) error {
		return tx.(plinth.AccessTx).CreateGrant(ctx, plinth.Grant{ID: "g1", Consumer: "c", API: "contacts", Environment: "development"})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := lite.Grant(ctx, "g1"); err != nil {
		t.Errorf("the grant is not in the default store: %v", err)
	}
	if len(m.Others()) != 1 {
		t.Errorf("others: %d", len(m.Others()))
	}
	// Audit search and verify span both chains, the default's first.
	chains := audit.Chains(m)
	if len(chains) != 2 || chains[0].Name != audit.DefaultChain || chains[0].Store != plinth.AuditStore(lite) ||
		chains[1].Name != conDomain.Name || chains[1].Store != plinth.AuditStore(ddb) {
		t.Errorf("audit chains: %+v", chains)
	}
	// Trimming (plinth lake audit) goes to the default store's chain only.
	if _, err := lite.AppendAudit(ctx, []plinth.AuditRecord{{Operation: "view", Decision: "allow"}, {Operation: "view", Decision: "allow"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ChainPendingTrail(ctx, chains); err != nil {
		t.Fatal(err)
	}
	if n, err := m.TrimAudit(ctx, 5); err != nil || n != 1 {
		t.Errorf("TrimAudit: %d, %v; want the default chain's 1 (its head stays)", n, err)
	}
	if head, _, err := ddb.AuditHead(ctx); err != nil || head != 1 {
		t.Errorf("the DynamoDB chain's head: %d, %v", head, err)
	}
	if err := ddb.ScanAudit(ctx, 0, func(r plinth.AuditRecord) error {
		if r.Sequence != 1 {
			t.Errorf("DynamoDB's chain holds record %d", r.Sequence)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// lingering is a default store with a chain linger of its own.
type lingering struct{ *sqlite.Store }

func (lingering) ChainLinger() time.Duration { return 321 * time.Millisecond }

// The Mux's audit trail is its default store's, and so is the linger its
// chainer gathers batches for (the PostgreSQL store has one).
func TestMuxChainLinger(t *testing.T) {
	lite, err := sqlite.Open(t.Context(), t.TempDir()+"/p.db")
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	if got := storemux.New(lingering{lite}, nil).ChainLinger(); got != 321*time.Millisecond {
		t.Errorf("ChainLinger over a store with one: %v", got)
	}
	if got := storemux.New(lite, nil).ChainLinger(); got != 0 {
		t.Errorf("ChainLinger over a store without one: %v, want 0 (the chainer's default)", got)
	}
}
