package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/events"
)

// entityHandler serves the five routes of one entity.
type entityHandler struct {
	s *Server
	e *plinth.Entity
}

func (h *entityHandler) list(w http.ResponseWriter, r *http.Request) {
	q, err := h.e.ParseQuery(r.URL.Query())
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	page, err := h.s.store.List(r.Context(), h.e, q)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	ids := make([]string, len(page.Records))
	for i, rec := range page.Records {
		ids[i] = plinth.KeyString(h.e.KeyOf(rec))
	}
	returned(r.Context(), ids...)
	var b bytes.Buffer
	fmt.Fprintf(&b, `{%q:[`, h.e.Plural)
	for i, rec := range page.Records {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(h.e.MarshalRecord(rec))
	}
	b.WriteString(`],"nextCursor":`)
	if page.More && len(page.Records) > 0 {
		next, _ := json.Marshal(h.e.Cursor(h.e.KeyOf(page.Records[len(page.Records)-1]), q))
		b.Write(next)
	} else {
		b.WriteString("null")
	}
	b.WriteByte('}')
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b.Bytes())
}

func (h *entityHandler) get(w http.ResponseWriter, r *http.Request) {
	id, ok := h.id(w, r)
	if !ok {
		return
	}
	returned(r.Context(), plinth.KeyString(id))
	rec, err := h.s.store.Get(r.Context(), h.e, id)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	h.writeRecord(w, http.StatusOK, rec)
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
	var rec plinth.Record
	var audited plinth.AuditRecord
	var evented bool
	err = h.s.store.Write(r.Context(), func(tx plinth.Tx) error {
		if rec, err = tx.Insert(r.Context(), h.e, data); err != nil {
			return err
		}
		if evented, err = h.appendEvent(r.Context(), tx, events.Created, nil, &rec); err != nil {
			return err
		}
		audited, err = h.s.appendInTx(r.Context(), tx, http.StatusCreated, plinth.KeyString(h.e.KeyOf(rec)))
		return err
	})
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	h.s.afterCommit(r.Context(), audited, evented)
	w.Header().Set("Location", "/api/v1/"+h.e.Plural+"/"+url.PathEscape(plinth.KeyString(h.e.KeyOf(rec))))
	h.writeRecord(w, http.StatusCreated, rec)
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
	var rec plinth.Record
	var audited plinth.AuditRecord
	var evented bool
	err := h.s.store.Write(r.Context(), func(tx plinth.Tx) error {
		cur, err := h.current(r.Context(), tx, id, version)
		if err != nil {
			return err
		}
		if v, ok := patch[keyName]; ok {
			if kv, err := h.e.KeyField().Canonical(v); err != nil || kv != cur.Data[keyName] {
				return &plinth.ValidationError{Errors: []plinth.FieldError{{Field: keyName, Detail: "is the record's key and cannot be changed"}}}
			}
		}
		data, err := h.e.Validate(plinth.MergePatch(cur.Data, patch), false)
		if err != nil {
			return err
		}
		rec = cur
		if !reflect.DeepEqual(data, cur.Data) {
			if rec, err = tx.Update(r.Context(), h.e, id, version, data); err != nil {
				return err
			}
			if evented, err = h.appendEvent(r.Context(), tx, events.Updated, &cur, &rec); err != nil {
				return err
			}
		}
		audited, err = h.s.appendInTx(r.Context(), tx, http.StatusOK, plinth.KeyString(id))
		return err
	})
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	h.s.afterCommit(r.Context(), audited, evented)
	h.writeRecord(w, http.StatusOK, rec)
}

func (h *entityHandler) delete(w http.ResponseWriter, r *http.Request) {
	id, version, ok := h.conditional(w, r)
	if !ok {
		return
	}
	var audited plinth.AuditRecord
	var evented bool
	err := h.s.store.Write(r.Context(), func(tx plinth.Tx) error {
		cur, err := h.current(r.Context(), tx, id, version)
		if err != nil {
			return err
		}
		if err := tx.Delete(r.Context(), h.e, id, version); err != nil {
			return err
		}
		if evented, err = h.appendEvent(r.Context(), tx, events.Deleted, &cur, nil); err != nil {
			return err
		}
		audited, err = h.s.appendInTx(r.Context(), tx, http.StatusNoContent, plinth.KeyString(id))
		return err
	})
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	h.s.afterCommit(r.Context(), audited, evented)
	w.WriteHeader(http.StatusNoContent)
}

// appendEvent adds the change event to the transaction's outbox; false when
// there is nothing to publish (events off, or nothing changed).
func (h *entityHandler) appendEvent(ctx context.Context, tx plinth.Tx, kind events.Kind, before, after *plinth.Record) (bool, error) {
	if !h.s.events {
		return false, nil
	}
	etx, ok := tx.(plinth.EventTx)
	if !ok {
		return false, nil
	}
	p, _ := plinth.PrincipalFrom(ctx)
	entry, _, changed := events.Build(h.e, kind, before, after, events.Context{
		Environment:   h.s.environment,
		SourceSystem:  h.e.Domain.Name + " Platform API",
		CorrelationID: CorrelationID(ctx),
		Principal:     p,
		Now:           time.Now(),
	})
	if !changed {
		return false, nil
	}
	return true, etx.AppendEvent(ctx, entry)
}

// afterCommit marks the request audited by its transaction and wakes the
// relay for the events it wrote.
func (s *Server) afterCommit(ctx context.Context, audited plinth.AuditRecord, evented bool) {
	s.committed(ctx, audited)
	if evented {
		s.notify()
	}
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

// current returns the record an update or delete starts from, locked,
// when it is still at version.
func (h *entityHandler) current(ctx context.Context, tx plinth.Tx, id any, version int64) (plinth.Record, error) {
	cur, err := tx.Get(ctx, h.e, id)
	if err == nil && cur.Version != version {
		err = plinth.ErrVersionConflict
	}
	return cur, err
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

func (h *entityHandler) writeRecord(w http.ResponseWriter, status int, rec plinth.Record) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("ETag", etag(rec.Version))
	w.WriteHeader(status)
	_, _ = w.Write(h.e.MarshalRecord(rec))
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
	v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(raw, "W/"), `"`), 10, 64)
	if err != nil || v < 1 {
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
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		writeProblem(w, r, http.StatusBadRequest, "The body is not valid JSON: "+jsonErrorDetail(err, body))
		return nil, false
	}
	if dec.More() {
		writeProblem(w, r, http.StatusBadRequest, "The body is not valid JSON: unexpected data after the JSON object.")
		return nil, false
	}
	doc, ok := v.(map[string]any)
	if !ok {
		writeProblem(w, r, http.StatusBadRequest, "The body must be a JSON object.")
		return nil, false
	}
	return doc, true
}

// jsonErrorDetail describes a JSON syntax error with its position, without
// echoing the body (which may hold personal data).
func jsonErrorDetail(err error, body []byte) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(body[:se.Offset], []byte("\n"))
		return fmt.Sprintf("%s (at byte %d, line %d).", se.Error(), se.Offset, line)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "the body is empty or ends early."
	}
	return err.Error() + "."
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
