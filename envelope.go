package plinth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
)

// EventKind is the kind of change an event reports.
type EventKind string

// The kinds of change. Each is the last token of the event's subject.
const (
	EventCreated EventKind = "created"
	EventUpdated EventKind = "updated"
	EventDeleted EventKind = "deleted"
)

// EnvelopeVersion is the version of the event envelope, Event.Version.
const EnvelopeVersion = "v1"

// EventContext is what BuildEvent needs to know about the change beyond the records:
// where it happened, who made it and when.
type EventContext struct {
	// Environment is the deployment's environment: development, staging or
	// production. It is the second token of the subject; empty means
	// development.
	Environment string
	// SourceSystem is the system the change came from: the API ("plinth
	// residents API"), or the legacy system for a migrated or replicated
	// change. Empty means "plinth <domain> API".
	SourceSystem string
	// CorrelationID is the request's x-correlation-id.
	CorrelationID string
	// Principal made the change. For a user token the event's user is the
	// principal's name (its subject when it has none) and e-mail; for a
	// service token it is the consumer.
	Principal Principal
	// Now is the time of the change; zero means the current time.
	Now time.Time
}

// SubjectPrefix is the prefix of every subject of the environment:
// "plinth.<env>.".
func SubjectPrefix(env string) string { return "plinth." + env + "." }

// DomainSubjects is the subject filter that matches every event of one
// domain in one environment: "plinth.<env>.<domain>.>". Each domain has one
// stream that captures it.
func DomainSubjects(env, domain string) string { return SubjectPrefix(env) + domain + ".>" }

// EventSubject is the subject of a change to an entity:
// "plinth.<env>.<domain>.<plural>.<created|updated|deleted>". Domain names
// and plurals are kebab-case, so every token is a valid NATS token.
func EventSubject(env string, e *Entity, kind EventKind) string {
	return SubjectPrefix(env) + e.Domain.Name + "." + e.Plural + "." + string(kind)
}

// EventTypeName is the eventType of a change to an entity: the entity name in
// PascalCase, then Created, Updated or Deleted, then Event:
// "ResidentCreatedEvent".
func EventTypeName(e *Entity, kind EventKind) string {
	return pascalCase(e.Name) + pascalCase(string(kind)) + "Event"
}

