package http

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/plinth-data/plinth"
	// Parquet reports: the parquet package registers its encoder.
	_ "github.com/plinth-data/plinth/parquet"
	"github.com/plinth-data/plinth/report"
)

// The Reporting API: every record of an entity in one streamed response,
// from one read snapshot, for BI tools. See README, "Reporting API".

// Report defaults; Config overrides them.
const (
	DefaultReportMaxDuration = 2 * time.Hour
	DefaultReportIdleTimeout = time.Minute
	// reportFlushEvery bounds how much of a report waits in buffers: the
	// response is flushed after this many bytes.
	reportFlushEvery = 64 << 10
)

// Trailers of a report: how many records it held and the watermark to
// pass as since= for the next incremental extract.
const (
	TrailerRecordCount = "Plinth-Record-Count"
	TrailerWatermark   = "Plinth-Watermark"
)

// reportHandler serves the Reporting API routes of one entity.
type reportHandler struct {
	s *Server
	e *plinth.Entity
}

// parseReport reads a report's parameters; every problem is a 400 before
// any byte of data is sent.
func (h *reportHandler) parseReport(r *http.Request) (report.Format, plinth.ScanQuery, report.Options, error) {
	values := r.URL.Query()
	var errs []plinth.FieldError
	bad := func(param, detail string) { errs = append(errs, plinth.FieldError{Parameter: param, Detail: detail}) }
	var q plinth.ScanQuery
	var opts report.Options
	take := func(name string) (string, bool) {
		vals, ok := values[name]
		delete(values, name)
		if ok && len(vals) != 1 {
			bad(name, "must be given once")
			return "", false
		}
		return strings.Join(vals, ""), ok
	}
	formatParam, _ := take("format")
	if v, ok := take("bom"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("bom", "must be true or false")
		}
		opts.BOM = b
	}
	if v, ok := take("since"); ok {
		if v == "" {
			bad("since", "must be a watermark returned by a previous report")
		}
		q.Since = plinth.Watermark(v)
	}
	if v, ok := take("updated_since"); ok {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			bad("updated_since", "must be a date and time in RFC 3339 format such as 2026-11-01T00:00:00Z")
		}
		q.UpdatedSince = t
	}
	for _, name := range []string{"limit", "cursor"} {
		if _, ok := values[name]; ok {
			delete(values, name)
			bad(name, "a report has no pages: every record comes in one response")
		}
	}
	if parsed, err := h.e.ParseQuery(values); err != nil {
		var ve *plinth.ValidationError
		if errors.As(err, &ve) {
			errs = append(errs, ve.Errors...)
		}
	} else {
		q.Conditions = parsed.Conditions
	}
	if len(errs) > 0 {
		return "", q, opts, &plinth.ValidationError{Errors: errs}
	}
	f, ok := report.Negotiate(formatParam, r.Header.Get("Accept"))
	if !ok {
		return "", q, opts, errNotAcceptable
	}
	return f, q, opts, nil
}

var errNotAcceptable = errors.New("not acceptable")

// writeNotAcceptable answers 406 listing the media types reports come in.
func writeNotAcceptable(w http.ResponseWriter, r *http.Request) {
	var names []string
	for _, f := range report.Formats {
		names = append(names, string(f))
	}
	writeProblem(w, r, http.StatusNotAcceptable, "Reports come as "+strings.Join(report.MediaTypes(), ", ")+
		"; ask with Accept or format= ("+strings.Join(names, ", ")+").",
		plinth.FieldError{Parameter: "format", Detail: "must be one of " + strings.Join(names, ", ")})
}

// report streams every matching record of the entity from one snapshot.
func (h *reportHandler) report(w http.ResponseWriter, r *http.Request) {
	format, q, opts, err := h.parseReport(r)
	switch {
	case errors.Is(err, errNotAcceptable):
		writeNotAcceptable(w, r)
		return
	case err != nil:
		h.s.writeError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.s.reportMaxDuration)
	defer cancel()
	st := newReportStream(w, r, h.s, h.e, format, opts)
	if r.Method == http.MethodHead {
		_ = st.start() // headers only: nothing can fail after them
		return
	}
	q.NestedJSON = true  // the encoders write nested values as JSON text,
	q.ReuseData = true   // and keep no record once written,
	q.FieldValues = true // walking the fields in order
	watermark, err := h.s.store.Scan(ctx, h.e, q, st.write)
	if err == nil {
		err = st.end(watermark)
	}
	if err != nil {
		st.fail(ctx, err)
	}
}

