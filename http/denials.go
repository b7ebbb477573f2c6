package http

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/plinth-data/plinth"
)

// DefaultDenialsPerMinute is how many denied requests per client address and
// minute are audited one by one; see denialLimiter.
const DefaultDenialsPerMinute = 20

// maxDenialClients bounds the addresses tracked in one minute; beyond it,
// further addresses share one aggregate, so a spread-out flood cannot grow
// memory either.
const maxDenialClients = 10000

// denialLimiter bounds the volume a flood of unauthenticated or denied
// requests adds to the audit trail while keeping the evidence: the first
// perMinute denials of a client address in a minute are recorded one by
// one; the rest of that minute are counted into one aggregated record per
// address, written when the minute ends.
type denialLimiter struct {
	perMinute int
	record    func(context.Context, plinth.AuditRecord) error
	logger    *slog.Logger

	mu      sync.Mutex
	minute  int64
	clients map[string]*denials
	armed   bool
}

type denials struct {
	seen    int
	counted int                // denials beyond perMinute
	first   plinth.AuditRecord // the first counted one, as a sample
}

func newDenialLimiter(perMinute int, record func(context.Context, plinth.AuditRecord) error, logger *slog.Logger) *denialLimiter {
	if perMinute <= 0 {
		perMinute = DefaultDenialsPerMinute
	}
	return &denialLimiter{perMinute: perMinute, record: record, logger: logger, clients: map[string]*denials{}}
}

// admit reports whether a denial is to be recorded on its own; when not,
// it is counted into its minute's aggregate.
func (l *denialLimiter) admit(rec plinth.AuditRecord) bool {
	minute := rec.Time.Unix() / 60
	l.mu.Lock()
	defer l.mu.Unlock()
	if minute != l.minute {
		pending := l.takeLocked()
		go l.write(pending) // not under the lock: writing waits for a commit
		l.minute = minute
	}
	addr := rec.ClientAddress
	if _, ok := l.clients[addr]; !ok && len(l.clients) >= maxDenialClients {
		addr = "(other addresses)"
	}
	c := l.clients[addr]
	if c == nil {
		c = &denials{}
		l.clients[addr] = c
	}
	c.seen++
	if c.seen <= l.perMinute {
		return true
	}
	if c.counted == 0 {
		c.first = rec
	}
	c.counted++
	if !l.armed {
		l.armed = true
		end := time.Unix((minute+1)*60, 0)
		time.AfterFunc(time.Until(end)+10*time.Millisecond, l.Flush)
	}
	return false
}

// Flush writes the aggregated records of the current minute now (at the
// minute's end, and when the server closes).
func (l *denialLimiter) Flush() {
	l.mu.Lock()
	pending := l.takeLocked()
	l.mu.Unlock()
	l.write(pending)
}

// takeLocked turns the minute's counts into aggregated records and starts
// counting afresh.
func (l *denialLimiter) takeLocked() []plinth.AuditRecord {
	var out []plinth.AuditRecord
	for addr, c := range l.clients {
		if c.counted == 0 {
			continue
		}
		rec := c.first
		rec.Sequence, rec.Hash, rec.PrevHash = 0, "", ""
		rec.Operation = "denied-aggregate"
		rec.Time = time.Unix((l.minute+1)*60, 0).UTC()
		rec.Count = c.counted
		rec.RecordIDs = nil
		rec.Reason = fmt.Sprintf("%d further denied requests from %s in the minute from %s, after the first %d recorded one by one; this record describes the first of them",
			c.counted, addr, time.Unix(l.minute*60, 0).UTC().Format(time.RFC3339), l.perMinute)
		out = append(out, rec)
	}
	clear(l.clients)
	l.armed = false
	return out
}

func (l *denialLimiter) write(recs []plinth.AuditRecord) {
	for _, rec := range recs {
		if err := l.record(context.Background(), rec); err != nil {
			l.logger.Error("aggregated audit record of denied requests could not be written", "error", err, "count", rec.Count)
		}
	}
}
