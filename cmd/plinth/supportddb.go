package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth/dynamodb"
	"github.com/plinth-data/plinth/postgres"
)

// grantDynamoDBSupport prints a time-boxed read-only IAM policy for a
// domain stored on DynamoDB and records the grant in the audit trail.
func grantDynamoDBSupport(cmd *cobra.Command, cfg Config, req postgres.SupportRequest) error {
	by, err := operator(req.GrantedBy)
	if err != nil {
		return err
	}
	ds, err := loadDomains(cfg.Domains)
	if err != nil {
		return err
	}
	st, err := dynamodb.Open(cmd.Context(), cfg.StoreURLFor(req.Domain))
	if err != nil {
		return err
	}
	defer st.Close()
	g, err := st.GrantSupport(cmd.Context(), dynamodb.SupportRequest{User: req.User, Reason: req.Reason, Domain: req.Domain,
		GrantedBy: by, TTL: req.TTL, Environment: cfg.Environment}, ds)
	if err != nil {
		return err
	}
	fmt.Fprint(cmd.OutOrStdout(), describeDynamoDBSupport(req.Domain, req.User, g))
	return nil
}

// describeDynamoDBSupport says what a DynamoDB support grant gives and
// what to do with its policy.
func describeDynamoDBSupport(domain, user string, g dynamodb.SupportGrant) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Read-only support access to domain %s on DynamoDB for %s, from %s until %s.\n",
		domain, user, g.NotBefore.Format("2006-01-02 15:04:05Z07:00"), g.Expiry.Format("2006-01-02 15:04:05Z07:00"))
	fmt.Fprintf(&b, "Attach this IAM policy to the role %s assumes; AWS refuses every call outside the window (aws:CurrentTime).\n", user)
	fmt.Fprintf(&b, "Remove it afterwards: an expired policy grants nothing, but keeps the account tidy.\n\n%s\n\n", g.Policy)
	fmt.Fprintf(&b, "Recorded in the audit trail (log id %s).\n", g.Audit.LogID)
	return b.String()
}
