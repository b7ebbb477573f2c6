package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/plinthtest/ddbtest"
)

// TestDynamoDBTablesOnlyInDevelopment: outside development a DynamoDB store
// with missing tables refuses to open, naming them and the fix; `plinth
// schema apply` creates them; then it opens.
func TestDynamoDBTablesOnlyInDevelopment(t *testing.T) {
	url := ddbtest.URL(t)
	ds, err := loadDomains("")
	if err != nil {
		t.Fatal(err)
	}
	ctx := withEnvironment(t.Context(), plinth.EnvStaging)
	_, err = openStore(ctx, url, ds)
	if err == nil || !strings.Contains(err.Error(), "is missing") || !strings.Contains(err.Error(), "plinth schema apply") {
		t.Fatalf("staging without tables: %v; want a refusal naming the missing tables and plinth schema apply", err)
	}
	if out, err := runPlinth(t.Context(), t, "schema", "apply", "--store", url); err != nil {
		t.Fatalf("schema apply: %v\n%s", err, out)
	}
	st, err := openStore(ctx, url, ds)
	if err != nil {
		t.Fatalf("staging after schema apply: %v", err)
	}
	st.Close()
}

func TestSchemaDynamoDB(t *testing.T) {
	out, err := runPlinth(t.Context(), t, "schema", "dynamodb", "--prefix", "prod-")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var doc struct {
		Shards int `json:"shards"`
		Tables []struct {
			Name    string           `json:"tableName"`
			Indexes []map[string]any `json:"globalSecondaryIndexes"`
		} `json:"tables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if doc.Shards != 4 || len(doc.Tables) < 2 || doc.Tables[0].Name != "prod-plinth" || !strings.HasPrefix(doc.Tables[1].Name, "prod-") {
		t.Fatalf("tables: %+v", doc)
	}
	tf, err := runPlinth(t.Context(), t, "schema", "dynamodb", "--format", "terraform")
	if err != nil {
		t.Fatalf("%v\n%s", err, tf)
	}
	if n := strings.Count(tf, `resource "aws_dynamodb_table"`); n != len(doc.Tables) || !strings.Contains(tf, "global_secondary_index") {
		t.Fatalf("terraform has %d tables, want %d:\n%s", n, len(doc.Tables), tf)
	}
	if _, err := runPlinth(t.Context(), t, "schema", "dynamodb", "--format", "yaml"); err == nil {
		t.Error("--format yaml: no error")
	}
}

// TestSupportGrantOnDynamoDB: the grant prints a read-only IAM policy on
// the domain's tables, bounded by aws:CurrentTime, and is in the audit log.
func TestSupportGrantOnDynamoDB(t *testing.T) {
	url := ddbtest.URL(t)
	if out, err := runPlinth(t.Context(), t, "schema", "apply", "--store", url); err != nil {
		t.Fatalf("schema apply: %v\n%s", err, out)
	}
	out, err := runPlinth(t.Context(), t, "support", "grant", "--store", url, "--env", "production", "--domain", "contacts",
		"--user", "jo@example.gov.uk", "--reason", "INC-1: wrong phone", "--ttl", "1h", "--granted-by", "sam@example.gov.uk")
	if err != nil {
		t.Fatalf("support grant: %v\n%s", err, out)
	}
	start := strings.Index(out, "{")
	end := strings.LastIndex(out, "}")
	var policy struct {
		Statement []struct {
			Effect    string
			Action    []string
			Resource  []string
			Condition map[string]map[string]string
		}
	}
	if start < 0 || json.Unmarshal([]byte(out[start:end+1]), &policy) != nil || len(policy.Statement) != 1 {
		t.Fatalf("no policy in:\n%s", out)
	}
	st := policy.Statement[0]
	if st.Condition["DateLessThan"]["aws:CurrentTime"] == "" || st.Condition["DateGreaterThan"]["aws:CurrentTime"] == "" {
		t.Errorf("policy not time-boxed: %+v", st.Condition)
	}
	for _, a := range st.Action {
		if !strings.Contains("dynamodb:GetItem dynamodb:BatchGetItem dynamodb:Query dynamodb:Scan dynamodb:DescribeTable", a) {
			t.Errorf("action %s is not read-only", a)
		}
	}
	for _, r := range st.Resource {
		if !strings.Contains(r, "table/") || !strings.Contains(r, "contacts.") {
			t.Errorf("resource %s is not a contacts table", r)
		}
	}
	s, err := openStore(withEnvironment(t.Context(), plinth.EnvProduction), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := s.(plinth.AuditStore).UnchainedAudit(t.Context(), 10)
	if err != nil || len(recs) != 1 || recs[0].Operation != "support" || !strings.Contains(recs[0].Reason, "jo@example.gov.uk") {
		t.Fatalf("audit log: %+v, %v", recs, err)
	}
	if _, err := runPlinth(t.Context(), t, "support", "grant", "--store", url, "--domain", "contacts", "--user", "jo@x", "--reason", "r", "--ttl", "72h", "--granted-by", "sam"); err == nil {
		t.Error("a 72h grant: no error")
	}
}

// TestStoresMapOpensARoutingStore: with stores: {contacts: dynamodb://…}
// contacts are written to DynamoDB and residents to the default store.
func TestStoresMapOpensARoutingStore(t *testing.T) {
	ds, err := loadDomains("")
	if err != nil {
		t.Fatal(err)
	}
	url := ddbtest.URL(t)
	cfg := Config{Environment: plinth.EnvDevelopment, Store: "sqlite://" + t.TempDir() + "/p.db", Stores: map[string]string{"contacts": url}}
	ctx := withEnvironment(t.Context(), plinth.EnvDevelopment)
	st, err := openStores(ctx, cfg, ds)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var contacts *plinth.Entity
	for _, d := range ds {
		for _, e := range d.Entities {
			if e.Plural == "contacts" {
				contacts = e
			}
		}
	}
	data, err := contacts.Validate(map[string]any{"firstName": "Ann", "lastName": "Lee"}, true)
	if err != nil {
		t.Fatal(err)
	}
	var r plinth.Record
	if err := st.Write(ctx, func(tx plinth.Tx) error { r, err = tx.Insert(ctx, contacts, data); return err }); err != nil {
		t.Fatal(err)
	}
	ddb, err := openStore(ctx, url, ds[:0])
	if err != nil {
		t.Fatal(err)
	}
	defer ddb.Close()
	if err := ddb.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if _, err := ddb.Get(ctx, contacts, contacts.KeyOf(r)); err != nil {
		t.Errorf("the contact is not in the DynamoDB store: %v", err)
	}
}

// TestAuditCommandsSpanEveryStore: with stores: {contacts: dynamodb://…}
// each store chains the audit records of its own writes; audit chain,
// head, search and verify cover both chains and name the store of each.
func TestAuditCommandsSpanEveryStore(t *testing.T) {
	ds, err := loadDomains("")
	if err != nil {
		t.Fatal(err)
	}
	dir, url := t.TempDir(), ddbtest.URL(t)
	conf := filepath.Join(dir, "plinth.yaml")
	yaml := fmt.Sprintf("environment: development\nstore: sqlite://%s/p.db\nstores:\n  contacts: %q\n", dir, url)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := withEnvironment(t.Context(), plinth.EnvDevelopment)
	st, err := openStores(ctx, Config{Environment: plinth.EnvDevelopment, Store: "sqlite://" + dir + "/p.db", Stores: map[string]string{"contacts": url}}, ds)
	if err != nil {
		t.Fatal(err)
	}
	chains := audit.Chains(st.(plinth.AuditStore))
	if len(chains) != 2 || chains[0].Name != audit.DefaultChain || chains[1].Name != "contacts" {
		t.Fatalf("chains %+v", chains)
	}
	base := time.Now().UTC().Add(-time.Hour)
	for i, c := range []struct {
		chain int
		op    string
	}{{0, "view"}, {1, "create"}, {0, "list"}, {1, "update"}} {
		rec := plinth.AuditRecord{Time: base.Add(time.Duration(i) * time.Minute), CorrelationID: fmt.Sprintf("r%d", i), Environment: "development",
			Domain: "contacts", Entity: "contacts", Operation: c.op, Principal: plinth.Principal{Subject: "ann"},
			Decision: plinth.DecisionAllow, Status: 200, RecordIDs: []string{"7"}}
		if _, err := chains[c.chain].Store.AppendAudit(ctx, []plinth.AuditRecord{rec}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	cli := func(args ...string) string {
		t.Helper()
		out, err := runPlinth(ctx, t, append(args, "--config", conf)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	if out := cli("audit", "chain"); !strings.Contains(out, "chained 4 records; 0 not yet chained") {
		t.Fatalf("audit chain: %s", out)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(cli("audit", "search", "--entity-id", "7", "--json")), "\n") {
		var r audit.TrailRecord
		if json.Unmarshal([]byte(line), &r) == nil && r.CorrelationID != "" {
			got = append(got, fmt.Sprintf("%s@%s:%d", r.CorrelationID, r.Chain, r.Sequence))
		}
	}
	if want := "r0@default:1 r1@contacts:1 r2@default:2 r3@contacts:2"; strings.Join(got, " ") != want {
		t.Fatalf("audit search: %v, want %s", got, want)
	}
	heads := strings.Fields(cli("audit", "head"))
	if len(heads) != 2 || !strings.HasPrefix(heads[0], "2:") || !strings.HasPrefix(heads[1], "contacts=2:") {
		t.Fatalf("audit head: %q", heads)
	}
	out := cli("audit", "verify", "--expect-head", heads[1], "--expect-head", heads[0])
	for _, want := range []string{"audit chain of store default intact: 2 records, head " + heads[0],
		"audit chain of store contacts intact: 2 records, head " + heads[1]} {
		if !strings.Contains(out, want) {
			t.Errorf("audit verify lacks %q:\n%s", want, out)
		}
	}
	wrong := "contacts=2:" + strings.Repeat("0", 64)
	if out, err := runPlinth(ctx, t, "audit", "verify", "--config", conf, "--expect-head", wrong); err == nil ||
		!strings.Contains(out, "audit chain of store contacts BROKEN at record 2") {
		t.Errorf("a wrong anchor of the contacts chain: %v\n%s", err, out)
	}
}
