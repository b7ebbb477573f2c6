package hub

import (
	"context"
	"errors"
	"slices"

	"github.com/plinth-data/plinth"
)

// policyEntry is one group's right in an access policy: an operation on
// the whole domain (Entity "") or, for read and write, on one entity.
type policyEntry struct {
	Entity string `json:"entity,omitempty"`
	Op     string `json:"op"`
	Group  string `json:"group"`
}

// groupEntries are the policy entries a group contract justifies: on the
// domain when it covers every entity, else per entity (reporting is per
// domain only; requests check that).
func groupEntries(c Contract, d *plinth.Domain) []policyEntry {
	whole := len(c.Entities) == len(d.Entities)
	var out []policyEntry
	for _, op := range c.Operations {
		if whole || op == string(plinth.OpReport) {
			out = append(out, policyEntry{Op: op, Group: c.Group})
			continue
		}
		for _, e := range c.Entities {
			out = append(out, policyEntry{Entity: e, Op: op, Group: c.Group})
		}
	}
	return out
}

// editEntry changes the list of groups e names in p with fn. An entity
// without an override gets one holding the domain's groups first, so the
// group is added to them rather than replacing them.
func editEntry(p *plinth.AccessPolicy, e policyEntry, fn func([]string) []string) {
	if e.Entity == "" {
		switch plinth.Operation(e.Op) {
		case plinth.OpRead:
			p.ReadGroups = fn(p.ReadGroups)
		case plinth.OpWrite:
			p.WriteGroups = fn(p.WriteGroups)
		default:
			p.ReportingGroups = fn(p.ReportingGroups)
		}
		return
	}
	if p.Entities == nil {
		p.Entities = map[string]plinth.EntityPolicy{}
	}
	ep := p.Entities[e.Entity]
	if e.Op == string(plinth.OpWrite) {
		if ep.WriteGroups == nil {
			ep.WriteGroups = slices.Clone(p.WriteGroups)
		}
		ep.WriteGroups = fn(ep.WriteGroups)
	} else {
		if ep.ReadGroups == nil {
			ep.ReadGroups = slices.Clone(p.ReadGroups)
		}
		ep.ReadGroups = fn(ep.ReadGroups)
	}
	p.Entities[e.Entity] = ep
}

// hasEntry reports whether p already gives e.
func hasEntry(p plinth.AccessPolicy, e policyEntry) bool {
	var has bool
	cp := p
	cp.Entities = nil
	if ep, ok := p.Entities[e.Entity]; ok {
		cp.Entities = map[string]plinth.EntityPolicy{e.Entity: ep}
	}
	editEntry(&cp, e, func(list []string) []string { has = slices.Contains(list, e.Group); return list })
	return has
}

// currentPolicy reads the domain's policy in the Hub's environment, or an
// empty one. Steps read it after the state they swap, so a policy another
// step changed since makes the swap fail and the step run again.
func (s *Server) currentPolicy(ctx context.Context, domain string) (plinth.AccessPolicy, error) {
	access, ok := s.cfg.Store.(plinth.AccessStore)
	if !ok {
		return plinth.AccessPolicy{}, errors.New("the store keeps no access policies")
	}
	pols, err := access.Policies(ctx, s.cfg.Environment)
	if err != nil {
		return plinth.AccessPolicy{}, err
	}
	for _, p := range pols {
		if p.Domain == domain {
			return p, nil
		}
	}
	return plinth.AccessPolicy{Domain: domain, Environment: s.cfg.Environment,
		ReadGroups: []string{}, WriteGroups: []string{}, ReportingGroups: []string{}}, nil
}

// grantGroup gives the contract's group its rights in the domain's policy.
// Entries the policy lacked are recorded as the Hub's, so that revoking
// removes only what the Hub added and no other contract still justifies.
func (s *Server) grantGroup(ctx context.Context, tx plinth.StateTx, st *state, req *Request) error {
	pol, err := s.currentPolicy(ctx, req.API)
	if err != nil {
		return err
	}
	d := findDomain(s.cfg.Domains, req.API)
	req.Entries = groupEntries(req.Contract.Contract, d)
	for _, e := range req.Entries {
		if hasEntry(pol, e) {
			continue
		}
		editEntry(&pol, e, func(list []string) []string { return append(slices.Clone(list), e.Group) })
		st.HubEntries = append(st.HubEntries, hubEntry{Domain: req.API, policyEntry: e})
	}
	return tx.PutPolicy(ctx, pol)
}

// ungrantGroup takes back what the Hub added for the request and no
// other group contract in force still justifies.
func (s *Server) ungrantGroup(ctx context.Context, tx plinth.StateTx, st *state, req *Request) error {
	pol, err := s.currentPolicy(ctx, req.API)
	if err != nil {
		return err
	}
	for _, e := range req.Entries {
		he := hubEntry{Domain: req.API, policyEntry: e}
		if !slices.Contains(st.HubEntries, he) || st.justifiedElsewhere(req, he) {
			continue
		}
		editEntry(&pol, e, func(list []string) []string {
			return slices.DeleteFunc(slices.Clone(list), func(g string) bool { return g == e.Group })
		})
		st.HubEntries = slices.DeleteFunc(st.HubEntries, func(x hubEntry) bool { return x == he })
	}
	return tx.PutPolicy(ctx, pol)
}

// hubEntry is a policy entry the Hub added for contracts.
type hubEntry struct {
	Domain string `json:"domain"`
	policyEntry
}

func (st *state) justifiedElsewhere(req *Request, he hubEntry) bool {
	for _, other := range st.Requests {
		if other == req || other.Status != StatusInForce || other.API != he.Domain {
			continue
		}
		if slices.Contains(other.Entries, he.policyEntry) {
			return true
		}
	}
	return false
}
