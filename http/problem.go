package http

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/plinth-data/plinth"
)

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type          string              `json:"type"`
	Title         string              `json:"title"`
	Status        int                 `json:"status"`
	Detail        string              `json:"detail,omitempty"`
	Instance      string              `json:"instance,omitempty"`
	CorrelationID string              `json:"correlationId"`
	Errors        []plinth.FieldError `json:"errors,omitempty"`
}

// writeProblem sends a problem+json response.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, detail string, errs ...plinth.FieldError) {
	p := Problem{
		Type:          "about:blank",
		Title:         statusText(status),
		Status:        status,
		Detail:        detail,
		Instance:      r.URL.Path,
		CorrelationID: CorrelationID(r.Context()),
		Errors:        errs,
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	// A problem may replace an answer whose headers were set (the audit
	// record could not be written): not its length.
	h.Del("Content-Length")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeError maps an error from the domain or a store to a problem. Only
// the errors Plinth defines are shown to the client; anything else is logged
// and answered with a plain 500.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		s.clientClosed(w, r, err)
		return
	}
	var ve *plinth.ValidationError
	var tooLarge *plinth.TooLargeError
	switch {
	case errors.As(err, &ve):
		status := http.StatusUnprocessableEntity
		detail := "The request body is not a valid record; see errors."
		if len(ve.Errors) > 0 && ve.Errors[0].Parameter != "" {
			status = http.StatusBadRequest
			detail = "The query parameters are not valid; see errors."
		}
		writeProblem(w, r, status, detail, ve.Errors...)
	case errors.Is(err, plinth.ErrNotFound):
		writeProblem(w, r, http.StatusNotFound, "No record has this id.")
	case errors.Is(err, plinth.ErrVersionConflict):
		writeProblem(w, r, http.StatusPreconditionFailed, "The record has changed since the version given in If-Match; fetch it again and retry with its new ETag.")
	case errors.Is(err, plinth.ErrConflict):
		writeProblem(w, r, http.StatusConflict, "A record with this key already exists.")
	case errors.As(err, &tooLarge):
		writeProblem(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("The record is larger than the data store can hold: it exceeds %s.", tooLarge.Limit))
	case errors.Is(err, plinth.ErrUnavailable):
		s.log(r).Error("storage unavailable", "error", err)
		w.Header().Set("Retry-After", "5")
		writeProblem(w, r, http.StatusServiceUnavailable, "The data store is unavailable; try again shortly.")
	default:
		s.log(r).Error("request failed", "error", err)
		writeProblem(w, r, http.StatusInternalServerError, fmt.Sprintf("An unexpected error occurred; quote correlation id %s when reporting it.", CorrelationID(r.Context())))
	}
}

// log returns the logger for lines about r: they carry its correlation id
// and mask the values that came with it (body, query, path ids) as well as
// anything that looks like personal data in error text (see
// plinth.MaskLogs).
func (s *Server) log(r *http.Request) *slog.Logger {
	return slog.New(plinth.MaskLogs(s.logger.Handler(), func() []string { return requestSecrets(r) })).
		With("correlationId", CorrelationID(r.Context()))
}

// StatusClientClosedRequest is the status recorded (in metrics, logs and
// the audit trail) for a request whose client went away before the answer:
// nginx's 499. It is no server fault, so it is logged at info level.
const StatusClientClosedRequest = 499

func (s *Server) clientClosed(w http.ResponseWriter, r *http.Request, err error) {
	s.log(r).Info("client closed the request before the answer", "error", err)
	writeProblem(w, r, StatusClientClosedRequest, "The client closed the request.")
}

func statusText(status int) string {
	if status == StatusClientClosedRequest {
		return "Client Closed Request"
	}
	return http.StatusText(status)
}
