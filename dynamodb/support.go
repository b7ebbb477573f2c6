package dynamodb

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
)

// Support access on DynamoDB: Plinth creates no database users, so a
// break-glass grant is an IAM policy, read-only on the domain's tables and
// indexes and valid only until it expires (an aws:CurrentTime condition),
// for the platform team to attach to the person's role; the grant is
// recorded in the audit trail when it is made.

// Support TTL bounds.
const (
	MinSupportTTL = 5 * time.Minute
	MaxSupportTTL = 24 * time.Hour
)

// SupportRequest asks for read-only access to one domain's tables.
type SupportRequest struct {
	User, Reason, Domain, GrantedBy string
	TTL                             time.Duration
	Environment, CorrelationID      string
	Account                         string // AWS account id; "*" when empty
}

// SupportGrant is the policy to attach, and its window.
type SupportGrant struct {
	Policy            string // IAM policy JSON
	Tables            []string
	NotBefore, Expiry time.Time
	Audit             plinth.AuditRecord
}

// GrantSupport builds the time-boxed policy and records the grant in the
// audit trail.
func (s *Store) GrantSupport(ctx context.Context, req SupportRequest, domains []*plinth.Domain) (SupportGrant, error) {
	var g SupportGrant
	switch {
	case strings.TrimSpace(req.User) == "":
		return g, fmt.Errorf("--user: say who gets access (their e-mail address)")
	case strings.TrimSpace(req.Reason) == "":
		return g, fmt.Errorf("--reason: say why (an incident or ticket and a sentence)")
	case req.TTL < MinSupportTTL || req.TTL > MaxSupportTTL:
		return g, fmt.Errorf("--ttl %s: from %s to %s", req.TTL, MinSupportTTL, MaxSupportTTL)
	}
	defs, err := Tables(s.opts.Prefix, s.opts.Shards, domains)
	if err != nil {
		return g, err
	}
	account := req.Account
	if account == "" {
		account = "*"
	}
	var resources []string
	for _, d := range defs {
		if strings.HasPrefix(d.Entity, req.Domain+"/") {
			g.Tables = append(g.Tables, d.Name)
			arn := fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/%s", s.opts.Region, account, d.Name)
			resources = append(resources, arn, arn+"/index/*")
		}
	}
	if len(g.Tables) == 0 {
		return g, fmt.Errorf("--domain %q: no tables of that domain", req.Domain)
	}
	g.NotBefore = time.Now().UTC().Truncate(time.Second)
	g.Expiry = g.NotBefore.Add(req.TTL)
	policy := map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{map[string]any{
			"Sid":      "PlinthSupportReadOnly" + strings.ReplaceAll(uuid.NewString()[:8], "-", ""),
			"Effect":   "Allow",
			"Action":   []string{"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:DescribeTable"},
			"Resource": resources,
			"Condition": map[string]any{
				"DateGreaterThan": map[string]string{"aws:CurrentTime": g.NotBefore.Format(time.RFC3339)},
				"DateLessThan":    map[string]string{"aws:CurrentTime": g.Expiry.Format(time.RFC3339)},
			},
		}},
	}
	b, _ := json.MarshalIndent(policy, "", "  ")
	g.Policy = string(b)
	corr := req.CorrelationID
	if corr == "" {
		corr = uuid.NewString()
	}
	recs, err := s.AppendAudit(ctx, []plinth.AuditRecord{{
		CorrelationID: corr, Environment: req.Environment, Domain: req.Domain, Operation: "support",
		Principal: plinth.Principal{Subject: req.GrantedBy, Email: req.GrantedBy}, Decision: plinth.DecisionAllow,
		Reason: fmt.Sprintf("support grant: read-only IAM policy on %s for %s until %s: %s",
			strings.Join(g.Tables, ", "), req.User, g.Expiry.Format(time.RFC3339), req.Reason),
		Status: 200, RecordIDs: []string{req.User},
	}})
	if err != nil {
		return g, fmt.Errorf("the grant was not recorded in the audit trail, so no policy is given: %w", err)
	}
	g.Audit = recs[0]
	return g, nil
}
