package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/plinth-data/plinth"
)

// The admin API: service tokens and access policies. The authorizer admits
// only admin groups to /admin/v1/.

// tokenRequest is the body of POST /admin/v1/tokens.
type tokenRequest struct {
	Consumer     string    `json:"consumer"`
	ConsumerType string    `json:"consumerType"`
	API          string    `json:"api"`
	Endpoint     string    `json:"endpoint"`
	Methods      []string  `json:"methods"`
	Environment  string    `json:"environment"`
	ExpiresAt    time.Time `json:"expiresAt"`
	RequestedBy  string    `json:"requestedBy"`
	AuthorisedBy string    `json:"authorisedBy"`
}

func (s *Server) issueToken(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if !s.readStrict(w, r, &req, "application/json") {
		return
	}
	var token string
	var g plinth.Grant
	err := s.accessWrite(r, http.StatusCreated, func(atx plinth.AccessTx) (ids []string, err error) {
		token, g, err = s.authz.IssueServiceTokenIn(r.Context(), atx, plinth.Grant{
			Consumer: req.Consumer, ConsumerType: req.ConsumerType, API: req.API, Endpoint: req.Endpoint,
			Methods: req.Methods, Environment: req.Environment, ExpiresAt: req.ExpiresAt,
			RequestedBy: req.RequestedBy, AuthorisedBy: req.AuthorisedBy,
		})
		return []string{g.ID}, err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log(r).Info("service token issued", "tokenId", g.ID, "consumer", g.Consumer, "api", g.API, "endpoint", g.Endpoint)
	w.Header().Set("Location", plinth.RouteTokens+"/"+g.ID)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]any{"token": token, "grant": g})
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	scope := plinth.CursorScope("tokens")
	limit, after, ok := s.pageParams(w, r, scope)
	if !ok {
		return
	}
	grants, more, err := s.access.Grants(r.Context(), after, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var next any
	if more && len(grants) > 0 {
		next = plinth.EncodeCursor(grants[len(grants)-1].ID, scope)
	}
	if grants == nil {
		grants = []plinth.Grant{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": grants, "nextCursor": next})
}

// pageParams reads limit and cursor, the only parameters of admin lists.
// scope names the list, so its cursors are refused by other lists.
func (s *Server) pageParams(w http.ResponseWriter, r *http.Request, scope string) (int, string, bool) {
	limit, after := plinth.DefaultLimit, ""
	var errs []plinth.FieldError
	for name, vals := range r.URL.Query() {
		switch name {
		case "limit":
			n, err := strconv.Atoi(vals[0])
			if err != nil || n < 1 || n > plinth.MaxLimit || len(vals) > 1 {
				errs = append(errs, plinth.FieldError{Parameter: name, Detail: fmt.Sprintf("must be an integer from 1 to %d", plinth.MaxLimit)})
			}
			limit = n
		case "cursor":
			var err error
			if after, err = plinth.DecodeCursor(vals[0], scope); err != nil || len(vals) > 1 {
				errs = append(errs, plinth.FieldError{Parameter: name, Detail: plinth.ErrBadCursor.Error()})
			}
		default:
			errs = append(errs, plinth.FieldError{Parameter: name, Detail: "unknown query parameter; this list accepts limit, cursor"})
		}
	}
	if len(errs) > 0 {
		s.writeError(w, r, &plinth.ValidationError{Errors: errs})
		return 0, "", false
	}
	return limit, after, true
}

func (s *Server) getToken(w http.ResponseWriter, r *http.Request) {
	returned(r.Context(), chi.URLParam(r, "id"))
	g, err := s.access.Grant(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (s *Server) updateToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Enabled *bool `json:"enabled"`
	}
	if !s.readStrict(w, r, &req, "application/merge-patch+json", "application/json") {
		return
	}
	if req.Enabled == nil {
		s.writeError(w, r, &plinth.ValidationError{Errors: []plinth.FieldError{{Field: "enabled", Detail: "is required"}}})
		return
	}
	id := chi.URLParam(r, "id")
	returned(r.Context(), id)
	var g plinth.Grant
	err := s.accessWrite(r, http.StatusOK, func(atx plinth.AccessTx) (ids []string, err error) {
		g, err = atx.SetGrantEnabled(r.Context(), id, *req.Enabled)
		return []string{id}, err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log(r).Info("service token updated", "tokenId", g.ID, "enabled", g.Enabled)
	writeJSON(w, http.StatusOK, g)
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request) {
	env := s.environment
	for name, vals := range r.URL.Query() {
		if name != "environment" || !validEnvironment(vals[0]) {
			s.writeError(w, r, &plinth.ValidationError{Errors: []plinth.FieldError{{Parameter: name,
				Detail: "the only parameter is environment: development, staging or production"}}})
			return
		}
		env = vals[0]
	}
	ps, err := s.access.Policies(r.Context(), env)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if ps == nil {
		ps = []plinth.AccessPolicy{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"policies": ps})
}

// policyTarget checks the {domain} and {environment} of a policy route.
func (s *Server) policyTarget(w http.ResponseWriter, r *http.Request) (*plinth.Domain, string, bool) {
	name, env := chi.URLParam(r, "domain"), chi.URLParam(r, "environment")
	var d *plinth.Domain
	for _, cand := range s.domains {
		if cand.Name == name {
			d = cand
		}
	}
	if d == nil {
		writeProblem(w, r, http.StatusNotFound, "No domain is called "+name+".",
			plinth.FieldError{Parameter: "domain", Detail: "is not a loaded domain"})
		return nil, "", false
	}
	if !validEnvironment(env) {
		writeProblem(w, r, http.StatusNotFound, "No environment is called "+env+".",
			plinth.FieldError{Parameter: "environment", Detail: "must be development, staging or production"})
		return nil, "", false
	}
	return d, env, true
}

func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request) {
	d, env, ok := s.policyTarget(w, r)
	if !ok {
		return
	}
	var p plinth.AccessPolicy
	if !s.readStrict(w, r, &p, "application/json") {
		return
	}
	var errs []plinth.FieldError
	if p.Domain != "" && p.Domain != d.Name {
		errs = append(errs, plinth.FieldError{Field: "domain", Detail: "must match the path, or be left out"})
	}
	if p.Environment != "" && p.Environment != env {
		errs = append(errs, plinth.FieldError{Field: "environment", Detail: "must match the path, or be left out"})
	}
	for plural := range p.Entities {
		if !slices.ContainsFunc(d.Entities, func(e *plinth.Entity) bool { return e.Plural == plural }) {
			errs = append(errs, plinth.FieldError{Field: "entities." + plural, Detail: "is not an entity of domain " + d.Name})
		}
	}
	if len(errs) > 0 {
		s.writeError(w, r, &plinth.ValidationError{Errors: errs})
		return
	}
	p.Domain, p.Environment = d.Name, env
	err := s.accessWrite(r, http.StatusOK, func(atx plinth.AccessTx) ([]string, error) {
		return []string{p.Domain + "/" + p.Environment}, atx.PutPolicy(r.Context(), p)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log(r).Info("access policy set", "domain", p.Domain, "environment", p.Environment)
	ps, err := s.access.Policies(r.Context(), env)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, stored := range ps {
		if stored.Domain == d.Name {
			writeJSON(w, http.StatusOK, stored)
			return
		}
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request) {
	d, env, ok := s.policyTarget(w, r)
	if !ok {
		return
	}
	returned(r.Context(), d.Name+"/"+env)
	err := s.accessWrite(r, http.StatusNoContent, func(atx plinth.AccessTx) ([]string, error) {
		return []string{d.Name + "/" + env}, atx.DeletePolicy(r.Context(), d.Name, env)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log(r).Info("access policy removed", "domain", d.Name, "environment", env)
	w.WriteHeader(http.StatusNoContent)
}

// accessWrite runs an admin change through the write path, which commits
// it together with its audit record.
func (s *Server) accessWrite(r *http.Request, status int, change func(plinth.AccessTx) ([]string, error)) error {
	audited, err := s.writer.Access(r.Context(), s.origin(r, status), change)
	if err == nil {
		s.committed(r.Context(), audited)
	}
	return err
}

func validEnvironment(env string) bool {
	return env == plinth.EnvDevelopment || env == plinth.EnvStaging || env == plinth.EnvProduction
}

// readStrict decodes a JSON body into v, rejecting unknown fields and wrong
// types with a problem that names the field.
func (s *Server) readStrict(w http.ResponseWriter, r *http.Request, v any, types ...string) bool {
	doc, ok := s.readBody(w, r, types...)
	if !ok {
		return false
	}
	raw, _ := json.Marshal(doc)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return true
	}
	var typeErr *json.UnmarshalTypeError
	var timeErr *time.ParseError
	switch {
	case errors.As(err, &typeErr):
		s.writeError(w, r, &plinth.ValidationError{Errors: []plinth.FieldError{{Field: typeErr.Field, Detail: "must be a " + jsonKind(typeErr.Type.Kind().String())}}})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		s.writeError(w, r, &plinth.ValidationError{Errors: []plinth.FieldError{{Field: field, Detail: "is not a field of this request"}}})
	case errors.As(err, &timeErr):
		s.writeError(w, r, &plinth.ValidationError{Errors: []plinth.FieldError{{Field: "expiresAt", Detail: "must be a date and time in RFC 3339 format such as 2027-01-31T00:00:00Z"}}})
	default:
		s.writeError(w, r, &plinth.ValidationError{Errors: []plinth.FieldError{{Detail: err.Error()}}})
	}
	return false
}

func jsonKind(kind string) string {
	switch kind {
	case "slice":
		return "list"
	case "struct", "map":
		return "object"
	case "bool":
		return "boolean (true or false)"
	case "int", "int64":
		return "integer"
	}
	return kind
}

// searchAudit answers GET /admin/v1/audit: "who looked at resident 12345
// this month" is ?entity_id=12345&since=2026-11-01T00:00:00Z.
func (s *Server) searchAudit(w http.ResponseWriter, r *http.Request) {
	q := plinth.AuditQuery{Limit: plinth.DefaultLimit}
	var cursor string
	var errs []plinth.FieldError
	bad := func(name, detail string) { errs = append(errs, plinth.FieldError{Parameter: name, Detail: detail}) }
	for name, vals := range r.URL.Query() {
		if len(vals) != 1 {
			bad(name, "must be given once")
			continue
		}
		v := vals[0]
		switch name {
		case "user":
			q.User = v
		case "entity_id":
			q.EntityID = v
		case "domain":
			q.Domain = v
		case "since", "until":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				bad(name, "must be a date and time in RFC 3339 format such as 2026-11-01T00:00:00Z")
			}
			if name == "since" {
				q.Since = t
			} else {
				q.Until = t
			}
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > plinth.MaxLimit {
				bad(name, fmt.Sprintf("must be an integer from 1 to %d", plinth.MaxLimit))
			}
			q.Limit = n
		case "cursor":
			cursor = v
		default:
			bad(name, "unknown query parameter; this list accepts user, entity_id, domain, since, until, limit, cursor")
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		bad("until", "must be later than since")
	}
	scope := auditScope(q)
	var position string
	if cursor != "" {
		text, err := plinth.DecodeCursor(cursor, scope)
		if err != nil {
			bad("cursor", err.Error())
		}
		position = text
	}
	if len(errs) > 0 {
		s.writeError(w, r, &plinth.ValidationError{Errors: errs})
		return
	}
	page, n, next, err := s.auditSearch.SearchAudit(r.Context(), q, position)
	if errors.Is(err, plinth.ErrBadCursor) {
		s.writeError(w, r, &plinth.ValidationError{Errors: []plinth.FieldError{{Parameter: "cursor", Detail: plinth.ErrBadCursor.Error()}}})
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var nextCursor any
	if next != "" {
		nextCursor = plinth.EncodeCursor(next, scope)
	}
	if e := entryFrom(r.Context()); e != nil {
		e.rec.Count = n
	}
	writeJSON(w, http.StatusOK, map[string]any{"auditRecords": page, "nextCursor": nextCursor})
}

// AuditSearcher searches the audit trail for GET /admin/v1/audit.
// audit.Trail implements it over every store's chain.
type AuditSearcher interface {
	// SearchAudit returns one page of the records q selects (a JSON array),
	// how many it holds, and the position after them ("" when none
	// follow). position is "" for the first page, else a next from before;
	// one it did not make is an error wrapping plinth.ErrBadCursor.
	SearchAudit(ctx context.Context, q plinth.AuditQuery, position string) (page any, n int, next string, err error)
}

// storeSearch searches one store's chain: the AuditSearcher of a Config
// that gives only Audit.
type storeSearch struct{ st plinth.AuditStore }

func (a storeSearch) SearchAudit(ctx context.Context, q plinth.AuditQuery, position string) (any, int, string, error) {
	if position != "" {
		n, err := strconv.ParseInt(position, 10, 64)
		if err != nil || n < 1 {
			return nil, 0, "", plinth.ErrBadCursor
		}
		q.After = n
	}
	recs, more, err := a.st.AuditRecords(ctx, q)
	if err != nil {
		return nil, 0, "", err
	}
	next := ""
	if more && len(recs) > 0 {
		next = strconv.FormatInt(recs[len(recs)-1].Sequence, 10)
	}
	if recs == nil {
		recs = []plinth.AuditRecord{}
	}
	return recs, len(recs), next, nil
}

// auditScope binds audit search cursors to the search's filters.
func auditScope(q plinth.AuditQuery) string {
	return plinth.CursorScope("audit", "user="+q.User, "entity_id="+q.EntityID, "domain="+q.Domain,
		"since="+q.Since.String(), "until="+q.Until.String())
}
