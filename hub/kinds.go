package hub

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
)

// Request kinds besides access requests (Kind ""), as the guidelines
// name them.
const (
	// KindException: a legacy application that cannot consume APIs gets
	// time-boxed direct read access, approved by the owner and carried
	// out as a break-glass support grant.
	KindException = "exception"
	// KindEndpoint: an endpoint or entity the API does not cover yet; the
	// owner answers.
	KindEndpoint = "endpoint"
)

// More statuses of those kinds.
const (
	StatusOpening  = "opening"  // an exception's support grant is being made
	StatusOpened   = "opened"   // an exception's support grant exists
	StatusPlanned  = "planned"  // the owner will add the endpoint or entity
	StatusDeclined = "declined" // the owner will not
)

// MaxExceptionHours bounds an exception's direct access, as break-glass
// support access is bounded by default.
const MaxExceptionHours = 8

// openedAccess is what the Hub keeps of a support grant: while it is
// being made, only when that began.
type openedAccess struct {
	ID        string    `json:"id,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	Opening   time.Time `json:"opening,omitzero"`
}

// openingTimeout is how long a claim to open an exception holds: a replica
// that stopped while making the grant does not keep it claimed for ever.
const openingTimeout = 10 * time.Minute

// mayOpen reports whether the exception waits to be opened at now.
func (req *Request) mayOpen(now time.Time) bool {
	switch req.Status {
	case StatusApproved:
		return true
	case StatusOpening:
		return req.Opened != nil && now.Sub(req.Opened.Opening) > openingTimeout
	}
	return false
}

// kindForm is the form of a request of kind k to a.
func (s *Server) kindForm(k string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := s.apiOf(w, r)
		if a == nil {
			return
		}
		s.render(w, r, http.StatusOK, k, s.kindFormData(a, &Request{Kind: k, Hours: 2}, ""))
	}
}

func (s *Server) kindFormData(a *apiEntry, req *Request, problem string) map[string]any {
	title := "Ask for an exception to use " + a.Domain.Name + " directly"
	if req.Kind == KindEndpoint {
		title = "Ask for an endpoint or entity of " + a.Domain.Name
	}
	return map[string]any{"Title": title, "API": a, "Req": req, "Problem": problem, "Bases": Article6Bases,
		"Conditions": Article9Conditions, "MaxHours": MaxExceptionHours, "Exceptions": s.cfg.Support != nil}
}

// fileKind files an exception or endpoint request from its form.
func (s *Server) fileKind(k string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := s.apiOf(w, r)
		if a == nil {
			return
		}
		req, problems := s.readKind(r, a, k)
		if len(problems) > 0 {
			s.render(w, r, http.StatusUnprocessableEntity, k, s.kindFormData(a, req, strings.Join(problems, "; ")))
			return
		}
		err := s.change(r, a.Domain.Name, k+" request "+req.ID+" filed", func(_ context.Context, st *state, _ plinth.StateTx) error {
			st.Requests = append(st.Requests, req)
			return nil
		})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		http.Redirect(w, r, Base+"/requests/"+req.ID, http.StatusSeeOther)
	}
}

// readKind reads and checks an exception or endpoint request, naming
// each problem.
func (s *Server) readKind(r *http.Request, a *apiEntry, k string) (*Request, []string) {
	f := r.PostForm
	req := &Request{ID: uuid.NewString(), Kind: k, Status: StatusPending, Requester: sessionFrom(r).Principal, API: a.Domain.Name,
		Environment: s.cfg.Environment, Purpose: strings.TrimSpace(f.Get("purpose")), Consumer: strings.TrimSpace(f.Get("consumer")),
		Need: strings.TrimSpace(f.Get("need")), LegalBasis: f.Get("legalBasis"), SpecialCondition: f.Get("specialCondition"),
		CreatedAt: plinth.Now()}
	var problems []string
	need := func(name, v string, max int) {
		if v == "" || len(v) > max {
			problems = append(problems, fmt.Sprintf("%s is required (at most %d characters)", name, max))
		}
	}
	need("purpose", req.Purpose, 2000)
	if k == KindEndpoint {
		need("need", req.Need, 2000)
		return req, problems
	}
	if s.cfg.Support == nil {
		problems = append(problems, "this deployment's store offers no direct read access, so exceptions cannot be carried out here")
	}
	need("consumer", req.Consumer, 200)
	if req.Requester.Email == "" {
		problems = append(problems, "your sign-in carries no e-mail address, which direct access is granted to")
	}
	n, err := strconv.Atoi(f.Get("hours"))
	if err != nil || n < 1 || n > MaxExceptionHours {
		problems = append(problems, fmt.Sprintf("hours must be a whole number from 1 to %d", MaxExceptionHours))
	}
	req.Hours = n
	if !slices.Contains(Article6Bases, req.LegalBasis) {
		problems = append(problems, "legalBasis must be one of "+strings.Join(Article6Bases, ", "))
	}
	// Direct access reaches every entity: special-category fields need an
	// Article 9 condition.
	switch {
	case a.SpecialCount > 0 && !slices.Contains(Article9Conditions, req.SpecialCondition):
		problems = append(problems, "specialCondition: "+a.Domain.Name+" holds special-category fields, so an Article 9 condition is required")
	case a.SpecialCount == 0 && req.SpecialCondition != "":
		problems = append(problems, "specialCondition: "+a.Domain.Name+" holds no special-category fields")
	}
	return req, problems
}

// decideKind is an owner's decision on an exception or endpoint request.
func decideKind(req *Request, decision string) error {
	switch {
	case req.Kind == KindException && decision == "approve":
		req.Status = StatusApproved
	case req.Kind == KindEndpoint && decision == "approve":
		req.Status = StatusPlanned
	case req.Kind == KindException && decision == "reject":
		req.Status = StatusRejected
	case req.Kind == KindEndpoint && decision == "reject":
		req.Status = StatusDeclined
	default:
		return refused(http.StatusUnprocessableEntity, "decision must be approve or reject")
	}
	return nil
}

// openException carries out an approved exception for its requester: a
// support grant, made once. The request is claimed first (opening), so
// two clicks, on any replicas, make one grant; a grant that fails hands
// the request back (approved).
func (s *Server) openException(w http.ResponseWriter, r *http.Request) {
	p := sessionFrom(r).Principal
	id := r.PathValue("id")
	domain := s.domainOf(r, id)
	var req Request
	err := s.change(r, domain, "exception "+id+": opening direct access", func(_ context.Context, st *state, _ plinth.StateTx) error {
		rq, err := s.visible(r, st)
		switch {
		case err != nil:
			return err
		case rq.Kind != KindException || !rq.mayOpen(time.Now()):
			return refused(http.StatusConflict, "the request is not an approved exception waiting to be used (it is %s)", rq.Status)
		case rq.Requester.Subject != p.Subject:
			return refused(http.StatusForbidden, "only the requester opens the access the exception grants")
		case s.cfg.Support == nil:
			return refused(http.StatusNotImplemented, "this deployment's store offers no direct read access")
		}
		rq.Status, rq.Opened = StatusOpening, &openedAccess{Opening: plinth.Now()}
		req = *rq
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	approver := req.DecidedBy.Email
	if approver == "" {
		approver = req.DecidedBy.Subject
	}
	access, grantErr := s.cfg.Support.GrantSupportAccess(r.Context(), plinth.SupportAccessRequest{User: p.Email, Domain: req.API, GrantedBy: approver,
		Reason:      fmt.Sprintf("Developer Hub exception %s for %s: %s", req.ID, req.Consumer, req.Purpose),
		Environment: s.cfg.Environment, CorrelationID: correlationFrom(r.Context()), TTL: time.Duration(req.Hours) * time.Hour})
	what := "exception " + id + ": direct access opened"
	if grantErr != nil {
		what = "exception " + id + ": the support grant failed"
	}
	err = s.change(r, domain, what, func(_ context.Context, st *state, _ plinth.StateTx) error {
		rq := st.request(id)
		if rq == nil || rq.Status != StatusOpening {
			return fmt.Errorf("exception %s changed while its access was opened", id)
		}
		now := plinth.Now()
		if grantErr != nil {
			rq.Status, rq.Opened = StatusApproved, nil
			rq.History = append(rq.History, Step{At: now, By: p.Subject, What: "opening direct access failed: " + grantErr.Error()})
			return nil
		}
		rq.Status, rq.Opened = StatusOpened, &openedAccess{ID: access.ID, ExpiresAt: access.ExpiresAt.UTC()}
		rq.History = append(rq.History, Step{At: now, By: p.Subject, What: "direct access opened as support grant " + access.ID + " until " + access.ExpiresAt.UTC().Format(time.RFC3339)})
		return nil
	})
	switch {
	case err != nil:
		s.fail(w, r, err)
	case grantErr != nil:
		s.fail(w, r, grantErr)
	default:
		s.render(w, r, http.StatusOK, "opened", map[string]any{"Title": "Direct access opened", "ID": id, "Access": access})
	}
}
