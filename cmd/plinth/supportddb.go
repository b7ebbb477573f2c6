package main

import (
	"fmt"

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
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "Read-only support access to domain %s on DynamoDB for %s, from %s until %s.\n",
		req.Domain, req.User, g.NotBefore.Format("2006-01-02 15:04:05Z07:00"), g.Expiry.Format("2006-01-02 15:04:05Z07:00"))
	fmt.Fprintf(out, "Attach this IAM policy to the role %s assumes; AWS refuses every call outside the window (aws:CurrentTime).\n", req.User)
	fmt.Fprintf(out, "Remove it afterwards: an expired policy grants nothing, but keeps the account tidy.\n\n%s\n\n", g.Policy)
	fmt.Fprintf(out, "Recorded in the audit trail (log id %s).\n", g.Audit.LogID)
	return nil
}
