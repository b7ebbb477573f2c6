package plinth

import (
	"errors"
	"fmt"
	"strings"
)

// Errors a Store returns, wrapped with detail. The HTTP layer maps each to a
// status code; callers test them with errors.Is.
var (
	ErrNotFound        = errors.New("not found")                             // 404
	ErrVersionConflict = errors.New("version does not match")                // 412
	ErrConflict        = errors.New("a record with this key already exists") // 409
	ErrUnavailable     = errors.New("storage unavailable")                   // 503
)

// FieldError is one problem with one field of a body or one query parameter.
type FieldError struct {
	Field     string `json:"field,omitempty"`     // JSON path in the body: "addresses[0].postCode"
	Parameter string `json:"parameter,omitempty"` // query parameter: "limit"
	Detail    string `json:"detail"`
}

// ValidationError lists every problem found with a request; nothing is
// written when one is returned.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		name := fe.Field
		if name == "" {
			name = fe.Parameter
		}
		parts[i] = fmt.Sprintf("%s: %s", name, fe.Detail)
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// paramError returns a ValidationError for one query parameter.
func paramError(param, format string, args ...any) *ValidationError {
	return &ValidationError{Errors: []FieldError{{Parameter: param, Detail: fmt.Sprintf(format, args...)}}}
}

// ErrTooLarge is matched (errors.Is) by every *TooLargeError.
var ErrTooLarge = errors.New("larger than the store can hold") // 413

// TooLargeError is returned when a write exceeds a limit of the storage
// engine that the spec's own limits do not rule out (DynamoDB's 400 KB item,
// its 100 items per transaction). The API answers 413 naming the limit.
type TooLargeError struct {
	Limit  string // the limit, for the client: "DynamoDB's item limit of 400 KB"
	Detail string // what exceeded it; may name keys, so not shown to clients
}

func (e *TooLargeError) Error() string { return e.Detail + ": over " + e.Limit }

// Is makes errors.Is(err, ErrTooLarge) true.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }
