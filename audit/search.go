package audit

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/plinth-data/plinth"
)

// Search returns one page of the records q selects, in sequence order after
// q.After, and whether more follow. q.Limit <= 0 means plinth.DefaultLimit.
func Search(ctx context.Context, store plinth.AuditStore, q plinth.AuditQuery) ([]plinth.AuditRecord, bool, error) {
	if q.Limit <= 0 {
		q.Limit = plinth.DefaultLimit
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return nil, false, &plinth.ValidationError{Errors: []plinth.FieldError{{Parameter: "until", Detail: "must be later than since"}}}
	}
	recs, more, err := store.AuditRecords(ctx, q)
	if err != nil {
		return nil, false, fmt.Errorf("audit: searching: %w", err)
	}
	return recs, more, nil
}

// SearchAll calls fn for every record q selects, in sequence order, a page
// of q.Limit at a time (plinth.MaxLimit when q.Limit <= 0).
func SearchAll(ctx context.Context, store plinth.AuditStore, q plinth.AuditQuery, fn func(plinth.AuditRecord) error) error {
	if q.Limit <= 0 {
		q.Limit = plinth.MaxLimit
	}
	for {
		recs, more, err := Search(ctx, store, q)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		if !more || len(recs) == 0 {
			return nil
		}
		q.After = recs[len(recs)-1].Sequence
	}
}

// ParseTime reads a point in time as an RFC 3339 time
// (2026-11-01T09:00:00Z), a date (2026-11-01, midnight UTC) or a duration
// back from now (720h, 90m). It returns the time in UTC.
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UTC(), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: give an RFC 3339 time (2026-11-01T09:00:00Z), a date (2026-11-01) or a duration back from now (720h)", s)
}

// reportParams are the query parameters of a report that are not filters.
var reportParams = []string{"format", "bom", "since", "updated_since"}

// ReportMayInclude reports whether the report an audit record describes
// may have included the record with data: the report had no filters, or
// the record meets them now. (The record may have changed since the
// report ran, so this is "may", in both directions.)
func ReportMayInclude(e *plinth.Entity, report plinth.AuditRecord, data map[string]any) bool {
	if report.Operation != "report" || report.Entity != e.Plural {
		return false
	}
	values := url.Values{}
	for k, v := range report.Filters {
		if !slices.Contains(reportParams, k) {
			values.Set(k, v)
		}
	}
	q, err := e.ParseQuery(values)
	if err != nil {
		return true // filters that no longer parse: the report may have held anything
	}
	return q.Matches(data)
}

// SearchAllWithArchive is SearchAll over a chain whose older records are
// in an archive (nil for none): the archived records q selects, then the
// store's after the archive's last.
func SearchAllWithArchive(ctx context.Context, store plinth.AuditStore, archive Archive, q plinth.AuditQuery, fn func(plinth.AuditRecord) error) error {
	if archive != nil {
		var last int64
		err := archive.ScanArchive(ctx, q.After, func(r plinth.AuditRecord) error {
			last = r.Sequence
			if q.Matches(r) {
				return fn(r)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit: searching the archive: %w", err)
		}
		q.After = max(q.After, last)
	}
	return SearchAll(ctx, store, q, fn)
}
