package plinth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// AuditRecord is one entry of the audit trail: every request that touches
// data or access, allowed or denied, produces exactly one. Records form a
// hash chain: each carries the hash of the one before, so an edited,
// deleted, inserted or reordered record breaks the chain.
type AuditRecord struct {
	Sequence      int64             `json:"sequence"` // assigned by the store: 1, 2, 3 … with no gaps
	Time          time.Time         `json:"time"`
	CorrelationID string            `json:"correlationId"`
	Environment   string            `json:"environment"`
	Domain        string            `json:"domain,omitempty"`
	Entity        string            `json:"entity,omitempty"`    // plural
	Operation     string            `json:"operation"`           // list view create update delete report admin support
	Method        string            `json:"method,omitempty"`    // HTTP method
	Route         string            `json:"route,omitempty"`     // route template
	Filters       map[string]string `json:"filters,omitempty"`   // query parameters; may hold PII, so never logged
	Principal     Principal         `json:"principal"`           // who; empty subject when no valid token
	Decision      string            `json:"decision"`            // allow or deny
	Reason        string            `json:"reason,omitempty"`    // why denied, or what an admin action did
	Status        int               `json:"status"`              // HTTP status
	RecordIDs     []string          `json:"recordIds,omitempty"` // records returned or changed
	Count         int               `json:"count"`               // how many records (for reports, the only measure)
	DurationMs    float64           `json:"durationMs"`
	ClientAddress string            `json:"clientAddress,omitempty"`
	UserAgent     string            `json:"userAgent,omitempty"`
	PrevHash      string            `json:"prevHash"` // hex SHA-256 of the previous record; "" for the first
	Hash          string            `json:"hash"`     // hex SHA-256 of this record, PrevHash included
}

// Audit decisions.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// ComputeHash returns the hash the record must carry: SHA-256 over its
// canonical encoding, which is the record's JSON (fields in declaration
// order, map keys sorted, times in UTC to the microsecond) with Hash empty.
// Sequence and PrevHash are part of it, so a record cannot move in the
// chain without its hash changing.
func (r AuditRecord) ComputeHash() string {
	r.Hash = ""
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	b, _ := json.Marshal(r)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// AuditQuery selects audit records. Zero fields do not filter.
type AuditQuery struct {
	User     string // subject, e-mail or service-token consumer
	EntityID string // a record id among RecordIDs
	Domain   string
	Since    time.Time // inclusive
	Until    time.Time // exclusive
	After    int64     // sequence of the last record of the previous page
	Limit    int       // <= 0 means DefaultLimit
}

// AuditStore keeps the audit trail. It never updates or deletes a record.
type AuditStore interface {
	// AppendAudit stores records in one transaction, in order, assigning
	// each its Sequence, PrevHash and Hash; they are durable on return.
	AppendAudit(ctx context.Context, recs []AuditRecord) ([]AuditRecord, error)
	// AuditRecords returns matching records in sequence order after q.After.
	AuditRecords(ctx context.Context, q AuditQuery) (recs []AuditRecord, more bool, err error)
	// ScanAudit calls fn for every record after sequence after, in order,
	// exactly as stored, for verification.
	ScanAudit(ctx context.Context, after int64, fn func(AuditRecord) error) error
}

// AuditTx is implemented by a store's Tx when writes can carry their audit
// record in the same transaction.
type AuditTx interface {
	// AppendAudit adds a record to the chain within the transaction.
	AppendAudit(ctx context.Context, rec AuditRecord) (AuditRecord, error)
}

// NormalizeAudit returns r as stores keep it: Time in UTC to the
// microsecond (Now() when zero), text valid UTF-8 without U+0000,
// and a DurationMs that JSON can carry (0 for NaN and infinities). The
// hash is computed over this form, so a request with odd bytes in a header
// or filter is still audited, and still verifies.
func NormalizeAudit(r AuditRecord) AuditRecord {
	if r.Time.IsZero() {
		r.Time = Now()
	}
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	for _, p := range []*string{&r.CorrelationID, &r.Environment, &r.Domain, &r.Entity, &r.Operation, &r.Method,
		&r.Route, &r.Decision, &r.Reason, &r.ClientAddress, &r.UserAgent,
		&r.Principal.Subject, &r.Principal.Email, &r.Principal.Name, &r.Principal.TokenID, &r.Principal.Consumer} {
		*p = cleanText(*p)
	}
	if r.Filters != nil {
		f := make(map[string]string, len(r.Filters))
		for k, v := range r.Filters {
			f[cleanText(k)] = cleanText(v)
		}
		r.Filters = f
	}
	r.Principal.Groups = cleanList(r.Principal.Groups)
	r.RecordIDs = cleanList(r.RecordIDs)
	if math.IsNaN(r.DurationMs) || math.IsInf(r.DurationMs, 0) {
		r.DurationMs = 0
	}
	return r
}

// cleanText replaces invalid UTF-8 and U+0000 with U+FFFD.
func cleanText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// cleanList returns list with cleanText applied, copying it only when
// something changes.
func cleanList(list []string) []string {
	for i, s := range list {
		if c := cleanText(s); c != s {
			out := make([]string, len(list))
			copy(out, list)
			out[i] = c
			for j := i + 1; j < len(out); j++ {
				out[j] = cleanText(out[j])
			}
			return out
		}
	}
	return list
}
