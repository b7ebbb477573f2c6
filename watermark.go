package plinth

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Watermark marks the snapshot a Scan or Deletions read, for incremental
// extracts: passed back as ScanQuery.Since or Deletions' since, it selects
// what changed in writes that snapshot did not see. It is opaque, URL-safe
// text (the Reporting API hands it to clients as since=); the empty
// Watermark means "from the beginning". A watermark is only meaningful to
// the store (the database) that made it; stores reject one of another
// kind, or garbage, with an error wrapping ErrBadWatermark.
type Watermark string

// ErrBadWatermark is wrapped by the error a store returns for a watermark
// it did not make (garbage, or one of another kind of store or of another
// database). The message says what is wrong, for a 400 on since=.
var ErrBadWatermark = errors.New("invalid watermark")

// WatermarkExpiredError is returned by Store.Deletions when since is older
// than the retention of tombstones: deletions after since have been purged,
// so the caller cannot refresh incrementally and must take a full extract
// (the Reporting API answers 410 Gone).
type WatermarkExpiredError struct {
	Since Watermark
	// Oldest is the oldest point still available: tombstones of deletions
	// at or after it are kept.
	Oldest time.Time
}

func (e *WatermarkExpiredError) Error() string {
	return fmt.Sprintf("the watermark %q is older than the retention of deletions: deletions before %s have been purged; take a full extract",
		e.Since, e.Oldest.UTC().Format(time.RFC3339Nano))
}

// Tombstone is a record's deletion, as Store.Deletions reports it.
type Tombstone struct {
	Key       any // the canonical key, as Record.Data holds it
	DeletedAt time.Time
}

// NewWatermark encodes the position of a store of the given kind ("pg",
// "sqlite": lower-case letters) as a Watermark: one or more numbers. For
// store implementations.
func NewWatermark(kind string, pos ...uint64) Watermark {
	var b strings.Builder
	b.WriteString(kind)
	for _, n := range pos {
		b.WriteByte('.')
		b.WriteString(strconv.FormatUint(n, 10))
	}
	return Watermark(b.String())
}

// Position decodes a watermark that NewWatermark made for kind, returning
// its numbers; the zero Watermark has none. Anything else, including a
// watermark of another kind of store, is an error wrapping
// ErrBadWatermark. For store implementations.
func (w Watermark) Position(kind string) ([]uint64, error) {
	if w == "" {
		return nil, nil
	}
	garbage := BadWatermark(w, "it is not a watermark a Plinth store made; pass the watermark of an earlier extract unchanged")
	parts := strings.Split(string(w), ".")
	if len(parts) < 2 || len(w) > 4096 {
		return nil, garbage
	}
	if k := parts[0]; k != kind {
		if k == "" || strings.Trim(k, "abcdefghijklmnopqrstuvwxyz") != "" {
			return nil, garbage
		}
		return nil, BadWatermark(w, fmt.Sprintf("it was made by a store of another kind (%s; this one is %s): take a full extract", k, kind))
	}
	out := make([]uint64, 0, len(parts)-1)
	for _, p := range parts[1:] {
		if p == "" || strings.TrimLeft(p, "0123456789") != "" {
			return nil, garbage
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return nil, garbage
		}
		out = append(out, n)
	}
	return out, nil
}

// BadWatermark returns an error wrapping ErrBadWatermark that says why w
// cannot be used.
func BadWatermark(w Watermark, why string) error {
	s := string(w)
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return fmt.Errorf("%w %q: %s", ErrBadWatermark, s, why)
}