// reportStream writes one report: headers on the first record (so that an
// error before any data is still a clean problem answer), periodic
// flushes with the write deadline pushed on as data flows, the count and
// watermark as trailers, and an abort rather than a clean end on failure.
type reportStream struct {
	w       http.ResponseWriter
	r       *http.Request
	s       *Server
	e       *plinth.Entity
	format  report.Format
	opts    report.Options
	rc      *http.ResponseController
	out     *bufio.Writer
	gz      *gzip.Writer
	enc     report.Encoder
	started bool
	count   int64
	flushed int
	// sendFailed is set when writing to the client failed: the client
	// went away (or stopped reading past the idle timeout), which the
	// completion record calls aborted, not failed.
	sendFailed bool
}

func newReportStream(w http.ResponseWriter, r *http.Request, s *Server, e *plinth.Entity, f report.Format, opts report.Options) *reportStream {
	return &reportStream{w: w, r: r, s: s, e: e, format: f, opts: opts, rc: http.NewResponseController(w)}
}

// start sends the headers; the report's audit record is made durable
// before they go out.
func (st *reportStream) start() error {
	st.started = true
	h := st.w.Header()
	h.Set("Content-Type", st.format.MediaType())
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s.%s"`,
		st.e.Plural, time.Now().UTC().Format("20060102T150405Z"), st.format.Extension()))
	h.Set("Trailer", TrailerRecordCount+", "+TrailerWatermark)
	h.Set("Cache-Control", "no-store")
	h.Add("Vary", "Accept, Accept-Encoding")
	var sink io.Writer = st.w
	if acceptsGzip(st.r) {
		h.Set("Content-Encoding", "gzip")
		st.gz = gzip.NewWriter(st.w)
		sink = st.gz
	}
	st.w.WriteHeader(http.StatusOK)
	if st.r.Method == http.MethodHead {
		return nil
	}
	st.out = bufio.NewWriterSize(&countingWriter{w: sink, n: &st.flushed}, 32<<10)
	var err error
	if st.enc, err = report.NewEncoder(st.format, st.out, st.e, st.opts); err != nil {
		return err
	}
	// The headers go out now: the client knows the report has begun even
	// when the first data take a while (a Parquet row group).
	return st.flush()
}

// write sends one record, flushing as the buffers fill.
func (st *reportStream) write(rec plinth.Record) error {
	if !st.started {
		if err := st.start(); err != nil {
			return err
		}
	}
	if err := st.enc.Write(rec); err != nil {
		st.sendFailed = true
		return err
	}
	st.count++
	if st.flushed >= reportFlushEvery {
		return st.flush()
	}
	return nil
}

