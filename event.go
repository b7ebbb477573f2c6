package plinth

import (
	"context"
	"time"
)

// Event is a change event, in the envelope consumers of the widely used
// EntityEventSns shape already read, plus Plinth's entityVersion and state.
type Event struct {
	ID            string    `json:"id"`
	EventType     string    `json:"eventType"` // ResidentCreatedEvent, ResidentUpdatedEvent, ResidentDeletedEvent
	SourceDomain  string    `json:"sourceDomain"`
	SourceSystem  string    `json:"sourceSystem"`
	Version       string    `json:"version"` // envelope version: "v1"
	CorrelationID string    `json:"correlationId"`
	DateTime      time.Time `json:"dateTime"`
	User          EventUser `json:"user"`
	EntityID      string    `json:"entityId"`
	EventData     EventData `json:"eventData"`
	EntityVersion int64     `json:"entityVersion"`
	// State is the full record after the change; nil on delete.
	State map[string]any `json:"state"`
}

// EventUser is who made the change.
type EventUser struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// EventData holds the change: on update only the changed fields, old and
// new; on create NewData is the record; on delete OldData is.
type EventData struct {
	OldData map[string]any `json:"oldData"`
	NewData map[string]any `json:"newData"`
}

// OutboxEntry is one event waiting in, or read from, the outbox.
type OutboxEntry struct {
	Sequence int64  // assigned by the store, increasing in commit order per domain
	Domain   string // the event's domain; relays publish in order per domain
	Subject  string // plinth.<env>.<domain>.<entity>.<created|updated|deleted>
	EventID  string
	Payload  []byte // the Event as JSON, exactly as it will be published
	// Record names the record the event is about (RecordRef); empty for
	// none. A store that orders events per record rather than by one
	// sequence (DynamoDB) uses it; it is not stored or read back.
	Record string
	// Trace is the W3C traceparent of the traced request that wrote the
	// event, "" when none was traced (see WithTraceParent). Stores keep
	// it with the event; the relay links its publish span to it.
	Trace string
}

// RecordRef names a record across domains: "{domain}/{plural}/{key}".
func RecordRef(e *Entity, id any) string { return e.Domain.Name + "/" + e.Plural + "/" + KeyString(id) }

// EventTx is implemented by a store's Tx when writes can carry their events
// in the same transaction (the transactional outbox).
type EventTx interface {
	AppendEvent(ctx context.Context, e OutboxEntry) error
}

// OutboxStore is what a relay needs from a store.
type OutboxStore interface {
	// PendingEvents returns up to limit unsent entries in sequence order. It
	// never returns an entry while an entry with a lower sequence might
	// still commit, so a relay that publishes them in order skips nothing.
	PendingEvents(ctx context.Context, limit int) ([]OutboxEntry, error)
	// MarkEventsSent records that the entries with these event IDs were
	// published. Entries already marked, and IDs not in the outbox, are
	// left as they are. (By event ID rather than sequence: a store such as
	// DynamoDB keys its outbox items by event ID and has no sequence.)
	MarkEventsSent(ctx context.Context, eventIDs []string) error
	// AcquireRelayLease makes holder the active relay for ttl, or renews
	// its lease; false when another holder's lease has not expired. Only
	// the lease holder publishes, so several relays can run against one
	// store and one takes over when the active one dies.
	AcquireRelayLease(ctx context.Context, holder string, ttl time.Duration) (bool, error)
}

// PendingAfterReader is an OutboxStore that can read the unsent entries
// past a sequence. A relay that marks what it published in batches, some
// time after publishing it, reads past what it published and has not yet
// marked instead of reading it again (events.Relay).
type PendingAfterReader interface {
	// PendingEventsAfter is PendingEvents for the entries whose sequence
	// is greater than after; PendingEventsAfter(ctx, 0, limit) is
	// PendingEvents(ctx, limit).
	PendingEventsAfter(ctx context.Context, after int64, limit int) ([]OutboxEntry, error)
}
