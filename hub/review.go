package hub

import (
	"net/http"
	"slices"
	"time"

	"github.com/plinth-data/plinth"
)

// reviewGrant is one grant on the access review page, with the request
// whose contract made it (the grant records the contract), if any.
type reviewGrant struct {
	plinth.Grant
	Request  string
	Expired  bool
	LastUsed time.Time
	// Unused: enabled, not expired, older than UnusedAfter and not used
	// for as long: flagged for revocation.
	Unused bool
}

// reviewPage shows the API's owners who may access what: the access
// policy's groups in this environment, every service-token grant on the
// API, and the contract behind each. Viewing it is audited.
func (s *Server) reviewPage(w http.ResponseWriter, r *http.Request) {
	p := sessionFrom(r).Principal
	a := s.apiOf(w, r)
	if a == nil {
		return
	}
	if !s.isOwner(p, a) {
		s.refuse(w, r, p, http.StatusForbidden, "only the owners of "+a.Domain.Name+" may review its access")
		return
	}
	access, ok := s.cfg.Store.(plinth.AccessStore)
	if !ok {
		s.fail(w, r, refused(http.StatusNotImplemented, "the store keeps no grants"))
		return
	}
	st, err := s.readState(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	byContract := map[string]string{} // contract ID → request ID
	for _, req := range st.Requests {
		if req.Contract != nil {
			byContract[req.Contract.Contract.ID] = req.ID
		}
	}
	var grants []reviewGrant
	now := time.Now()
	use, err := s.usageOf(r.Context(), a, now)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for after := ""; ; {
		page, more, err := access.Grants(r.Context(), after, 100)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for _, g := range page {
			if g.API == a.Domain.Name && g.Environment == s.cfg.Environment {
				rg := reviewGrant{Grant: g, Request: byContract[g.Contract], Expired: !now.Before(g.ExpiresAt), LastUsed: use.LastUsed[g.ID]}
				rg.Unused = g.Enabled && !rg.Expired && g.CreatedAt.Before(now.Add(-UnusedAfter)) && rg.LastUsed.IsZero()
				grants = append(grants, rg)
			}
		}
		if !more || len(page) == 0 {
			break
		}
		after = page[len(page)-1].ID
	}
	pols, err := access.Policies(r.Context(), s.cfg.Environment)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var policy *plinth.AccessPolicy
	for i := range pols {
		if pols[i].Domain == a.Domain.Name {
			policy = &pols[i]
		}
	}
	if !s.audit(r, p, "review", http.StatusOK, plinth.DecisionAllow, "access review of "+a.Domain.Name+" viewed", a.Domain.Name) {
		s.fail(w, r, refused(http.StatusServiceUnavailable, "the audit trail cannot be written just now; try again shortly"))
		return
	}
	s.render(w, r, http.StatusOK, "review", map[string]any{"Title": "Who may access " + a.Domain.Name, "API": a, "Policy": policy, "Grants": grants, "Usage": use,
		"Unused": slices.ContainsFunc(grants, func(g reviewGrant) bool { return g.Unused }), "Charts": s.cfg.AuditSearch != nil})
}
