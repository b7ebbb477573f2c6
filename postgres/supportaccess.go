package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/plinth-data/plinth"
)

var _ plinth.SupportGranter = (*Store)(nil)

// GrantSupportAccess is GrantSupport for callers that speak Plinth (the
// Developer Hub's exceptions).
func (s *Store) GrantSupportAccess(ctx context.Context, req plinth.SupportAccessRequest) (plinth.SupportAccess, error) {
	g, err := s.GrantSupport(ctx, SupportRequest{User: req.User, Reason: req.Reason, TTL: req.TTL, Domain: req.Domain,
		GrantedBy: req.GrantedBy, Environment: req.Environment, CorrelationID: req.CorrelationID})
	if err != nil {
		return plinth.SupportAccess{}, err
	}
	return plinth.SupportAccess{ID: g.Role, ExpiresAt: g.ExpiresAt, Details: g.Describe()}, nil
}

// Describe says what the grant gives and how to connect, password included.
func (g SupportGrant) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Read-only support access to domain %s (schema %q of database %q at %s:%d) for %s.\n\n",
		g.Domain, g.Schema, g.Database, g.Host, g.Port, g.User)
	fmt.Fprintf(&b, "  Role:      %s\n", g.Role)
	fmt.Fprintf(&b, "  Password:  %s\n", g.Password)
	fmt.Fprintf(&b, "  Expires:   %s (in %s); the role is dropped, and its sessions ended, by the next sweep after that\n",
		g.ExpiresAt.Format(time.RFC3339), time.Until(g.ExpiresAt).Round(time.Second))
	logging := "OFF"
	switch {
	case g.StatementLogging:
		logging = "on (pgaudit)"
	case g.ServerLog:
		logging = "pgaudit NOT available; server log only (log_statement = all)"
	}
	fmt.Fprintf(&b, "  Logging:   %s\n", logging)
	if g.CorrelationID != "" {
		fmt.Fprintf(&b, "  Audit id:  %s (the grant's correlation id; plinth support log files the role's statements under it)\n", g.CorrelationID)
	}
	if !g.Audited {
		fmt.Fprintf(&b, "  Audit:     this store keeps no audit trail: the grant is recorded in plinth.support_grants only\n")
	}
	fmt.Fprintf(&b, "\nThe password is shown this once and not stored: pass it to %s over a secure channel.\n", g.User)
	fmt.Fprintf(&b, "Connect with (psql asks for the password, or set PGPASSWORD for that one command):\n\n  %s\n", g.ConnectHint)
	if g.Note != "" {
		fmt.Fprintf(&b, "\n%s\n", g.Note)
	}
	fmt.Fprintf(&b, "\nEnd it sooner with: plinth support revoke %s\n", g.Role)
	return b.String()
}
