package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The example's DynamoDB tables are what plinth schema dynamodb prints for
// the residents domain today, so the Terraform matches the store's layout.
func TestTerraformExampleTablesAreCurrent(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("..", "..", "domains", "residents.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "residents.yaml"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, dir, []string{"PLINTH_STORE="}, "schema", "dynamodb", "--format", "terraform", "--domains", dir, "--prefix", "residents-")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	shipped, err := os.ReadFile(filepath.Join("..", "..", "deploy", "terraform", "examples", "residents", "tables.tf"))
	if err != nil {
		t.Fatal(err)
	}
	body := string(shipped)
	body = body[strings.Index(body, "resource "):]
	if strings.TrimSpace(body) != strings.TrimSpace(out) {
		t.Fatalf("deploy/terraform/examples/residents/tables.tf is out of date; regenerate it:\n%s", out)
	}
}
