package http

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/plinth-data/plinth"
)

// Auditor makes audit records durable; *audit.Auditor implements it.
type Auditor interface {
	// Record appends one record and returns when it is durable. An error
	// means the request must fail closed.
	Record(ctx context.Context, rec plinth.AuditRecord) (plinth.AuditRecord, error)
	// Committed reports records appended inside a write transaction,
	// after it committed (for mirroring).
	Committed(recs ...plinth.AuditRecord)
}

// directAuditor is an Auditor that lets a request append its own record
// with the read it records while few records are waiting
// (audit.Auditor.Direct).
type directAuditor interface {
	Direct() (done func(), ok bool)
}

// directMax is how many audited requests may be served at once for a read
// to append its own record with the read: beyond that, each commit of its
// own would cost the database more than the round trip it saves, and the
// auditor's group commit shares one among them (BENCHMARKS.md, "A read
// and its record in one statement").
const directMax = 2

// directReadTimeout bounds a read that appends its own audit record (the
// auditor's commits are bounded alike).
const directReadTimeout = 10 * time.Second

// direct returns the store's audited reads, the request's audit entry and
// the call that ends the read, when the read may append the request's
// record itself: the store can (plinth.AuditedReader), the auditor lets it
// (directAuditor) and at most directMax audited requests are being served.
// The read's record then says what the answer will (200 or 404); when the
// store did not append it, the answer's status is recorded as for any
// request.
func (s *Server) direct(ctx context.Context) (plinth.AuditedReader, *auditEntry, func(), bool) {
	e := entryFrom(ctx)
	g, canRead := s.store.(plinth.AuditedReader)
	d, canDirect := s.auditor.(directAuditor)
	if e == nil || e.recorded || !canRead || !canDirect || s.auditing.Load() > directMax {
		return nil, nil, nil, false
	}
	done, ok := d.Direct()
	return g, e, done, ok
}

// directContext is the context of a read that appends its own record: not
// cancelled with the request, since once the statement is sent its outcome
// must be known, or the request could be recorded twice.
func directContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), directReadTimeout)
}

// appendedWithRead marks the request's record as appended with its read,
// when the store says it was, and hands it to the auditor (mirror, chain).
func (s *Server) appendedWithRead(e *auditEntry, stored plinth.AuditRecord) {
	if stored.Stored() {
		e.recorded = true
		s.auditor.Committed(stored)
	}
}

// auditEntry is the audit record of one request, filled in as it is served.
// Exactly one record is written per request that touches data or access:
// inside the write transaction for successful writes, otherwise when the
// response status is decided, before any of the body is sent.
type auditEntry struct {
	rec      plinth.AuditRecord
	start    time.Time
	recorded bool
}

type auditKey struct{}

func entryFrom(ctx context.Context) *auditEntry {
	e, _ := ctx.Value(auditKey{}).(*auditEntry)
	return e
}

// newAuditEntry starts the record of a request the authorizer routed.
func (s *Server) newAuditEntry(r *http.Request, route plinth.Route, p plinth.Principal) *auditEntry {
	rec := plinth.AuditRecord{
		Time:          time.Now().UTC(),
		CorrelationID: CorrelationID(r.Context()),
		Environment:   s.environment,
		Domain:        route.Domain,
		Entity:        route.Entity,
		Operation:     operation(r.Method, route),
		Method:        r.Method,
		Route:         auditRoute(r, route),
		Principal:     p,
		Decision:      plinth.DecisionAllow,
		ClientAddress: clientAddress(r),
		UserAgent:     r.UserAgent(),
	}
	if q, err := url.ParseQuery(r.URL.RawQuery); err != nil {
		rec.Filters = map[string]string{"(unparsed query)": r.URL.RawQuery}
	} else if len(q) > 0 {
		rec.Filters = make(map[string]string, len(q))
		for k, v := range q {
			rec.Filters[k] = strings.Join(v, ",")
		}
	}
	return &auditEntry{rec: rec, start: time.Now()}
}

// auditRoute is the route template an audit record names: the
// authorizer's, else the router's (a method the route does not allow),
// else "unmatched" (no such route).
func auditRoute(r *http.Request, route plinth.Route) string {
	if route.Template != "" {
		return route.Template
	}
	if t := infoFrom(r.Context()).route; t != "" {
		return t
	}
	return "unmatched"
}

// operation names what a request does, for the audit trail.
func operation(method string, route plinth.Route) string {
	switch route.Operation {
	case plinth.OpAdmin:
		return "admin"
	case plinth.OpReport:
		return reportOperation(route.Template)
	}
	if route.Template == "" {
		return strings.ToLower(method)
	}
	item := strings.HasSuffix(route.Template, "}")
	read := method == http.MethodGet || method == http.MethodHead
	switch {
	case read && item:
		return plinth.ActionView
	case read:
		return plinth.ActionList
	case method == http.MethodPost:
		return plinth.ActionCreate
	case method == http.MethodPatch:
		return plinth.ActionUpdate
	case method == http.MethodDelete:
		return plinth.ActionDelete
	}
	return strings.ToLower(method)
}

