package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/plinth-data/plinth"
)

// entityHandler serves the five routes of one entity.
type entityHandler struct {
	s *Server
	e *plinth.Entity
	// listPrefix opens a page of the list: {"plural":[
	listPrefix []byte
}

func (h *entityHandler) list(w http.ResponseWriter, r *http.Request) {
	q, err := h.e.ParseQuery(r.URL.Query())
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	// The records are only written out: a store may hand them over as
	// the API's JSON already.
	q.NestedJSON, q.RecordJSON = true, true
	page, err := h.page(r.Context(), q)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	defer page.Release()
	if e := entryFrom(r.Context()); e != nil {
		for _, rec := range page.Records {
			e.rec.RecordIDs = append(e.rec.RecordIDs, plinth.KeyString(h.e.KeyOf(rec)))
		}
	}
	size := len(h.listPrefix) + len(`],"nextCursor":null}`) + 64
	for _, rec := range page.Records {
		size += len(rec.JSON) + 1
	}
	// The answer is copied out as it is written, so its buffer is free
	// again once writeBody returns.
	bp := plinth.PageBuffer()
	defer plinth.ReleasePageBuffer(bp)
	b := append(slices.Grow(*bp, size), h.listPrefix...)
	for i, rec := range page.Records {
		if i > 0 {
			b = append(b, ',')
		}
		b = h.e.AppendRecord(b, rec)
	}
	b = append(b, `],"nextCursor":`...)
	if page.More && len(page.Records) > 0 {
		next, _ := json.Marshal(h.e.Cursor(h.e.KeyOf(page.Records[len(page.Records)-1]), q))
		b = append(b, next...)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, '}')
	writeBody(w, r, http.StatusOK, "application/json", b)
	*bp = b
}

func (h *entityHandler) get(w http.ResponseWriter, r *http.Request) {
	id, ok := h.id(w, r)
	if !ok {
		return
	}
	returned(r.Context(), plinth.KeyString(id))
	// The record is only written out: the store may hand it over as the
	// API's JSON already, or leave nested values as JSON text.
	rec, err := h.view(plinth.WithRecordJSON(plinth.WithNestedJSON(r.Context())), id)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	h.writeRecord(w, r, http.StatusOK, rec)
}

// view reads the record a view returns: with its audit record, in one
// round trip, when the store and the load allow (Server.direct).
func (h *entityHandler) view(ctx context.Context, id any) (plinth.Record, error) {
	g, e, done, ok := h.s.direct(ctx)
	if !ok {
		return h.s.store.Get(ctx, h.e, id)
	}
	dctx, cancel := directContext(ctx)
	rec, stored, err := g.GetAudited(dctx, h.e, id, e.finish(0))
	cancel()
	done()
	h.s.appendedWithRead(e, stored)
	return rec, err
}

// page reads the page a list returns, as view reads a record.
func (h *entityHandler) page(ctx context.Context, q plinth.Query) (plinth.Page, error) {
	g, e, done, ok := h.s.direct(ctx)
	if !ok {
		return h.s.store.List(ctx, h.e, q)
	}
	dctx, cancel := directContext(ctx)
	page, stored, err := g.ListAudited(dctx, h.e, q, e.finish(0))
	cancel()
	done()
	h.s.appendedWithRead(e, stored)
	return page, err
}

func (h *entityHandler) create(w http.ResponseWriter, r *http.Request) {
	doc, ok := h.s.readBody(w, r, "application/json")
	if !ok {
		return
	}
	data, err := h.e.Validate(doc, true)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	res, err := h.s.writer.Create(r.Context(), h.e, data, h.s.origin(r, http.StatusCreated))
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	h.s.committed(r.Context(), res.Audited)
	w.Header().Set("Location", plinth.EntityCollection(h.e.Plural)+"/"+url.PathEscape(plinth.KeyString(h.e.KeyOf(res.Record))))
	h.writeWritten(w, r, http.StatusCreated, res.Record)
}

// update applies a JSON Merge Patch to the version named by If-Match. A
// patch that changes nothing leaves the record, and its version, alone.
func (h *entityHandler) update(w http.ResponseWriter, r *http.Request) {
	id, version, ok := h.conditional(w, r)
	if !ok {
		return
	}
	patch, ok := h.s.readBody(w, r, "application/merge-patch+json", "application/json")
	if !ok {
		return
	}
	keyName := h.e.Key.Name
	res, err := h.s.writer.Update(r.Context(), h.e, id, version, func(cur plinth.Record) (map[string]any, error) {
		// A store error may echo the record's stored values too.
		infoFrom(r.Context()).noteBody(cur.Data)
		if v, ok := patch[keyName]; ok {
			if kv, err := h.e.KeyField().Canonical(v); err != nil || kv != cur.Data[keyName] {
				return nil, &plinth.ValidationError{Errors: []plinth.FieldError{{Field: keyName, Detail: "is the record's key and cannot be changed"}}}
			}
		}
		return h.e.Validate(plinth.MergePatch(cur.Data, patch), false)
	}, h.s.origin(r, updatedStatus(r)))
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	h.s.committed(r.Context(), res.Audited)
	h.writeWritten(w, r, updatedStatus(r), res.Record)
}

func (h *entityHandler) delete(w http.ResponseWriter, r *http.Request) {
	id, version, ok := h.conditional(w, r)
	if !ok {
		return
	}
	res, err := h.s.writer.Delete(r.Context(), h.e, id, version, h.s.origin(r, http.StatusNoContent))
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	h.s.committed(r.Context(), res.Audited)
	w.WriteHeader(http.StatusNoContent)
}

