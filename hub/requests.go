package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
)

// errRefused is a step the user may not take or got wrong; its text is
// shown on the page.
type errRefused struct {
	status int
	msg    string
}

func (e *errRefused) Error() string { return e.msg }

func refused(status int, format string, args ...any) error {
	return &errRefused{status, fmt.Sprintf(format, args...)}
}

// change runs one step of a signed-in user: see step. A refused step is
// audited as denied and changes nothing.
func (s *Server) change(r *http.Request, domain, what string, fn func(ctx context.Context, st *state, tx plinth.StateTx) error) error {
	p := sessionFrom(r).Principal
	o := plinth.Origin{Principal: p, CorrelationID: correlationFrom(r.Context()), Audit: func(ids []string) plinth.AuditRecord {
		rec := s.auditRecord(r, p, http.StatusSeeOther, plinth.DecisionAllow, what, domain)
		rec.RecordIDs, rec.Count = ids, len(ids)
		return rec
	}}
	err := s.step(r.Context(), o, func(ctx context.Context, st *state, tx plinth.StateTx) ([]string, error) {
		return nil, fn(ctx, st, tx)
	})
	var ref *errRefused
	if errors.As(err, &ref) {
		s.audit(r, p, what, ref.status, plinth.DecisionDeny, what+": "+ref.msg, domain)
	}
	return err
}

// errUnchanged is what a step's change returns when, on the state as it
// now is, there is nothing to do: nothing is committed, not even an audit
// record.
var errUnchanged = errors.New("nothing to change")

// maxAttempts bounds how often a step is run again because other steps
// changed the state first.
const maxAttempts = 20

// step runs fn on the state as last committed and commits what it changed
// (the state, grants, policies) with the step's audit record, swapping the
// state in only if no other step (of this or another replica) changed it
// in the meantime; if one did, fn runs again on the new state.
func (s *Server) step(ctx context.Context, o plinth.Origin, fn func(ctx context.Context, st *state, tx plinth.StateTx) ([]string, error)) error {
	return retrySwaps(ctx, func() error {
		c, found, err := s.cfg.Store.Checkpoint(ctx, stateCheckpoint)
		if err != nil {
			return err
		}
		st, err := decodeState(c, found)
		if err != nil {
			return err
		}
		_, err = s.writer.State(ctx, "hub", o, func(tx plinth.StateTx) ([]string, error) {
			ids, err := fn(ctx, st, tx)
			if err != nil {
				return nil, err
			}
			b, err := st.encode()
			if err != nil {
				return nil, err
			}
			return ids, tx.SwapCheckpoint(ctx, stateCheckpoint, c.Value, found, b)
		})
		return err
	})
}

// retrySwaps runs try again while it fails because a checkpoint it swaps
// changed first (plinth.ErrVersionConflict), up to maxAttempts times,
// backing off a little, at random, so that racing steps spread out.
func retrySwaps(ctx context.Context, try func() error) error {
	for attempt := 1; ; attempt++ {
		err := try()
		if !errors.Is(err, plinth.ErrVersionConflict) || attempt == maxAttempts {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt*(1+mrand.IntN(10))) * time.Millisecond):
		}
	}
}

// fail shows a failed step to the user.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ref *errRefused
	var verr *plinth.ValidationError
	switch {
	case errors.As(err, &ref):
		s.render(w, r, ref.status, "error", map[string]any{"Title": http.StatusText(ref.status), "Message": ref.msg})
	case errors.As(err, &verr):
		s.render(w, r, http.StatusUnprocessableEntity, "error", map[string]any{"Title": "Not accepted", "Message": verr.Error()})
	default:
		s.logger.Error("hub step failed", "error", err, "correlationId", correlationFrom(r.Context()))
		s.render(w, r, http.StatusServiceUnavailable, "error", map[string]any{"Title": "Unavailable", "Message": "The step could not be saved; nothing changed. Try again shortly."})
	}
}

