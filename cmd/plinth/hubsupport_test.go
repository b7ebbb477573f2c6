package main

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/dynamodb"
	"github.com/plinth-data/plinth/plinthtest/ddbtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
)

// The Hub's exceptions are carried out on each domain's store: a
// PostgreSQL login role, a DynamoDB IAM policy; a domain on SQLite gets
// none, and a deployment all on SQLite offers no exceptions.
func TestHubSupportOnEachDomainsStore(t *testing.T) {
	ctx := context.Background()
	ds, err := loadDomains("")
	if err != nil {
		t.Fatal(err)
	}
	sqliteOnly := Config{Environment: "development", DataDir: t.TempDir()}
	if newHubSupport(sqliteOnly, ds) != nil {
		t.Fatal("a deployment all on SQLite offers exceptions")
	}

	pgURL, ddbURL := pgtest.Database(t), ddbtest.URL(t)
	pg, err := postgres.Open(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	ddb, err := dynamodb.Open(ctx, ddbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer ddb.Close()
	var residents, contacts []*plinth.Domain
	for _, d := range ds {
		if d.Name == "residents" {
			residents = append(residents, d)
		} else {
			contacts = append(contacts, d)
		}
	}
	if err := pg.Prepare(ctx, residents); err != nil {
		t.Fatal(err)
	}
	if err := ddb.Prepare(ctx, contacts); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Environment: "development", Store: pgURL, Stores: map[string]string{"contacts": ddbURL}}
	sg := newHubSupport(cfg, ds)
	req := func(domain string) plinth.SupportAccessRequest {
		return plinth.SupportAccessRequest{User: "ann@example.gov.uk", Reason: "Developer Hub exception 1: the legacy system",
			Domain: domain, GrantedBy: "bob@example.gov.uk", Environment: "development", TTL: time.Hour}
	}

	access, err := sg.GrantSupportAccess(ctx, req("residents"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.RevokeSupport(context.Background(), access.ID, "test") })
	if !regexp.MustCompile(`Role:\s+`+access.ID).MatchString(access.Details) || !strings.Contains(access.Details, "Password:") {
		t.Errorf("PostgreSQL support access: %+v", access)
	}

	access, err = sg.GrantSupportAccess(ctx, req("contacts"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(access.Details, `"dynamodb:GetItem"`) || !strings.Contains(access.Details, "Recorded in the audit trail") ||
		time.Until(access.ExpiresAt) > time.Hour+time.Minute {
		t.Errorf("DynamoDB support access: %+v", access)
	}

	cfg.Stores["contacts"] = "sqlite://" + t.TempDir() + "/contacts.db"
	var verr *plinth.ValidationError
	if _, err := newHubSupport(cfg, ds).GrantSupportAccess(ctx, req("contacts")); !errors.As(err, &verr) {
		t.Errorf("support access to a domain on SQLite: %v", err)
	}
}
