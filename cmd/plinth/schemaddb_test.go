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