// domainOf names the API of a request for its audit records.
func (s *Server) domainOf(r *http.Request, id string) string {
	if st, err := s.readState(r.Context()); err == nil {
		if req := st.request(id); req != nil {
			return req.API
		}
	}
	return ""
}

func (s *Server) readState(ctx context.Context) (*state, error) { return loadState(ctx, s.cfg.Store) }

func (s *Server) keysPage(w http.ResponseWriter, r *http.Request) {
	st, err := s.readState(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "keys", map[string]any{"Title": "Your signing keys", "Keys": st.Keys[sessionFrom(r).Principal.Subject]})
}

// addKey registers a public key; the user's earlier keys are revoked
// (contracts they signed stay valid until they expire).
func (s *Server) addKey(w http.ResponseWriter, r *http.Request) {
	pub, err := DecodePublicKey(r.PostFormValue("publicKey"))
	if err != nil {
		s.fail(w, r, refused(http.StatusUnprocessableEntity, "publicKey: %v; make one with plinth contract keygen", err))
		return
	}
	subject := sessionFrom(r).Principal.Subject
	err = s.change(r, "", "key registered "+KeyID(pub), func(_ context.Context, st *state, _ plinth.StateTx) error {
		now := plinth.Now()
		keys := st.Keys[subject]
		for i := range keys {
			if keys[i].PublicKey == EncodePublicKey(pub) {
				return refused(http.StatusConflict, "this key is registered already")
			}
			if keys[i].RevokedAt.IsZero() {
				keys[i].RevokedAt = now
			}
		}
		st.Keys[subject] = append(keys, Key{PublicKey: EncodePublicKey(pub), ID: KeyID(pub), AddedAt: now})
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Base+"/keys", http.StatusSeeOther)
}

func (s *Server) requestForm(w http.ResponseWriter, r *http.Request) {
	a := s.apiOf(w, r)
	if a == nil {
		return
	}
	s.render(w, r, http.StatusOK, "request", s.requestFormData(a, nil, ""))
}

func (s *Server) requestFormData(a *apiEntry, req *Request, problem string) map[string]any {
	if req == nil {
		req = &Request{RetentionDays: 30, DurationDays: 90, GrantKind: GrantService, Environment: s.cfg.Environment}
	}
	return map[string]any{"Title": "Request access to " + a.Domain.Name, "API": a, "Req": req, "Problem": problem,
		"Bases": Article6Bases, "Conditions": Article9Conditions, "Operations": contractOperations}
}

// createRequest files an access request from the form.
func (s *Server) createRequest(w http.ResponseWriter, r *http.Request) {
	a := s.apiOf(w, r)
	if a == nil {
		return
	}
	req, problems := s.readRequest(r, a)
	if len(problems) > 0 {
		s.render(w, r, http.StatusUnprocessableEntity, "request", s.requestFormData(a, req, strings.Join(problems, "; ")))
		return
	}
	err := s.change(r, a.Domain.Name, "access request "+req.ID+" filed", func(_ context.Context, st *state, _ plinth.StateTx) error {
		st.Requests = append(st.Requests, req)
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Base+"/requests/"+req.ID, http.StatusSeeOther)
}

// readRequest reads and checks the request form, naming each problem.
func (s *Server) readRequest(r *http.Request, a *apiEntry) (*Request, []string) {
	f := r.PostForm
	p := sessionFrom(r).Principal
	req := &Request{ID: uuid.NewString(), Status: StatusPending, Requester: p, API: a.Domain.Name,
		Environment: f.Get("environment"), Entities: f["entities"], Operations: f["operations"],
		Purpose: strings.TrimSpace(f.Get("purpose")), LegalBasis: f.Get("legalBasis"), SpecialCondition: f.Get("specialCondition"),
		Consumer: strings.TrimSpace(f.Get("consumer")), GrantKind: f.Get("grantKind"), Group: strings.TrimSpace(f.Get("group")),
		CreatedAt: plinth.Now()}
	var problems []string
	num := func(name string, into *int, max int) {
		n, err := strconv.Atoi(f.Get(name))
		if err != nil || n < 1 || n > max {
			problems = append(problems, fmt.Sprintf("%s must be a whole number of days from 1 to %d", name, max))
		}
		*into = n
	}
	num("retentionDays", &req.RetentionDays, 3650)
	num("durationDays", &req.DurationDays, 365)
	if req.Environment != s.cfg.Environment {
		problems = append(problems, "environment must be "+s.cfg.Environment+": this Hub grants access in its own environment")
	}
	if req.GrantKind == GrantGroup && slices.Contains(req.Operations, string(plinth.OpReport)) && len(req.Entities) != len(a.Entities) {
		problems = append(problems, "operations: report access for a group covers the whole domain; choose every entity, or ask for a service token")
	}
	if len(req.Purpose) > 2000 || len(req.Consumer) > 200 {
		problems = append(problems, "purpose (2000) or consumer (200 characters) is too long")
	}
	// The terms are checked as the contract will be.
	draft := req.terms(Party{Subject: p.Subject, PublicKey: EncodePublicKey(make([]byte, 32))}, Party{Subject: "owner", PublicKey: EncodePublicKey(make([]byte, 32))}, time.Now())
	if err := draft.Validate(); err != nil {
		problems = append(problems, strings.TrimPrefix(err.Error(), "contract: "))
	} else if err := draft.CheckAgainst(s.cfg.Domains); err != nil {
		problems = append(problems, strings.TrimPrefix(err.Error(), "contract: "))
	}
	return req, problems
}

// terms are the contract an approved request becomes.
func (req *Request) terms(requester, approver Party, now time.Time) Contract {
	now = now.UTC().Truncate(time.Second)
	return Contract{Format: ContractFormat, ID: "contract-" + req.ID, Request: req.ID, Requester: requester, Approver: approver,
		API: req.API, Environment: req.Environment, Entities: req.Entities, Operations: req.Operations, Purpose: req.Purpose,
		LegalBasis: req.LegalBasis, SpecialCondition: req.SpecialCondition, RetentionDays: req.RetentionDays,
		Consumer: req.Consumer, GrantKind: req.GrantKind, Group: req.Group,
		IssuedAt: now.Format(time.RFC3339), ExpiresAt: now.AddDate(0, 0, req.DurationDays).Format(time.RFC3339)}
}

func party(p plinth.Principal, k Key) Party {
	return Party{Subject: p.Subject, Email: p.Email, Name: p.Name, PublicKey: k.PublicKey}
}

func (s *Server) requestsPage(w http.ResponseWriter, r *http.Request) {
	st, err := s.readState(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := sessionFrom(r).Principal
	var mine, toDecide []*Request
	for i := len(st.Requests) - 1; i >= 0; i-- {
		req := st.Requests[i]
		if req.Requester.Subject == p.Subject {
			mine = append(mine, req)
		}
		if a := s.api(req.API); a != nil && s.isOwner(p, a) && req.Requester.Subject != p.Subject {
			toDecide = append(toDecide, req)
		}
	}
	s.render(w, r, http.StatusOK, "requests", map[string]any{"Title": "Access requests", "Mine": mine, "Owned": toDecide})
}

// visible returns the request if the user may see it: its requester, the
// API's owners.
func (s *Server) visible(r *http.Request, st *state) (*Request, error) {
	req := st.request(r.PathValue("id"))
	p := sessionFrom(r).Principal
	if req == nil {
		return nil, refused(http.StatusNotFound, "there is no access request %s", r.PathValue("id"))
	}
	if a := s.api(req.API); req.Requester.Subject != p.Subject && (a == nil || !s.isOwner(p, a)) {
		return nil, refused(http.StatusForbidden, "only the requester and the owners of %s may see this request", req.API)
	}
	return req, nil
}

func (s *Server) requestPage(w http.ResponseWriter, r *http.Request) {
	st, err := s.readState(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req, err := s.visible(r, st)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := sessionFrom(r).Principal
	a := s.api(req.API)
	data := map[string]any{"Title": "Access request", "Req": req, "API": a,
		"CanDecide": req.Status == StatusPending && a != nil && s.isOwner(p, a) && req.Requester.Subject != p.Subject,
		"CanRevoke": req.Kind == "" && req.Status == StatusInForce && (req.Requester.Subject == p.Subject || (a != nil && s.isOwner(p, a))),
		"CanOpen":   req.Kind == KindException && req.mayOpen(time.Now()) && req.Requester.Subject == p.Subject && s.cfg.Support != nil}
	if req.Contract != nil {
		file, _ := req.Contract.Encode()
		data["ContractJSON"] = string(file)
		if role := roleOf(req.Contract.Contract, p); role != "" && !slices.ContainsFunc(req.Contract.Signatures, func(x Signature) bool { return x.Role == role }) && req.Status == StatusApproved {
			data["SignAs"] = role
			unsigned := *req.Contract
			unsigned.Signatures = nil
			data["UnsignedJSON"] = mustEncode(unsigned)
			terms, _ := Canonical(req.Contract.Contract)
			data["Terms"] = string(terms)
		}
	}
	s.render(w, r, http.StatusOK, "requestview", data)
}

func mustEncode(c SignedContract) string {
	b, _ := c.Encode()
	return string(b)
}

// roleOf is the user's role in the contract, if any.
func roleOf(c Contract, p plinth.Principal) string {
	switch p.Subject {
	case c.Requester.Subject:
		return RoleRequester
	case c.Approver.Subject:
		return RoleApprover
	}
	return ""
}

func (s *Server) contractFile(w http.ResponseWriter, r *http.Request) {
	st, err := s.readState(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req, err := s.visible(r, st)
	if err != nil || req.Contract == nil {
		if err == nil {
			err = refused(http.StatusNotFound, "the request has no contract yet")
		}
		s.fail(w, r, err)
		return
	}
	b, _ := req.Contract.Encode()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+req.Contract.Contract.ID+`.json"`)
	_, _ = w.Write(b)
}

// decide approves or rejects a pending request. Approving drafts the
// contract naming both parties' current keys; both then sign it.
func (s *Server) decide(w http.ResponseWriter, r *http.Request) {
	p := sessionFrom(r).Principal
	decision, comment := r.PostFormValue("decision"), strings.TrimSpace(r.PostFormValue("comment"))
	id := r.PathValue("id")
	err := s.change(r, s.domainOf(r, id), "request "+id+": "+decision, func(_ context.Context, st *state, _ plinth.StateTx) error {
		req, err := s.visible(r, st)
		if err != nil {
			return err
		}
		a := s.api(req.API)
		switch {
		case a == nil:
			return refused(http.StatusConflict, "%s is no longer served", req.API)
		case !s.isOwner(p, a):
			return refused(http.StatusForbidden, "only the owners of %s (groups %s) may decide", req.API, strings.Join(a.OwnerGroups, ", "))
		case req.Requester.Subject == p.Subject:
			return refused(http.StatusForbidden, "you cannot decide your own request")
		case req.Status != StatusPending:
			return refused(http.StatusConflict, "the request is %s already", req.Status)
		case comment == "":
			return refused(http.StatusUnprocessableEntity, "comment is required: say why")
		}
		now := plinth.Now()
		switch {
		case req.Kind != "":
			if err := decideKind(req, decision); err != nil {
				return err
			}
		case decision == "reject":
			req.Status = StatusRejected
		case decision == "approve":
			rk, ok := st.currentKey(req.Requester.Subject)
			if !ok {
				return refused(http.StatusConflict, "the requester has no signing key registered; they must add one under Keys first")
			}
			ak, ok := st.currentKey(p.Subject)
			if !ok {
				return refused(http.StatusConflict, "you have no signing key registered; add one under Keys first")
			}
			c := req.terms(party(req.Requester, rk), party(p, ak), now)
			if err := c.Validate(); err != nil {
				return refused(http.StatusUnprocessableEntity, "%v", err)
			}
			req.Status = StatusApproved
			req.Contract = &SignedContract{Contract: c, Signatures: []Signature{}}
		default:
			return refused(http.StatusUnprocessableEntity, "decision must be approve or reject")
		}
		req.DecidedBy, req.Comment, req.DecidedAt = &p, comment, now
		req.History = append(req.History, Step{At: now, By: p.Subject, What: decision + ": " + comment})
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Base+"/requests/"+id, http.StatusSeeOther)
}

// sign takes a party's signature: the signed contract file (from plinth
// contract sign, or the browser). When both have signed, the grants are
// made in the same transaction and their tokens shown once.
func (s *Server) sign(w http.ResponseWriter, r *http.Request) {
	p := sessionFrom(r).Principal
	id := r.PathValue("id")
	var tokens []issued
	domain := s.domainOf(r, id)
	inForce := false
	err := s.change(r, domain, "contract of request "+id+" signed", func(ctx context.Context, st *state, tx plinth.StateTx) error {
		req, err := s.visible(r, st)
		if err != nil {
			return err
		}
		if req.Status != StatusApproved || req.Contract == nil {
			return refused(http.StatusConflict, "the request is %s: there is nothing to sign", req.Status)
		}
		role := roleOf(req.Contract.Contract, p)
		if role == "" {
			return refused(http.StatusForbidden, "only the requester and the approver sign the contract")
		}
		sig := Signature{Role: role, Signature: strings.TrimSpace(r.PostFormValue("signature"))}
		if sig.Signature == "" {
			if sig, err = signatureFrom(r.PostFormValue("signed"), req.Contract.Contract, role); err != nil {
				return err
			}
		}
		if err := req.Contract.AddSignature(sig); err != nil {
			return refused(http.StatusUnprocessableEntity, "%v", err)
		}
		now := plinth.Now()
		req.History = append(req.History, Step{At: now, By: p.Subject, What: "signed as " + role})
		v, err := req.Contract.Verify()
		if err != nil || !v.Complete {
			return err
		}
		what := ""
		if req.GrantKind == GrantGroup {
			if err := s.grantGroup(ctx, tx, st, req); err != nil {
				return err
			}
			what = "in force: group " + req.Group + " added to the access policy"
		} else {
			if tokens, err = s.grant(ctx, tx, req); err != nil {
				return err
			}
			what = fmt.Sprintf("in force: %d grants made", len(tokens))
		}
		req.Status, inForce = StatusInForce, true
		req.History = append(req.History, Step{At: now, By: p.Subject, What: what})
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if inForce {
		s.render(w, r, http.StatusOK, "tokens", map[string]any{"Title": "Contract in force", "ID": id, "Tokens": tokens})
		return
	}
	http.Redirect(w, r, Base+"/requests/"+id, http.StatusSeeOther)
}

// signatureFrom reads a party's signature from a signed contract file,
// whose terms must be those of the Hub's contract byte for byte.
func signatureFrom(file string, c Contract, role string) (Signature, error) {
	sc, err := ParseContractFile([]byte(strings.ReplaceAll(strings.TrimSpace(file), "\r\n", "\n")))
	if err != nil {
		return Signature{}, refused(http.StatusUnprocessableEntity, "signed: %v", err)
	}
	got, _ := Canonical(sc.Contract)
	want, _ := Canonical(c)
	if !bytes.Equal(got, want) {
		return Signature{}, refused(http.StatusUnprocessableEntity, "signed: the file's terms differ from this request's contract")
	}
	for _, sig := range sc.Signatures {
		if sig.Role == role {
			return sig, nil
		}
	}
	return Signature{}, refused(http.StatusUnprocessableEntity, "signed: the file holds no %s signature", role)
}

type issued struct {
	Endpoint, Method, Token, GrantID string
}

// grant makes the service-token grants the contract describes, limited
// to its expiry, in the step's transaction.
func (s *Server) grant(ctx context.Context, tx plinth.StateTx, req *Request) ([]issued, error) {
	c := req.Contract.Contract
	var out []issued
	for _, g := range serviceGrants(c, c.Expiry()) {
		tok, made, err := s.cfg.Authorizer.IssueServiceTokenIn(ctx, tx, g)
		if err != nil {
			return nil, err
		}
		req.Grants = append(req.Grants, made.ID)
		out = append(out, issued{Endpoint: made.Endpoint, Method: made.Methods[0], Token: tok, GrantID: made.ID})
	}
	return out, nil
}

// revoke ends a contract in force: its grants are disabled.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	p := sessionFrom(r).Principal
	id := r.PathValue("id")
	domain := s.domainOf(r, id)
	err := s.change(r, domain, "contract of request "+id+" revoked", func(ctx context.Context, st *state, tx plinth.StateTx) error {
		req, err := s.visible(r, st)
		if err != nil {
			return err
		}
		if req.Status != StatusInForce {
			return refused(http.StatusConflict, "the request is %s: there is no contract in force", req.Status)
		}
		a := s.api(req.API)
		if req.Requester.Subject != p.Subject && (a == nil || !s.isOwner(p, a)) {
			return refused(http.StatusForbidden, "only the requester and the owners may revoke")
		}
		if err := s.end(ctx, tx, st, req, StatusRevoked); err != nil {
			return err
		}
		req.History = append(req.History, Step{At: plinth.Now(), By: p.Subject, What: "revoked"})
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Base+"/requests/"+id, http.StatusSeeOther)
}

// end takes back what a contract in force gave: its service-token grants
// are disabled; its group's policy entries go unless another contract in
// force still justifies them.
func (s *Server) end(ctx context.Context, tx plinth.StateTx, st *state, req *Request, status string) error {
	for _, gid := range req.Grants {
		if _, err := tx.SetGrantEnabled(ctx, gid, false); err != nil && !errors.Is(err, plinth.ErrNotFound) {
			return err
		}
	}
	req.Status = status
	if req.GrantKind == GrantGroup {
		return s.ungrantGroup(ctx, tx, st, req)
	}
	return nil
}

// SweepExpired ends the contracts in force whose expiry has passed at now:
// a group contract's policy entries go (service-token grants expire by
// themselves, and are disabled too). serve runs it every minute. It
// returns how many contracts it ended.
func (s *Server) SweepExpired(ctx context.Context, now time.Time) (int, error) {
	st, err := s.readState(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, req := range st.Requests {
		if req.Status != StatusInForce || now.Before(req.Contract.Contract.Expiry()) {
			continue
		}
		id := req.ID
		o := plinth.Origin{Principal: plinth.Principal{Subject: "plinth-hub"}, SourceSystem: "contract of request " + id + " expired"}
		err = s.step(ctx, o, func(ctx context.Context, st *state, tx plinth.StateTx) ([]string, error) {
			req := st.request(id)
			if req == nil || req.Status != StatusInForce {
				return nil, errUnchanged // another replica ended it first
			}
			if err := s.end(ctx, tx, st, req, StatusExpired); err != nil {
				return nil, err
			}
			req.History = append(req.History, Step{At: plinth.Now(), By: "plinth-hub", What: "expired"})
			return []string{id}, nil
		})
		switch {
		case errors.Is(err, errUnchanged):
		case err != nil:
			return n, err
		default:
			n++
		}
	}
	return n, nil
}
