package plinth

import (
	"fmt"
	"unicode/utf8"
)

// Bounds of the caller-controlled parts of an audit record. Without them a
// caller could grow the trail by a megabyte per request (a huge User-Agent,
// filter or id). A value over its bound keeps its first bytes and says how
// long it was, so the record still shows what was tried.
const (
	MaxAuditText    = 512  // user agent, method, principal fields, each id and filter name
	MaxAuditFilter  = 1024 // each filter value
	MaxAuditFilters = 32   // filters kept; the rest are counted
	MaxAuditIDs     = 1000 // record ids kept; Count still says how many
)

// BoundAudit returns r with every caller-controlled field within the bounds
// above.
func BoundAudit(r AuditRecord) AuditRecord {
	for _, p := range []*string{&r.UserAgent, &r.Method, &r.ClientAddress, &r.Principal.Subject,
		&r.Principal.Email, &r.Principal.Name, &r.Principal.TokenID, &r.Principal.Consumer} {
		*p = boundText(*p, MaxAuditText)
	}
	if len(r.Filters) > 0 {
		f := make(map[string]string, min(len(r.Filters), MaxAuditFilters+1))
		dropped := 0
		for k, v := range r.Filters {
			if len(f) >= MaxAuditFilters {
				dropped++
				continue
			}
			f[boundText(k, MaxAuditText)] = boundText(v, MaxAuditFilter)
		}
		if dropped > 0 {
			f["(more filters)"] = fmt.Sprint(dropped)
		}
		r.Filters = f
	}
	if len(r.Principal.Groups) > 0 {
		r.Principal.Groups = boundList(r.Principal.Groups, 100)
	}
	if r.Count == 0 {
		r.Count = len(r.RecordIDs)
	}
	r.RecordIDs = boundList(r.RecordIDs, MaxAuditIDs)
	return r
}

// boundText cuts s to at most max bytes on a character boundary, noting
// the original length.
func boundText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - 40
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s…[truncated from %d bytes]", s[:cut], len(s))
}

func boundList(list []string, maxItems int) []string {
	var out []string
	for i, s := range list {
		if i == maxItems {
			break
		}
		if b := boundText(s, MaxAuditText); b != s || out != nil {
			if out == nil {
				out = append(make([]string, 0, min(len(list), maxItems)), list[:i]...)
			}
			s = b
		}
		if out != nil {
			out = append(out, s)
		}
	}
	if out == nil {
		return list[:min(len(list), maxItems)]
	}
	return out
}
