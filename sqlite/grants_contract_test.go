package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/sqlite"
)

// A grants table made before grants recorded their contract gets the
// column on Prepare; its grants read back with none.
func TestGrantsTableGainsContractColumn(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plinth.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`CREATE TABLE "plinth_grants" ("id" TEXT PRIMARY KEY NOT NULL, "consumer" TEXT NOT NULL,
	"consumer_type" TEXT NOT NULL, "api" TEXT NOT NULL, "endpoint" TEXT NOT NULL, "methods" TEXT NOT NULL,
	"environment" TEXT NOT NULL, "expires_at" TEXT, "requested_by" TEXT NOT NULL, "authorised_by" TEXT NOT NULL,
	"enabled" INTEGER NOT NULL, "created_at" TEXT NOT NULL, "updated_at" TEXT NOT NULL) WITHOUT ROWID;
	INSERT INTO "plinth_grants" VALUES ('old', 'c', 'service', 'residents', '/api/v1/residents', '["GET"]', 'development',
	NULL, 'a', 'b', 1, '2024-01-01T00:00:00.000000Z', '2024-01-01T00:00:00.000000Z')`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	prepare(t, s, nil)
	prepare(t, s, nil) // idempotent
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
