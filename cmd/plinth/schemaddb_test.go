package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
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
