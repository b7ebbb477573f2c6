package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/dynamodb"
	"github.com/plinth-data/plinth/postgres"
)

// hubSupport carries out the Developer Hub's exceptions on the store of
// each domain, as plinth support grant does: a time-limited read-only
// PostgreSQL login, or for a domain on DynamoDB the time-boxed IAM policy
// to attach. Each grant opens the domain's store for itself: they are rare.
type hubSupport struct {
	cfg Config
	ds  []*plinth.Domain
}

// newHubSupport is nil when no domain is on a store that grants support
// access (SQLite): then the Hub offers no exceptions.
func newHubSupport(cfg Config, ds []*plinth.Domain) plinth.SupportGranter {
	for _, d := range ds {
		if supportEngine(cfg.StoreURLFor(d.Name)) != "" {
			return hubSupport{cfg: cfg, ds: ds}
		}
	}
	return nil
}

func supportEngine(url string) string {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return "postgres"
	case strings.HasPrefix(url, "dynamodb://"):
		return "dynamodb"
	}
	return ""
}

func (h hubSupport) GrantSupportAccess(ctx context.Context, req plinth.SupportAccessRequest) (plinth.SupportAccess, error) {
	url := h.cfg.StoreURLFor(req.Domain)
	switch supportEngine(url) {
	case "postgres":
		st, err := postgres.Open(ctx, url)
		if err != nil {
			return plinth.SupportAccess{}, err
		}
		defer st.Close()
		return st.GrantSupportAccess(ctx, req)
	case "dynamodb":
		st, err := dynamodb.Open(ctx, url)
		if err != nil {
			return plinth.SupportAccess{}, err
		}
		defer st.Close()
		g, err := st.GrantSupport(ctx, dynamodb.SupportRequest{User: req.User, Reason: req.Reason, Domain: req.Domain,
			GrantedBy: req.GrantedBy, TTL: req.TTL, Environment: req.Environment, CorrelationID: req.CorrelationID}, h.ds)
		if err != nil {
			return plinth.SupportAccess{}, err
		}
		return plinth.SupportAccess{ID: "audit log " + g.Audit.LogID, ExpiresAt: g.Expiry, Details: describeDynamoDBSupport(req.Domain, req.User, g)}, nil
	}
	return plinth.SupportAccess{}, &plinth.ValidationError{Errors: []plinth.FieldError{{Field: "domain",
		Detail: fmt.Sprintf("%s is on a store that grants no direct read access (SQLite)", req.Domain)}}}
}
