package plinth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// AuditRecord is one entry of the audit trail: every request that touches
// data or access, allowed or denied, produces exactly one. Records form a
// hash chain: each carries the hash of the one before, so an edited,
// deleted, inserted or reordered record breaks the chain.
//
// A record is written in two steps (see docs/audit-chain.md). Appending it
// makes it durable in the store's audit log, unchained: it has a LogID and
// no Sequence, PrevHash or Hash yet, and appending contends on nothing
// every writer shares. Shortly after, the one chainer (audit.Chainer, which
// holds a lease) gives it the next Sequence, PrevHash and Hash, in the
// order the store's log numbered the records.
type AuditRecord struct {
	Sequence int64 `json:"sequence"` // position in the chain, 1, 2, 3 … with no gaps; 0 while unchained
	// LogID is the store's id of the record in its audit log while it is
	// unchained (in order, for the chainer). It is not part of the hash and
	// chained records do not carry it.
	LogID         string            `json:"logId,omitempty"`
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
	r.Hash, r.LogID = "", ""
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	b, ok := appendHashJSON(make([]byte, 0, 1024), &r)
	if !ok {
		b, _ = json.Marshal(r)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Chained reports whether r has its place in the chain (a Sequence).
func (r AuditRecord) Chained() bool { return r.Sequence > 0 }

// Stored reports whether r was returned by a store that appended it:
// chained, or durable in the audit log awaiting the chainer. A caller that
// needs to know its record was written checks this, not Sequence, which
// stays 0 until the chainer has run.
func (r AuditRecord) Stored() bool { return r.Sequence > 0 || r.LogID != "" }

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

// AuditStore keeps the audit trail: an append-only audit log of records
// not yet chained, and the chain itself. It never updates or deletes a
// chained record.
//
// Writers append to the log only (AppendAudit here, or AuditTx inside a
// write), so appends contend on no row, item or lock that every append
// shares. One chainer at a time (the holder of the chain lease) moves
// records from the log into the chain: UnchainedAudit, then ChainAudit with
// the sequence numbers and hashes it computed. AuditRecords and ScanAudit
// read the chain only.
type AuditStore interface {
	// AppendAudit makes records durable in the audit log, in one atomic
	// write, in order, and returns them as stored: normalised
	// (NormalizeAudit), with LogID set and Sequence, PrevHash and Hash
	// empty until the chainer has run. len(recs) must not exceed
	// MaxAtomicBatch.
	AppendAudit(ctx context.Context, recs []AuditRecord) ([]AuditRecord, error)
	// AuditRecords returns matching chained records in sequence order after
	// q.After. Records not yet chained are not returned.
	AuditRecords(ctx context.Context, q AuditQuery) (recs []AuditRecord, more bool, err error)
	// ScanAudit calls fn for every chained record after sequence after, in
	// order, exactly as stored, for verification.
	ScanAudit(ctx context.Context, after int64, fn func(AuditRecord) error) error

	// MaxAtomicBatch is the most records AppendAudit and ChainAudit take
	// in one call: what the store can commit atomically (a DynamoDB
	// TransactWriteItems holds 100 items, so a store on it declares 49:
	// chaining deletes a log item and puts a chain item per record, and
	// puts the head).
	MaxAtomicBatch() int
	// UnchainedAudit returns up to limit records of the audit log, in log
	// order (LogID set, Sequence 0). It never returns a record while one
	// that precedes it in log order may still commit, so the chain is in
	// log order; and since the chainer takes every record left in the log,
	// a record that commits late is chained later, never skipped.
	UnchainedAudit(ctx context.Context, limit int) ([]AuditRecord, error)
	// CountUnchainedAudit returns how many records wait in the audit log.
	CountUnchainedAudit(ctx context.Context) (int64, error)
	// AuditHead returns the sequence and hash of the newest chained record
	// as the store's head keeps it (0 and "" for an empty chain).
	AuditHead(ctx context.Context) (sequence int64, hash string, err error)
	// ChainAudit atomically moves records from the log into the chain,
	// with the Sequence, PrevHash and Hash the chainer gave them: recs
	// follow on from the head (recs[0].Sequence is the head's sequence + 1
	// and recs[0].PrevHash its hash), each links to the one before, and
	// each LogID is still in the log. Otherwise nothing is changed and the
	// error wraps ErrConflict (another chainer moved the head). At most
	// MaxAtomicBatch records.
	ChainAudit(ctx context.Context, recs []AuditRecord) error
	// AcquireChainLease makes holder the active chainer for ttl, or renews
	// its lease; false while another holder's lease has not expired.
	AcquireChainLease(ctx context.Context, holder string, ttl time.Duration) (bool, error)
}

// AuditTx is implemented by a store's Tx when writes can carry their audit
// record in the same transaction.
type AuditTx interface {
	// AppendAudit adds a record to the audit log within the transaction
	// and returns it as it will be stored: with its LogID, unchained
	// (Stored() is true, Sequence is 0). It takes no lock that other
	// writers wait for.
	AppendAudit(ctx context.Context, rec AuditRecord) (AuditRecord, error)
}

// AuditAtCommitTx is implemented by an AuditTx that can send the audit
// record with the transaction's commit instead of waiting for it when it is
// appended (on PostgreSQL, a write's last round trip carries both). The
// Writer uses it when it can.
type AuditAtCommitTx interface {
	// AppendAuditAtCommit adds rec to the audit log within the transaction,
	// as AppendAudit does, but may send it later, at the latest with the
	// commit. *stored is set to the record as stored (with its LogID,
	// unchained) once it is written, and always before Store.Write returns
	// nil; if it cannot be written, the transaction does not commit and
	// Store.Write returns the error.
	AppendAuditAtCommit(ctx context.Context, rec AuditRecord, stored *AuditRecord) error
}

// AuditedReader is implemented by a store that can read and append the
// audit record of that read in one transaction and one round trip. The
// view and list routes use it while few requests overlap: there the
// auditor's own commit would follow the read, a round trip later
// (BENCHMARKS.md, "A read and its record in one statement").
type AuditedReader interface {
	// GetAudited reads the record with key id, as Get does and in the
	// form ctx asks for, and appends rec to the audit log in the same
	// transaction: with Status 200 when the record exists and 404 when it
	// does not, and DurationMs rec's plus the time the store took up to
	// the append. It returns the record (or an error wrapping ErrNotFound)
	// and rec as stored, as AppendAudit returns it. When nothing was
	// appended the stored record is zero (Stored() is false) and the
	// caller records the request itself.
	GetAudited(ctx context.Context, e *Entity, id any, rec AuditRecord) (Record, AuditRecord, error)
	// ListAudited reads a page as List does and appends rec in the same
	// transaction, with Status 200, the page's record ids (KeyString of
	// each key, in order) and their count, and DurationMs as GetAudited's.
	// It returns the page and rec as stored, or a zero record when
	// nothing was appended (the page may still have been read: the
	// caller records the request itself).
	ListAudited(ctx context.Context, e *Entity, q Query, rec AuditRecord) (Page, AuditRecord, error)
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

// AuditTrimmer is implemented by a store that can drop the oldest chained
// records from its audit trail, once they are archived elsewhere (the data
// lake's _audit dataset, `plinth lake audit`). It is the one exception to
// "never deletes a chained record": the head stays, so the chain goes on,
// and the archive with its hashes keeps the chain verifiable.
type AuditTrimmer interface {
	// TrimAudit deletes the chained records with sequence through or
	// lower (never the head) and returns how many it deleted.
	TrimAudit(ctx context.Context, through int64) (int64, error)
}

// Matches reports whether a record meets the query's filters (not After or
// Limit): what a store's AuditRecords selects, for stores and archives that
// filter in Go.
func (q AuditQuery) Matches(r AuditRecord) bool {
	p := r.Principal
	switch {
	case q.User != "" && q.User != p.Subject && q.User != p.Email && q.User != p.Consumer:
		return false
	case q.EntityID != "" && !slices.Contains(r.RecordIDs, q.EntityID):
		return false
	case q.Domain != "" && q.Domain != r.Domain:
		return false
	case !q.Since.IsZero() && r.Time.Before(q.Since):
		return false
	case !q.Until.IsZero() && !r.Time.Before(q.Until):
		return false
	}
	return true
}
