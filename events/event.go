package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
)

// Kind is the kind of change an event reports.
type Kind string

// The kinds of change. Each is the last token of the event's subject.
const (
	Created Kind = "created"
	Updated Kind = "updated"
	Deleted Kind = "deleted"
)

// EnvelopeVersion is the version of the event envelope, Event.Version.
const EnvelopeVersion = "v1"

// Context is what Build needs to know about the change beyond the records:
// where it happened, who made it and when.
type Context struct {
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
	Principal plinth.Principal
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

// Subject is the subject of a change to an entity:
// "plinth.<env>.<domain>.<plural>.<created|updated|deleted>". Domain names
// and plurals are kebab-case, so every token is a valid NATS token.
func Subject(env string, e *plinth.Entity, kind Kind) string {
	return SubjectPrefix(env) + e.Domain.Name + "." + e.Plural + "." + string(kind)
}

// EventType is the eventType of a change to an entity: the entity name in
// PascalCase, then Created, Updated or Deleted, then Event:
// "ResidentCreatedEvent".
func EventType(e *plinth.Entity, kind Kind) string {
	return pascal(e.Name) + pascal(string(kind)) + "Event"
}

// pascal turns camelCase or kebab-case into PascalCase.
func pascal(s string) string {
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

// Build makes the event of one change and its outbox entry. before is the
// record before the change (nil on create), after the record after it (nil
// on delete), both as the store returned them. A write appends the entry
// with the store's Tx.(plinth.EventTx).AppendEvent in the same transaction
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
//     Build returns ok false.
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
// Build panics when a record the kind needs is nil: that is a programming
// error, and a panic rolls the transaction back rather than commit a change
// without its event.
func Build(e *plinth.Entity, kind Kind, before, after *plinth.Record, c Context) (plinth.OutboxEntry, plinth.Event, bool) {
	var (
		oldRaw, newRaw, stateRaw json.RawMessage
		oldMap, newMap, stateMap map[string]any
		rec                      *plinth.Record
		version                  int64
	)
	switch kind {
	case Created:
		if after == nil {
			panic("events.Build: a created event needs the record after the change")
		}
		rec, version = after, after.Version
		stateRaw, stateMap = e.MarshalRecord(*after), apiRecord(e, *after)
		newRaw, newMap = stateRaw, stateMap
	case Updated:
		if before == nil || after == nil {
			panic("events.Build: an updated event needs the records before and after the change")
		}
		rec, version = after, after.Version
		var changed []*plinth.Field
		for _, f := range e.Fields {
			if !reflect.DeepEqual(before.Data[f.Name], after.Data[f.Name]) {
				changed = append(changed, f)
			}
		}
		if len(changed) == 0 {
			return plinth.OutboxEntry{}, plinth.Event{}, false
		}
		oldRaw, oldMap = fieldsJSON(changed, *before), apiFields(changed, *before)
		newRaw, newMap = fieldsJSON(changed, *after), apiFields(changed, *after)
		stateRaw, stateMap = e.MarshalRecord(*after), apiRecord(e, *after)
	case Deleted:
		if before == nil {
			panic("events.Build: a deleted event needs the record before the change")
		}
		rec, version = before, before.Version+1
		oldRaw, oldMap = e.MarshalRecord(*before), apiRecord(e, *before)
	default:
		panic(fmt.Sprintf("events.Build: unknown kind %q", kind))
	}

	env := c.Environment
	if env == "" {
		env = plinth.EnvDevelopment
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
		EventType:     EventType(e, kind),
		SourceDomain:  e.Domain.Name,
		SourceSystem:  source,
		Version:       EnvelopeVersion,
		CorrelationID: c.CorrelationID,
		DateTime:      now,
		User:          userOf(c.Principal),
		EntityID:      plinth.KeyString(e.KeyOf(*rec)),
		EventData:     wireData{OldData: orNull(oldRaw), NewData: orNull(newRaw)},
		EntityVersion: version,
		State:         orNull(stateRaw),
	}
	payload, err := json.Marshal(w)
	if err != nil {
		// Every part is valid JSON already; this cannot happen.
		panic(fmt.Sprintf("events.Build: encoding the event: %v", err))
	}
	ev := plinth.Event{
		ID:            w.ID,
		EventType:     w.EventType,
		SourceDomain:  w.SourceDomain,
		SourceSystem:  w.SourceSystem,
		Version:       w.Version,
		CorrelationID: w.CorrelationID,
		DateTime:      w.DateTime,
		User:          w.User,
		EntityID:      w.EntityID,
		EventData:     plinth.EventData{OldData: oldMap, NewData: newMap},
		EntityVersion: w.EntityVersion,
		State:         stateMap,
	}
	entry := plinth.OutboxEntry{
		Domain:  e.Domain.Name,
		Subject: Subject(env, e, kind),
		EventID: w.ID,
		Payload: payload,
	}
	return entry, ev, true
}

// wireEvent is plinth.Event as it is published: the same fields, with the
// records kept as the API encodes them (fields in spec order, integers
// exact) rather than passed through a map.
type wireEvent struct {
	ID            string           `json:"id"`
	EventType     string           `json:"eventType"`
	SourceDomain  string           `json:"sourceDomain"`
	SourceSystem  string           `json:"sourceSystem"`
	Version       string           `json:"version"`
	CorrelationID string           `json:"correlationId"`
	DateTime      time.Time        `json:"dateTime"`
	User          plinth.EventUser `json:"user"`
	EntityID      string           `json:"entityId"`
	EventData     wireData         `json:"eventData"`
	EntityVersion int64            `json:"entityVersion"`
	State         json.RawMessage  `json:"state"`
}

type wireData struct {
	OldData json.RawMessage `json:"oldData"`
	NewData json.RawMessage `json:"newData"`
}

var null = json.RawMessage("null")

func orNull(raw json.RawMessage) json.RawMessage {
	if raw == nil {
		return null
	}
	return raw
}

func userOf(p plinth.Principal) plinth.EventUser {
	if p.IsService() {
		name := p.Consumer
		if name == "" {
			name = p.Subject
		}
		return plinth.EventUser{Name: name, Email: p.Email}
	}
	name := p.Name
	if name == "" {
		name = p.Subject
	}
	return plinth.EventUser{Name: name, Email: p.Email}
}

// fieldsJSON encodes the named top-level fields of a record as the API
// does, as one JSON object in spec order.
func fieldsJSON(fields []*plinth.Field, r plinth.Record) json.RawMessage {
	// MarshalRecord of an entity with just these fields, without the
	// system fields it appends: they come last, so the last
	// `,"version":` (which no string value can hold unescaped) starts them.
	b := (&plinth.Entity{Fields: fields}).MarshalRecord(plinth.Record{Data: r.Data})
	cut := bytes.LastIndex(b, []byte(`,"version":`))
	return append(b[:cut:cut], '}')
}

// apiFields returns the named top-level fields of a record as the API
// returns them: absent values, at every depth, as nil.
func apiFields(fields []*plinth.Field, r plinth.Record) map[string]any {
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		out[f.Name] = apiValue(f, r.Data[f.Name])
	}
	return out
}

// apiRecord returns a record as the API returns it, as a map: every field
// (nil when absent), version, createdAt and updatedAt.
func apiRecord(e *plinth.Entity, r plinth.Record) map[string]any {
	out := apiFields(e.Fields, r)
	out["version"] = r.Version
	out["createdAt"] = plinth.FormatTime(r.CreatedAt)
	out["updatedAt"] = plinth.FormatTime(r.UpdatedAt)
	return out
}

func apiValue(f *plinth.Field, v any) any {
	switch {
	case v == nil:
		return nil
	case f.Type == plinth.TypeObject:
		m, _ := v.(map[string]any)
		out := make(map[string]any, len(f.Fields))
		for _, sf := range f.Fields {
			out[sf.Name] = apiValue(sf, m[sf.Name])
		}
		return out
	case f.Type == plinth.TypeArray:
		items, _ := v.([]any)
		out := make([]any, len(items))
		for i, item := range items {
			out[i] = apiValue(f.Items, item)
		}
		return out
	}
	return v
}

// Decode decodes a published event. Numbers in oldData, newData and state
// are json.Number, so integers beyond 2^53 survive.
func Decode(payload []byte) (plinth.Event, error) {
	var ev plinth.Event
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&ev); err != nil {
		return plinth.Event{}, fmt.Errorf("not a Plinth event: %w", err)
	}
	if ev.ID == "" || ev.EventType == "" {
		return plinth.Event{}, fmt.Errorf("not a Plinth event: no id or eventType")
	}
	return ev, nil
}
