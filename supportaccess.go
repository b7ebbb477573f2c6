package plinth

import (
	"context"
	"time"
)

// SupportAccessRequest asks for break-glass, read-only direct access to
// one domain's data for one person, for a while: what the Developer Hub
// carries out for an approved exception (a legacy application that cannot
// call the API).
type SupportAccessRequest struct {
	User          string // e-mail of the person who gets access
	Reason        string
	Domain        string
	GrantedBy     string // who approved it
	Environment   string
	CorrelationID string
	TTL           time.Duration
}

// SupportAccess is support access granted: its ID, its expiry, and how to
// connect (shown once: it holds the password).
type SupportAccess struct {
	ID        string
	ExpiresAt time.Time
	Details   string
}

// SupportGranter is implemented by stores that grant support access, and
// record it in the audit trail (PostgreSQL: a time-limited read-only login
// role whose statements are audited).
type SupportGranter interface {
	GrantSupportAccess(ctx context.Context, req SupportAccessRequest) (SupportAccess, error)
}