// reportOperation names a Reporting API request for the audit trail:
// "report" only for a report's data, so that "which reports may have
// included this record" finds just those.
func reportOperation(template string) string {
	switch {
	case template == plinth.RouteReports:
		return "list-reports"
	case strings.HasSuffix(template, "/schema"):
		return "report-schema"
	case strings.HasSuffix(template, "/deletions"):
		return "report-deletions"
	}
	return "report"
}

func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// finish completes the record with the outcome.
func (e *auditEntry) finish(status int) plinth.AuditRecord {
	e.rec.Status = status
	e.rec.DurationMs = float64(time.Since(e.start).Microseconds()) / 1000
	if e.rec.Count == 0 {
		e.rec.Count = len(e.rec.RecordIDs)
	}
	return plinth.BoundAudit(e.rec)
}

// origin describes a write of the request for the write path: who makes
// it, and its audit record, completed with the status and the ids touched.
func (s *Server) origin(r *http.Request, status int) plinth.Origin {
	p, _ := plinth.PrincipalFrom(r.Context())
	c := plinth.Origin{Principal: p, CorrelationID: CorrelationID(r.Context())}
	if e := entryFrom(r.Context()); e != nil {
		c.Audit = func(ids []string) plinth.AuditRecord {
			e.rec.RecordIDs = ids
			return e.finish(status)
		}
	}
	return c
}

// committed marks the request's record as written by its transaction
// (the write path mirrors it).
func (s *Server) committed(ctx context.Context, rec plinth.AuditRecord) {
	if e := entryFrom(ctx); e != nil && rec.Stored() {
		e.recorded = true
	}
}

// returned notes the ids of the records a read returns.
func returned(ctx context.Context, ids ...string) {
	if e := entryFrom(ctx); e != nil {
		e.rec.RecordIDs = append(e.rec.RecordIDs, ids...)
	}
}

// auditWriter records the audit entry when the handler decides the status,
// before any of the body goes out. If the record cannot be made durable and
// the auditor fails closed, the response becomes a 503 instead.
type auditWriter struct {
	http.ResponseWriter
	s       *Server
	r       *http.Request
	e       *auditEntry
	failed  bool
	written bool
}

func (w *auditWriter) WriteHeader(status int) {
	if w.written {
		return
	}
	w.written = true
	if !w.e.recorded {
		w.e.recorded = true
		// A client that went away cancels the wait, not the record (it is
		// still committed), so that is no reason to refuse.
		if _, err := w.s.auditor.Record(w.r.Context(), w.e.finish(status)); err != nil && w.r.Context().Err() == nil {
			w.failed = true
			w.s.log(w.r).Error("audit record could not be written; refusing the request", "error", err)
			h := w.ResponseWriter.Header()
			for _, k := range []string{"ETag", "Location", "Content-Type", "Content-Length"} {
				h.Del(k)
			}
			h.Set("Retry-After", "5")
			writeProblem(w.ResponseWriter, w.r, http.StatusServiceUnavailable, "The request could not be audited, so it was refused; try again shortly.")
			return
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *auditWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *auditWriter) Write(b []byte) (int, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return len(b), nil // the body belongs to the refused response
	}
	return w.ResponseWriter.Write(b)
}

// audited wraps a handler of a data or admin route with its audit record.
func (s *Server) audited(r *http.Request, w http.ResponseWriter, d plinth.Decision) (*http.Request, http.ResponseWriter, func()) {
	if s.auditor == nil || d.Route.Operation == plinth.OpPublic {
		return r, w, func() {}
	}
	e := s.newAuditEntry(r, d.Route, d.Principal)
	aw := &auditWriter{ResponseWriter: w, s: s, r: r, e: e}
	r = r.WithContext(context.WithValue(r.Context(), auditKey{}, e))
	aw.r = r
	s.auditing.Add(1)
	return r, aw, func() {
		defer s.auditing.Add(-1)
		if p := recover(); p != nil {
			// The handler panicked: record a 500 and let the recovery in
			// observe answer with a problem.
			if !aw.written && !e.recorded {
				e.recorded = true
				if _, err := s.auditor.Record(aw.r.Context(), e.finish(http.StatusInternalServerError)); err != nil {
					s.log(aw.r).Error("audit record of a failed request could not be written", "error", err)
				}
			}
			panic(p)
		}
		if !aw.written && !e.recorded { // a handler that wrote nothing
			aw.WriteHeader(http.StatusOK)
		}
	}
}

// auditDenied records a request the authorizer refused.
func (s *Server) auditDenied(r *http.Request, d plinth.Decision) error {
	if s.auditor == nil || d.Route.Operation == plinth.OpPublic {
		return nil
	}
	e := s.newAuditEntry(r, d.Route, d.Principal)
	e.rec.Decision = plinth.DecisionDeny
	e.rec.Reason = d.Reason
	rec := e.finish(d.Status)
	if !s.denials.admit(rec) {
		return nil // counted into the minute's aggregated record
	}
	_, err := s.auditor.Record(r.Context(), rec)
	return err
}