// conditional reads what an update or delete acts on: the id, and the
// version If-Match names.
func (h *entityHandler) conditional(w http.ResponseWriter, r *http.Request) (id any, version int64, ok bool) {
	if id, ok = h.id(w, r); !ok {
		return nil, 0, false
	}
	returned(r.Context(), plinth.KeyString(id))
	if version, ok = ifMatch(w, r); !ok {
		return nil, 0, false
	}
	return id, version, true
}

// id parses the {id} path parameter by the entity's key type.
func (h *entityHandler) id(w http.ResponseWriter, r *http.Request) (any, bool) {
	// chi routes on the escaped path when the request has one (RawPath is
	// set only when it differs from the plain escaping), so "a%2Fb" arrives
	// as one segment, still escaped.
	raw := chi.URLParam(r, "id")
	var err error
	if r.URL.RawPath != "" {
		raw, err = url.PathUnescape(raw)
	}
	var id any
	if err == nil {
		id, err = h.e.ParseKey(raw)
	}
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, "The id in the path is not valid.",
			plinth.FieldError{Parameter: "id", Detail: err.Error()})
		return nil, false
	}
	return id, true
}

func (h *entityHandler) writeRecord(w http.ResponseWriter, r *http.Request, status int, rec plinth.Record) {
	w.Header().Set("ETag", etag(rec.Version))
	writeBody(w, r, status, "application/json", h.e.MarshalRecord(rec))
}

// writeBody answers with a whole body at once, its length known: net/http
// then sends it as it is rather than in chunks (a body larger than its
// 2 KiB buffer would otherwise go out chunked, in several writes), in one
// write with the headers where the connection allows (writeWhole).
func writeBody(w http.ResponseWriter, r *http.Request, status int, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	writeWhole(w, r, status, body)
}

// writeWritten answers a create or update with the record, or without a
// body (ETag and Location only) when the caller may write but not read the
// entity: a write must not become a way to read.
func (h *entityHandler) writeWritten(w http.ResponseWriter, r *http.Request, status int, rec plinth.Record) {
	if infoFrom(r.Context()).mayRead {
		h.writeRecord(w, r, status, rec)
		return
	}
	w.Header().Set("ETag", etag(rec.Version))
	w.WriteHeader(status)
}

// updatedStatus is the status of a successful update: 200 with the record,
// or 204 for a caller who may not read it.
func updatedStatus(r *http.Request) int {
	if infoFrom(r.Context()).mayRead {
		return http.StatusOK
	}
	return http.StatusNoContent
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// ifMatch reads the version a write is conditional on: 428 when the header
// is absent, 400 when it is not an ETag this API issued.
func ifMatch(w http.ResponseWriter, r *http.Request) (int64, bool) {
	raw := strings.TrimSpace(r.Header.Get("If-Match"))
	if raw == "" {
		writeProblem(w, r, http.StatusPreconditionRequired, "Send If-Match with the ETag of the record you read, such as If-Match: \"3\".",
			plinth.FieldError{Parameter: "If-Match", Detail: "is required"})
		return 0, false
	}
	if strings.HasPrefix(raw, "W/") {
		// If-Match compares strongly (RFC 9110 13.1.1): a weak tag never
		// matches, so the record cannot be at the version it names.
		writeProblem(w, r, http.StatusPreconditionFailed, "If-Match uses strong comparison, so a weak ETag (W/\"…\") never matches; send the ETag as returned, such as \"3\".",
			plinth.FieldError{Parameter: "If-Match", Detail: "must be a strong ETag"})
		return 0, false
	}
	unquoted, quoted := strings.CutPrefix(raw, `"`)
	unquoted, closed := strings.CutSuffix(unquoted, `"`)
	v, err := strconv.ParseInt(unquoted, 10, 64)
	if err != nil || v < 1 || !quoted || !closed || strings.HasPrefix(unquoted, "+") {
		writeProblem(w, r, http.StatusBadRequest, "If-Match must be the ETag of the record, such as \"3\".",
			plinth.FieldError{Parameter: "If-Match", Detail: "must be an ETag returned by this API, such as \"3\""})
		return 0, false
	}
	return v, true
}

// readBody checks the content type and size of a request body and decodes
// it as one JSON object, numbers kept exact.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, types ...string) (map[string]any, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !slices.Contains(types, mt) {
		writeProblem(w, r, http.StatusUnsupportedMediaType, "Send the body as "+strings.Join(types, " or ")+".",
			plinth.FieldError{Parameter: "Content-Type", Detail: "must be " + strings.Join(types, " or ")})
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeProblem(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("The body is larger than the limit of %d bytes.", s.maxBody))
		return nil, false
	}
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, "The body could not be read.")
		return nil, false
	}
	doc, err := plinth.DecodeJSONObject(body)
	if err != nil {
		var je *plinth.JSONError
		if errors.As(err, &je) && je.Field != "" {
			writeProblem(w, r, http.StatusBadRequest, "The body is not valid JSON; see errors.",
				plinth.FieldError{Field: je.Field, Detail: je.Detail})
			return nil, false
		}
		writeProblem(w, r, http.StatusBadRequest, "The body is not valid JSON: "+err.Error()+".")
		return nil, false
	}
	infoFrom(r.Context()).noteRawBody(body)
	return doc, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
