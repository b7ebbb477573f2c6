package config

import (
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
)

func TestAccountIDs(t *testing.T) {
	ds := []*plinth.Domain{
		{Name: "residents", Owner: plinth.Owner{CloudAccount: "social-care-production"}},
		{Name: "contacts", Owner: plinth.Owner{CloudAccount: "210987654321"}},
		{Name: "notes"},
	}
	c := Config{Environment: plinth.EnvProduction, CloudAccounts: "social-care-production=123456789012, other=111111111111"}
	got, err := c.AccountIDs(ds)
	if err != nil || len(got) != 2 || got["residents"] != "123456789012" || got["contacts"] != "210987654321" {
		t.Fatalf("%v %v", got, err)
	}
	c.CloudAccounts = ""
	if _, err := c.AccountIDs(ds); err == nil || !strings.Contains(err.Error(), "PLINTH_CLOUD_ACCOUNTS=social-care-production=") {
		t.Fatalf("unresolved label in production: %v", err)
	}
	c.Environment = plinth.EnvDevelopment
	if got, err := c.AccountIDs(ds); err != nil || len(got) != 1 {
		t.Fatalf("development: %v %v", got, err)
	}
	c.CloudAccounts = "social-care-production=12345"
	if _, err := c.AccountIDs(ds); err == nil || !strings.Contains(err.Error(), "12-digit") {
		t.Fatalf("bad id: %v", err)
	}
}