// pascalCase turns camelCase or kebab-case into PascalCase.
func pascalCase(s string) string {
	var b strings.Builder
	upper := true
	for _, r := range s {
		if r == '-' || r == '_' || r == ' ' {
			upper = true
			continue
		}
		if upper {
			r = unicode.ToUpper(r)
			upper = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// BuildEvent makes the event of one change and its outbox entry. before is the
// record before the change (nil on create), after the record after it (nil
// on delete), both as the store returned them. A write appends the entry
// with EventTx.AppendEvent in the same transaction
// as the change.
//
// The event follows the EntityEventSns convention:
//
//   - create: eventData.oldData is null and newData the record, as the API
//     returns it (every field, null when absent, then version, createdAt,
//     updatedAt).
//   - update: oldData and newData hold only the top-level fields whose value
//     changed, before and after; a changed nested object or array appears
//     whole; a field that became null appears as null in newData. An update
//     that changes no field (version and timestamps aside) has no event:
//     BuildEvent returns ok false.
//   - delete: oldData is the record as it was and newData null.
//
// entityVersion is the record's version after the change; a delete reports
// the deleted version plus one, so the versions of one entity's events
// always increase. state is the record after the change as the API returns
// it, and null on delete.
//
// The payload (the event as JSON) writes records exactly as the API does,
// fields in spec order. The returned Event holds the same data as maps of
// canonical values (int64, float64, string …), where Decode of the payload
// gives json.Number for numbers.
//
// BuildEvent panics when a record the kind needs is nil: that is a programming
// error, and a panic rolls the transaction back rather than commit a change
// without its event.
func BuildEvent(e *Entity, kind EventKind, before, after *Record, c EventContext) (OutboxEntry, Event, bool) {
	return buildEvent(e, kind, before, after, c, true)
}

// buildEvent is BuildEvent; without withEvent the Event's data maps are
// not built (the write path keeps only the outbox entry).
func buildEvent(e *Entity, kind EventKind, before, after *Record, c EventContext, withEvent bool) (OutboxEntry, Event, bool) {
	api := func(r Record) map[string]any {
		if !withEvent {
			return nil
		}
		return apiRecord(e, r)
	}
	apiChanged := func(changed []*Field, r Record) map[string]any {
		if !withEvent {
			return nil
		}
		return apiFields(changed, r)
	}
	var (
		oldRaw, newRaw, stateRaw json.RawMessage
		oldMap, newMap, stateMap map[string]any
		rec                      *Record
		version                  int64
	)
	switch kind {
	case EventCreated:
		if after == nil {
			panic("BuildEvent: a created event needs the record after the change")
		}
		rec, version = after, after.Version
		stateRaw, stateMap = e.MarshalRecord(*after), api(*after)
		newRaw, newMap = stateRaw, stateMap
	case EventUpdated:
		if before == nil || after == nil {
			panic("BuildEvent: an updated event needs the records before and after the change")
		}
		rec, version = after, after.Version
		var changed []*Field
		for _, f := range e.Fields {
			if !reflect.DeepEqual(before.Data[f.Name], after.Data[f.Name]) {
				changed = append(changed, f)
			}
		}
		if len(changed) == 0 {
			return OutboxEntry{}, Event{}, false
		}
		oldRaw, oldMap = fieldsJSON(changed, *before), apiChanged(changed, *before)
		newRaw, newMap = fieldsJSON(changed, *after), apiChanged(changed, *after)
		stateRaw, stateMap = e.MarshalRecord(*after), api(*after)
	case EventDeleted:
		if before == nil {
			panic("BuildEvent: a deleted event needs the record before the change")
		}
		rec, version = before, before.Version+1
		oldRaw, oldMap = e.MarshalRecord(*before), api(*before)
	default:
		panic(fmt.Sprintf("BuildEvent: unknown kind %q", kind))
	}

	env := c.Environment
	if env == "" {
		env = EnvDevelopment
	}
	source := c.SourceSystem
	if source == "" {
		source = "plinth " + e.Domain.Name + " API"
	}
	now := c.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC().Truncate(time.Microsecond)

	w := wireEvent{
		ID:            uuid.Must(uuid.NewV7()).String(),
		EventType:     EventTypeName(e, kind),
		SourceDomain:  e.Domain.Name,
		SourceSystem:  source,
		Version:       EnvelopeVersion,
		CorrelationID: c.CorrelationID,
		DateTime:      now,
		User:          eventUser(c.Principal),
		EntityID:      KeyString(e.KeyOf(*rec)),
		EventData:     wireData{OldData: orNull(oldRaw), NewData: orNull(newRaw)},
		EntityVersion: version,
		State:         orNull(stateRaw),
	}
	payload := wirePayload(&w)
	ev := Event{
		ID:            w.ID,
		EventType:     w.EventType,
		SourceDomain:  w.SourceDomain,
		SourceSystem:  w.SourceSystem,
		Version:       w.Version,
		CorrelationID: w.CorrelationID,
		DateTime:      w.DateTime,
		User:          w.User,
		EntityID:      w.EntityID,
		EventData:     EventData{OldData: oldMap, NewData: newMap},
		EntityVersion: w.EntityVersion,
		State:         stateMap,
	}
	entry := OutboxEntry{
		Domain:  e.Domain.Name,
		Subject: EventSubject(env, e, kind),
		EventID: w.ID,
		Payload: payload,
		Record:  RecordRef(e, e.KeyOf(*rec)),
	}
	return entry, ev, true
}

// wirePayload is w as JSON, as encoding/json writes it (appendWireEvent,
// or Marshal itself for what that leaves to it).
func wirePayload(w *wireEvent) []byte {
	size := 512 + len(w.EventData.OldData) + len(w.EventData.NewData) + len(w.State)
	if b, ok := appendWireEvent(make([]byte, 0, size), w); ok {
		return b
	}
	b, err := json.Marshal(w)
	if err != nil {
		// Every part is valid JSON already; this cannot happen.
		panic(fmt.Sprintf("BuildEvent: encoding the event: %v", err))
	}
	return b
}

// wireEvent is Event as it is published: the same fields, with the
// records kept as the API encodes them (fields in spec order, integers
// exact) rather than passed through a map.
type wireEvent struct {
	ID            string          `json:"id"`
	EventType     string          `json:"eventType"`
	SourceDomain  string          `json:"sourceDomain"`
	SourceSystem  string          `json:"sourceSystem"`
	Version       string          `json:"version"`
	CorrelationID string          `json:"correlationId"`
	DateTime      time.Time       `json:"dateTime"`
	User          EventUser       `json:"user"`
	EntityID      string          `json:"entityId"`
	EventData     wireData        `json:"eventData"`
	EntityVersion int64           `json:"entityVersion"`
	State         json.RawMessage `json:"state"`
}

type wireData struct {
	OldData json.RawMessage `json:"oldData"`
	NewData json.RawMessage `json:"newData"`
}

var jsonNull = json.RawMessage("null")

func orNull(raw json.RawMessage) json.RawMessage {
	if raw == nil {
		return jsonNull
	}
	return raw
}

func eventUser(p Principal) EventUser {
	if p.IsService() {
		name := p.Consumer
		if name == "" {
			name = p.Subject
		}
		return EventUser{Name: name, Email: p.Email}
	}
	name := p.Name
	if name == "" {
		name = p.Subject
	}
	return EventUser{Name: name, Email: p.Email}
}

// fieldsJSON encodes the named top-level fields of a record as the API
// does, as one JSON object in spec order.
func fieldsJSON(fields []*Field, r Record) json.RawMessage {
	// MarshalRecord of an entity with just these fields, without the
	// system fields it appends: they come last, so the last
	// `,"version":` (which no string value can hold unescaped) starts them.
	b := (&Entity{Fields: fields}).MarshalRecord(Record{Data: r.Data})
	cut := bytes.LastIndex(b, []byte(`,"version":`))
	return append(b[:cut:cut], '}')
}

// apiFields returns the named top-level fields of a record as the API
// returns them: absent values, at every depth, as nil.
func apiFields(fields []*Field, r Record) map[string]any {
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		out[f.Name] = apiValue(f, r.Data[f.Name])
	}
	return out
}

// apiRecord returns a record as the API returns it, as a map: every field
// (nil when absent), version, createdAt and updatedAt.
func apiRecord(e *Entity, r Record) map[string]any {
	out := apiFields(e.Fields, r)
	out["version"] = r.Version
	out["createdAt"] = FormatTime(r.CreatedAt)
	out["updatedAt"] = FormatTime(r.UpdatedAt)
	return out
}

func apiValue(f *Field, v any) any {
	switch {
	case v == nil:
		return nil
	case f.Type == TypeObject:
		m, _ := v.(map[string]any)
		out := make(map[string]any, len(f.Fields))
		for _, sf := range f.Fields {
			out[sf.Name] = apiValue(sf, m[sf.Name])
		}
		return out
	case f.Type == TypeArray:
		items, _ := v.([]any)
		out := make([]any, len(items))
		for i, item := range items {
			out[i] = apiValue(f.Items, item)
		}
		return out
	}
	return v
}

// DecodeEvent decodes a published event. Numbers in oldData, newData and state
// are json.Number, so integers beyond 2^53 survive.
func DecodeEvent(payload []byte) (Event, error) {
	var ev Event
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&ev); err != nil {
		return Event{}, fmt.Errorf("not a Plinth event: %w", err)
	}
	if ev.ID == "" || ev.EventType == "" {
		return Event{}, fmt.Errorf("not a Plinth event: no id or eventType")
	}
	return ev, nil
}

// Publisher puts outbox entries on the bus. The relay (package events)
// calls it; package nats implements it over NATS JetStream.
type Publisher interface {
	// Publish publishes the entries in order, each with the header
	// Nats-Msg-Id set to its event ID, and returns once the bus has stored
	// every one of them. It is all or error: on error any prefix of the
	// entries may have been stored, and the caller publishes them all again
	// (the bus drops the ones it already has by their Nats-Msg-Id).
	Publish(ctx context.Context, entries []OutboxEntry) error
}

// PublishedFinder is a Publisher that can tell which pending entries the
// bus holds already: those a relay published and then stopped (crashed,
// lost its lease, failed to mark them) before the outbox marked them
// sent. The relay asks before it publishes again after such a stop, so
// that an entry is stored once however much later that is: the bus drops
// a repeated Nats-Msg-Id only within its duplicate window.
type PublishedFinder interface {
	// Published returns the event IDs of the entries (pending, in outbox
	// order) that the bus holds.
	Published(ctx context.Context, pending []OutboxEntry) ([]string, error)
}
