package plinth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sort"
	"strings"
)

// Cursor errors, worded for a problem+json detail on the cursor parameter.
var (
	ErrBadCursor       = errors.New("is not a cursor returned by this API")
	ErrCursorElsewhere = errors.New("belongs to a list with other filters; repeat the filters of the request that returned it")
)

// cursor is what every opaque cursor string encodes: where the previous
// page ended, and the scope of the list (a digest of its filters), so a
// cursor is not reused with other filters. Every paged list — entity lists,
// admin lists, the audit search — uses this one codec.
type cursor struct {
	After string `json:"a"`
	Scope string `json:"f"`
}

// EncodeCursor returns the opaque cursor for the page after the item
// after, in a list of the given scope (see CursorScope).
func EncodeCursor(after, scope string) string {
	b, _ := json.Marshal(cursor{After: after, Scope: scope})
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor returns the position a cursor holds: ErrBadCursor when it is
// not one EncodeCursor made, ErrCursorElsewhere when it was made for
// another scope.
func DecodeCursor(s, scope string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	var c cursor
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.After == "" || EncodeCursor(c.After, c.Scope) != s {
		return "", ErrBadCursor
	}
	if c.Scope != scope {
		return "", ErrCursorElsewhere
	}
	return c.After, nil
}

// CursorScope digests the parts that define a list (its name and filters,
// in any order) into a short scope for its cursors.
func CursorScope(parts ...string) string {
	parts = append([]string(nil), parts...)
	sort.Strings(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(sum[:6])
}
