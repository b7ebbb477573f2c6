package plinth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// JSONError is a request body that is not exactly one well-formed JSON
// value: a syntax error, invalid UTF-8 (also as an escaped lone surrogate
// such as "\ud800"), or a member name given twice. Such bodies are refused
// rather than repaired, so nothing is stored that differs from what was sent.
type JSONError struct {
	Field  string // where, as a field path like addresses[0].postCode; "" for the whole body
	Detail string
	Offset int64 // byte offset of the problem
}

func (e *JSONError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s (at byte %d)", e.Detail, e.Offset)
	}
	return fmt.Sprintf("%s: %s (at byte %d)", e.Field, e.Detail, e.Offset)
}

// DecodeJSON decodes a request body strictly: exactly one JSON value,
// strings valid UTF-8, no duplicate member names. Numbers come back as
// json.Number, exact. Errors are *JSONError.
func DecodeJSON(body []byte) (any, error) {
	d := jsontext.NewDecoder(bytes.NewReader(body))
	v, err := decodeJSONValue(d)
	if err == nil {
		if _, err = d.ReadToken(); err == io.EOF {
			return v, nil
		} else if err == nil {
			return nil, &JSONError{Detail: "unexpected data after the JSON value", Offset: d.InputOffset()}
		}
	}
	return nil, jsonError(err, d)
}

// DecodeJSONObject is DecodeJSON for a body that must be one object.
func DecodeJSONObject(body []byte) (map[string]any, error) {
	v, err := DecodeJSON(body)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &JSONError{Detail: "the body must be a JSON object"}
	}
	return m, nil
}

func decodeJSONValue(d *jsontext.Decoder) (any, error) {
	tok, err := d.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case 'n':
		return nil, nil
	case 't', 'f':
		return tok.Bool(), nil
	case '"':
		return tok.String(), nil
	case '0':
		return json.Number(tok.String()), nil
	case '{':
		m := map[string]any{}
		for d.PeekKind() != '}' {
			name, err := d.ReadToken()
			if err != nil {
				return nil, err
			}
			if m[name.String()], err = decodeJSONValue(d); err != nil {
				return nil, err
			}
		}
		_, err := d.ReadToken()
		return m, err
	case '[':
		a := []any{}
		for d.PeekKind() != ']' {
			v, err := decodeJSONValue(d)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := d.ReadToken()
		return a, err
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// jsonError describes a decoding error by field path and byte offset,
// without echoing the body (which may hold personal data).
func jsonError(err error, d *jsontext.Decoder) error {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return &JSONError{Detail: "the body is empty or ends early", Offset: d.InputOffset()}
	}
	var se *jsontext.SyntacticError
	if !errors.As(err, &se) {
		return &JSONError{Detail: err.Error(), Offset: d.InputOffset()}
	}
	je := &JSONError{Field: pointerPath(se.JSONPointer), Offset: se.ByteOffset}
	switch {
	case errors.Is(se.Err, jsontext.ErrDuplicateName):
		je.Detail = "is given more than once; each member name may appear once"
	case strings.Contains(se.Err.Error(), "UTF-8"), strings.Contains(se.Err.Error(), "surrogate"):
		je.Detail = "must be valid UTF-8 text (no invalid bytes or lone surrogates)"
	default:
		je.Detail = "is not valid JSON: " + strings.TrimPrefix(se.Err.Error(), "jsontext: ")
	}
	return je
}

// pointerPath turns a JSON pointer (/addresses/0/postCode) into a field
// path (addresses[0].postCode).
func pointerPath(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if _, err := strconv.Atoi(tok); err == nil && b.Len() > 0 {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}