// flush pushes what is buffered to the client and gives it another idle
// period to read it: a client that stops reading is dropped after that.
func (st *reportStream) flush() (err error) {
	defer func() { st.sendFailed = st.sendFailed || err != nil }()
	st.flushed = 0
	if err := st.rc.SetWriteDeadline(time.Now().Add(st.s.reportIdleTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if err := st.out.Flush(); err != nil {
		return err
	}
	if st.gz != nil {
		if err := st.gz.Flush(); err != nil {
			return err
		}
	}
	if err := st.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// end finishes a complete report: the format's end, then the trailers.
func (st *reportStream) end(watermark plinth.Watermark) error {
	if !st.started {
		if err := st.start(); err != nil {
			return err
		}
	}
	if err := st.enc.End(string(watermark), st.count); err != nil {
		return err
	}
	if err := st.flush(); err != nil {
		return err
	}
	if st.gz != nil {
		if err := st.gz.Close(); err != nil {
			return err
		}
	}
	st.w.Header().Set(TrailerRecordCount, strconv.FormatInt(st.count, 10))
	st.w.Header().Set(TrailerWatermark, string(watermark))
	st.s.reportCompleted(st.r, st.count, "complete", nil)
	return nil
}

// fail ends a report that could not be completed. Before any data went
// out it is an ordinary problem answer; after, the response is aborted
// (no final chunk, no trailers), so the client sees a truncated transfer
// instead of a report that looks complete.
func (st *reportStream) fail(ctx context.Context, err error) {
	outcome := "failed"
	if st.r.Context().Err() != nil || st.sendFailed {
		outcome = "aborted" // the client went away, or stopped reading
	} else if ctx.Err() != nil {
		err = fmt.Errorf("the report ran longer than the limit of %s: %w", st.s.reportMaxDuration, err)
	}
	if !st.started {
		st.s.writeReportError(st.w, st.r, err)
		return
	}
	st.s.reportCompleted(st.r, st.count, outcome, err)
	panic(http.ErrAbortHandler)
}

// writeReportError answers a report that failed before any data went out.
func (s *Server) writeReportError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, plinth.ErrBadWatermark) {
		writeProblem(w, r, http.StatusBadRequest, "The since parameter is not a watermark this API issued.",
			plinth.FieldError{Parameter: "since", Detail: err.Error()})
		return
	}
	s.writeError(w, r, err)
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n *int
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	*c.n += n
	return n, err
}

// acceptsGzip reports whether the client accepts a gzip-encoded answer
// (Accept-Encoding names gzip, or *, with a q-value above 0).
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.TrimSpace(name)
		if !strings.EqualFold(name, "gzip") && name != "*" {
			continue
		}
		if qv, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if q, err := strconv.ParseFloat(qv, 64); err != nil || q <= 0 {
				return false
			}
		}
		return true
	}
	return false
}

// reportCompleted writes the report's completion record: the one
// documented case of two audit records for one request. The first, made
// durable before the first byte, says who asked for what; this one, with
// the same correlation id, says how many records went out and how it
// ended.
func (s *Server) reportCompleted(r *http.Request, count int64, outcome string, cause error) {
	e := entryFrom(r.Context())
	if e == nil || s.auditor == nil {
		return
	}
	rec := e.rec
	rec.Operation = "report-completed"
	rec.Count = int(count)
	rec.RecordIDs = nil
	rec.Reason = outcome
	if cause != nil {
		rec.Reason = outcome + ": " + cause.Error()
		s.log(r).Warn("report ended early", "outcome", outcome, "count", count, "error", cause)
	}
	rec.Status = http.StatusOK
	rec.DurationMs = float64(time.Since(e.start).Microseconds()) / 1000
	rec.Time = time.Now().UTC()
	// The request's context may be gone (a client that left): the record
	// is written regardless.
	if _, err := s.auditor.Record(context.WithoutCancel(r.Context()), plinth.BoundAudit(rec)); err != nil {
		s.log(r).Error("the completion record of a report could not be written", "error", err)
	}
}

// reportLinks are the routes of one entity's report, for the index.
func reportLinks(plural string) map[string]string {
	base := plinth.EntityReport(plural)
	return map[string]string{"data": base, "schema": base + "/schema", "deletions": base + "/deletions"}
}

// listReports answers GET /api/v1/reports: each entity the caller may
// report on, with its record count and last update.
func (s *Server) listReports(w http.ResponseWriter, r *http.Request) {
	type entry struct {
		Entity      string            `json:"entity"`
		Domain      string            `json:"domain"`
		Description string            `json:"description,omitempty"`
		Records     int64             `json:"records"`
		LastUpdated *time.Time        `json:"lastUpdated"`
		Links       map[string]string `json:"links"`
	}
	out := []entry{}
	for _, d := range s.domains {
		for _, e := range d.Entities {
			if !s.mayReport(r, e) {
				continue
			}
			n, err := s.store.Count(r.Context(), e)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			last, err := s.store.LastUpdated(r.Context(), e)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			en := entry{Entity: e.Plural, Domain: d.Name, Description: e.Description, Records: n, Links: reportLinks(e.Plural)}
			if !last.IsZero() {
				en.LastUpdated = &last
			}
			out = append(out, en)
		}
	}
	if en := entryFrom(r.Context()); en != nil {
		en.rec.Count = len(out)
	}
	writeJSON(w, http.StatusOK, map[string]any{"reports": out})
}

// mayReport asks the authorizer whether the caller may report on e, as it
// would decide a request for the entity's report.
func (s *Server) mayReport(r *http.Request, e *plinth.Entity) bool {
	if s.authz == nil {
		return true
	}
	d := s.authz.Decide(r.Context(), plinth.AuthRequest{
		Authorization: r.Header.Get("Authorization"), Method: http.MethodGet, Path: plinth.EntityReport(url.PathEscape(e.Plural)),
	})
	return d.Allow
}

// schema answers GET /api/v1/reports/{plural}/schema: the report's
// columns, in order, with type, PII class and description, as JSON or CSV
// for BI tools to import.
func (h *reportHandler) schema(w http.ResponseWriter, r *http.Request) {
	cols := report.Schema(h.e)
	f, ok := report.Negotiate(r.URL.Query().Get("format"), r.Header.Get("Accept"))
	if r.URL.Query().Get("format") == "" && !strings.Contains(r.Header.Get("Accept"), "text/csv") {
		f, ok = report.FormatJSON, true // JSON unless CSV is asked for
	}
	if !ok || (f != report.FormatCSV && f != report.FormatJSON) {
		writeProblem(w, r, http.StatusNotAcceptable, "The schema comes as application/json or text/csv.",
			plinth.FieldError{Parameter: "format", Detail: "must be json or csv"})
		return
	}
	if f == report.FormatJSON {
		writeJSON(w, http.StatusOK, map[string]any{"entity": h.e.Plural, "columns": cols})
		return
	}
	w.Header().Set("Content-Type", f.MediaType())
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-schema.csv"`, h.e.Plural))
	w.WriteHeader(http.StatusOK)
	_ = report.WriteSchemaCSV(w, cols)
}

// deletions answers GET /api/v1/reports/{plural}/deletions?since=W: the
// keys and times of records deleted since the report that gave W.
func (h *reportHandler) deletions(w http.ResponseWriter, r *http.Request) {
	since := r.URL.Query().Get("since")
	for name := range r.URL.Query() {
		if name != "since" {
			writeProblem(w, r, http.StatusBadRequest, "Deletions take one parameter, since.",
				plinth.FieldError{Parameter: name, Detail: "unknown query parameter; deletions accept since"})
			return
		}
	}
	if since == "" {
		writeProblem(w, r, http.StatusBadRequest, "Send since= with the watermark of your last report.",
			plinth.FieldError{Parameter: "since", Detail: "is required"})
		return
	}
	var tombs []plinth.Tombstone
	watermark, err := h.s.store.Deletions(r.Context(), h.e, plinth.Watermark(since), func(t plinth.Tombstone) error {
		tombs = append(tombs, t)
		return nil
	})
	var expired *plinth.WatermarkExpiredError
	switch {
	case errors.As(err, &expired):
		writeProblem(w, r, http.StatusGone, fmt.Sprintf("Deletions are kept since %s; this watermark is older, so refresh the whole report.",
			expired.Oldest.UTC().Format(time.RFC3339)), plinth.FieldError{Parameter: "since", Detail: "is older than the oldest deletion kept, " + expired.Oldest.UTC().Format(time.RFC3339)})
		return
	case err != nil:
		h.s.writeReportError(w, r, err)
		return
	}
	type deletion struct {
		ID        string    `json:"id"`
		DeletedAt time.Time `json:"deletedAt"`
	}
	out := make([]deletion, len(tombs))
	ids := make([]string, len(tombs))
	for i, t := range tombs {
		ids[i] = plinth.KeyString(t.Key)
		out[i] = deletion{ID: ids[i], DeletedAt: t.DeletedAt.UTC()}
	}
	returned(r.Context(), ids...)
	w.Header().Set(TrailerWatermark, string(watermark))
	writeJSON(w, http.StatusOK, map[string]any{"deletions": out, "watermark": watermark})
}
