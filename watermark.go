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

// NewWatermark encodes a position of a store of the given kind ("pg",
// "sqlite"; lower-case letters) as a Watermark. For store implementations.
func NewWatermark(kind string, pos uint64) Watermark {
	return Watermark(kind + "." + strconv.FormatUint(pos, 10))
}

// Position decodes a watermark that NewWatermark made for kind. The zero
// Watermark has position 0. Anything else, including a watermark of
// another kind of store, is an error wrapping ErrBadWatermark. For store
// implementations.
func (w Watermark) Position(kind string) (uint64, error) {
	if w == "" {
		return 0, nil
	}
	k, num, ok := strings.Cut(string(w), ".")
	if !ok || k == "" || num == "" || strings.TrimLeft(num, "0123456789") != "" {
		return 0, BadWatermark(w, "it is not a watermark a Plinth store made; pass the watermark of an earlier extract unchanged")
	}
	if k != kind {
		return 0, BadWatermark(w, fmt.Sprintf("it was made by a store of another kind (%s); this store is %s: take a full extract", k, kind))
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, BadWatermark(w, "it is not a watermark a Plinth store made; pass the watermark of an earlier extract unchanged")
	}
	return n, nil
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
