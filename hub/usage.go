package hub

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/plinth-data/plinth"
)

// UnusedAfter is how long a grant may go unused before the access review
// flags it for revocation.
const UnusedAfter = 90 * 24 * time.Hour

// maxReviewRecords bounds how many audit records one review page reads.
const maxReviewRecords = 500_000

// reviewPage is how many audit records one read of the review takes.
const reviewPage = 10_000

var errEnough = errors.New("enough audit records read")

// usage is what the audit trail says about access to one API: the charts,
// and when each service-token grant was last used.
type usage struct {
	Charts   *accessCharts
	LastUsed map[string]time.Time // by grant ID
	Read     int                  // audit records read
	Partial  bool                 // maxReviewRecords were read before the window's end
}

// dataOperations are the audit operations that touch an API's data (the
// Hub's own steps and admin calls do not).
var dataOperations = []string{"list", "view", "create", "update", "delete", "report", "support"}

// readOperations return records.
var readOperations = []string{"list", "view", "report"}

// usageOf reads the audit trail of the API for the last UnusedAfter: the
// archived records (in the lake) and the store's.
func (s *Server) usageOf(ctx context.Context, a *apiEntry, now time.Time) (*usage, error) {
	u := &usage{Charts: newAccessCharts(now), LastUsed: map[string]time.Time{}}
	if s.cfg.AuditSearch == nil {
		return u, nil
	}
	special := map[string]bool{}
	for _, e := range a.Entities {
		special[e.Plural] = e.Special
	}
	// Large pages: a store answers each page from its (domain, time)
	// index, reading what is left of the window again, so few pages cost
	// far less than many.
	q := plinth.AuditQuery{Domain: a.Domain.Name, Since: now.Add(-UnusedAfter), Limit: reviewPage}
	err := s.cfg.AuditSearch(ctx, q, func(r plinth.AuditRecord) error {
		if u.Read++; u.Read > maxReviewRecords {
			u.Partial = true
			return errEnough
		}
		u.count(r, special)
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, err
	}
	return u, nil
}

// count adds one audit record to the usage.
func (u *usage) count(r plinth.AuditRecord, special map[string]bool) {
	if r.Operation == "denied-aggregate" { // denials beyond the API's per-minute limit, counted
		if i := u.Charts.day(r.Time); i >= 0 {
			u.Charts.Denied.Series[0].Values[i] += r.Count
		}
		return
	}
	if !slices.Contains(dataOperations, r.Operation) {
		return
	}
	if id := r.Principal.TokenID; id != "" && r.Decision == plinth.DecisionAllow && r.Time.After(u.LastUsed[id]) {
		u.LastUsed[id] = r.Time
	}
	i := u.Charts.day(r.Time)
	if i < 0 {
		return
	}
	u.Charts.addRequest(i, consumerOf(r.Principal))
	switch {
	case r.Decision == plinth.DecisionDeny:
		u.Charts.Denied.Series[0].Values[i]++
	case slices.Contains(readOperations, r.Operation):
		u.Charts.Records.Series[0].Values[i] += r.Count
		if special[r.Entity] {
			u.Charts.Special.Series[0].Values[i] += r.Count
		}
	}
}

// consumerOf names who made a request, as the charts show it.
func consumerOf(p plinth.Principal) string {
	switch {
	case p.Consumer != "":
		return p.Consumer + " (service token)"
	case p.Email != "":
		return p.Email
	case p.Subject != "":
		return p.Subject
	}
	return "no valid token"
}
