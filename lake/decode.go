package lake

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/internal/jsonscan"
	"github.com/plinth-data/plinth/parquet"
)

// entityView is how the lake sees an entity: its fields without the
// special-category ones (unless the domain opts them in), and the decoder
// of its state.
type entityView struct {
	e       *plinth.Entity // the lake's entity: the spec's, less what is left out
	prefix  string         // of its files: EntityPrefix or SpecialPrefix
	state   *plinth.Field  // an object of the fields plus version, createdAt, updatedAt
	omitted map[string]bool
	pruned  map[string]*plinth.Field // fields whose nested special-category members are cut
	makers  sync.Pool                // of *rowMaker: one per decoding goroutine at a time

	// The partition of the day events last came from, so that the lander
	// does not format its name for every event. Only the landing
	// goroutine uses them.
	day     int64
	dayPath string
}

// partition returns EventsPartition of the view's prefix and t's day.
func (v *entityView) partition(t time.Time) string {
	day := t.Unix() / 86400
	if t.Unix() < 0 && t.Unix()%86400 != 0 {
		day-- // before 1970: days count down
	}
	if v.dayPath == "" || day != v.day {
		v.day, v.dayPath = day, EventsPartition(v.prefix, t)
	}
	return v.dayPath
}

// LakeEntity returns the entity as the lake's main datasets hold it:
// without its special-category fields, top-level or nested in an object
// or array field (the key stays). Files, DDL and snapshots all use it, so
// they agree.
func LakeEntity(e *plinth.Entity) *plinth.Entity {
	return keepFields(e, func(f *plinth.Field) *plinth.Field {
		if f.PII == plinth.PIISpecial {
			return nil
		}
		return withoutSpecial(f)
	})
}

// SpecialEntity returns the entity as a domain's special-category dataset
// holds it: the key, the special-category fields and, whole, the fields
// with special-category members; nil when it has none.
func SpecialEntity(e *plinth.Entity) *plinth.Entity {
	se := keepFields(e, func(f *plinth.Field) *plinth.Field {
		if f.PII == plinth.PIISpecial || holdsSpecial(f) {
			return f
		}
		return nil
	})
	if len(se.Fields) == 1 {
		return nil
	}
	return se
}

// keepFields returns e with each field as keep makes it (nil: left out);
// the key stays as it is.
func keepFields(e *plinth.Entity, keep func(*plinth.Field) *plinth.Field) *plinth.Entity {
	var fields []*plinth.Field
	same := true
	for _, f := range e.Fields {
		k := f
		if f.Name != e.Key.Name {
			k = keep(f)
		}
		same = same && k == f
		if k != nil {
			fields = append(fields, k)
		}
	}
	if same {
		return e
	}
	le := *e
	le.Fields = fields
	return &le
}

// prunedFields returns the fields of e, by name, that le (a LakeEntity or
// SpecialEntity of e) holds without some of their nested members.
func prunedFields(e, le *plinth.Entity) map[string]*plinth.Field {
	out := map[string]*plinth.Field{}
	for _, f := range e.Fields {
		if lf := plinth.FieldByName(le.Fields, f.Name); lf != nil && lf != f {
			out[f.Name] = f
		}
	}
	return out
}

// newEntityView returns the view of le, a LakeEntity or SpecialEntity of
// e, whose files start with prefix.
func newEntityView(e, le *plinth.Entity, prefix string) *entityView {
	v := &entityView{e: le, prefix: prefix, omitted: map[string]bool{}, pruned: prunedFields(e, le)}
	v.makers.New = func() any { return &rowMaker{rows: parquet.NewEventRows(le)} }
	for _, f := range e.Fields {
		if plinth.FieldByName(le.Fields, f.Name) == nil {
			v.omitted[f.Name] = true
		}
	}
	fields := append([]*plinth.Field{}, le.Fields...)
	fields = append(fields,
		&plinth.Field{Name: "version", Type: plinth.TypeInteger},
		&plinth.Field{Name: "createdAt", Type: plinth.TypeString},
		&plinth.Field{Name: "updatedAt", Type: plinth.TypeString})
	v.state = &plinth.Field{Name: "state", Type: plinth.TypeObject, Fields: fields}
	return v
}

// wire is the envelope as published (plinth.BuildEvent).
type wire struct {
	ID            string    `json:"id"`
	EventType     string    `json:"eventType"`
	SourceSystem  string    `json:"sourceSystem"`
	CorrelationID string    `json:"correlationId"`
	DateTime      time.Time `json:"dateTime"`
	User          struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	} `json:"user"`
	EntityID  string `json:"entityId"`
	EventData struct {
		OldData jsontext.Value `json:"oldData"`
		NewData jsontext.Value `json:"newData"`
	} `json:"eventData"`
	EntityVersion int64          `json:"entityVersion"`
	State         jsontext.Value `json:"state"`
}

// rowMaker makes rows on one goroutine at a time.
type rowMaker struct {
	rows *parquet.EventRows
	text []byte // what oldData and newData are stripped into: one allocation for many events
}

// textArena is the least rowMaker.text allocates at once.
const textArena = 64 << 10

// parquetRow decodes a published event and makes it into a Parquet row.
func (v *entityView) parquetRow(seq uint64, payload []byte) (parquet.EventRow, parquet.Row, error) {
	maker := v.makers.Get().(*rowMaker)
	defer v.makers.Put(maker)
	ev, err := v.rowIn(seq, payload, &maker.text)
	if err != nil {
		return ev, parquet.Row{}, err
	}
	row, err := maker.rows.Row(ev)
	return ev, row, err
}

// row decodes a published event into the row the lake lands.
func (v *entityView) row(seq uint64, payload []byte) (parquet.EventRow, error) {
	return v.rowIn(seq, payload, nil)
}

// rowIn is row with what it strips appended to *arena (nil: allocated
// apart): walked with jsonscan, or through a decoder when it is not JSON
// as Plinth writes it.
func (v *entityView) rowIn(seq uint64, payload []byte, arena *[]byte) (parquet.EventRow, error) {
	r, ok, err := v.scan(seq, payload, arena)
	if !ok {
		r, err = v.decode(seq, payload)
	}
	if err != nil {
		return parquet.EventRow{}, err
	}
	if r.ID == "" || r.EventType == "" {
		return parquet.EventRow{}, fmt.Errorf("not a Plinth event: no id or eventType")
	}
	return r, nil
}

// scan reads the envelope member by member; ok is false when it cannot.
func (v *entityView) scan(seq uint64, payload []byte, arena *[]byte) (r parquet.EventRow, ok bool, err error) {
	r.Sequence = seq
	text := func(raw []byte) string {
		t, _, good := jsonscan.Text(raw, nil)
		if !good || len(t) == 0 {
			ok = ok && good
			return ""
		}
		// No copy: t points into the payload (or a fresh unescaped
		// buffer), which the row points into anyway and nothing changes.
		return unsafe.String(&t[0], len(t))
	}
	ok = true
	member := func(name, value []byte) bool {
		if jsonscan.IsNull(value) {
			return true
		}
		switch string(name) {
		case "id":
			r.ID = text(value)
		case "eventType":
			r.EventType = text(value)
		case "sourceSystem":
			r.SourceSystem = text(value)
		case "correlationId":
			r.CorrelationID = text(value)
		case "entityId":
			r.EntityID = text(value)
		case "dateTime":
			t, perr := time.Parse(time.RFC3339Nano, text(value))
			if perr != nil {
				err = fmt.Errorf("not a Plinth event: dateTime: %w", perr)
				return false
			}
			r.DateTime = t.UTC()
		case "entityVersion":
			n, perr := strconv.ParseInt(string(value), 10, 64)
			if perr != nil {
				err = fmt.Errorf("not a Plinth event: entityVersion %.20s", value)
				return false
			}
			r.EntityVersion = n
		case "user":
			ok = ok && jsonscan.Members(value, func(n, val []byte) bool {
				switch string(n) {
				case "name":
					r.UserName = text(val)
				case "email":
					r.UserEmail = text(val)
				}
				return true
			})
		case "eventData": // not an object: for the decoder to judge
			ok = false
		case "state":
			r.StateJSON = value
			if len(v.pruned) > 0 {
				r.StateJSON = v.strip(value, arena)
			}
		}
		return ok
	}
	// eventData is walked in place: its oldData and newData, the largest
	// members, are read once rather than skipped over first.
	eventData := func(at int) int {
		return jsonscan.Object(payload, at, func(name []byte, at int) int {
			var end int
			switch string(name) {
			case "oldData":
				r.OldData, end = v.stripAt(payload, at, arena)
			case "newData":
				r.NewData, end = v.stripAt(payload, at, arena)
			default:
				end = jsonscan.SkipValue(payload, at)
			}
			return end
		})
	}
	end := jsonscan.Object(payload, 0, func(name []byte, at int) int {
		if string(name) == "eventData" && payload[at] == '{' {
			return eventData(at)
		}
		end := jsonscan.SkipValue(payload, at)
		if end < 0 || !member(name, payload[at:end]) {
			return -1
		}
		return end
	})
	if err != nil {
		return r, true, err
	}
	return r, ok && end >= 0 && onlySpace(payload[end:]), nil
}

// onlySpace reports whether b is nothing but JSON white space.
func onlySpace(b []byte) bool { return len(bytes.TrimLeft(b, " \t\r\n")) == 0 }

// decode reads the envelope with a JSON decoder.
func (v *entityView) decode(seq uint64, payload []byte) (parquet.EventRow, error) {
	var w wire
	if err := json.Unmarshal(payload, &w, json.RejectUnknownMembers(false), jsontext.AllowDuplicateNames(true)); err != nil {
		return parquet.EventRow{}, fmt.Errorf("not a Plinth event: %w", err)
	}
	r := parquet.EventRow{
		Sequence: seq, ID: w.ID, EventType: w.EventType, EntityID: w.EntityID,
		EntityVersion: w.EntityVersion, DateTime: w.DateTime.UTC(),
		UserName: w.User.Name, UserEmail: w.User.Email,
		CorrelationID: w.CorrelationID, SourceSystem: w.SourceSystem,
		OldData: v.strip(w.EventData.OldData, nil), NewData: v.strip(w.EventData.NewData, nil),
	}
	if len(w.State) > 0 && string(w.State) != "null" {
		rec, err := v.record(v.strip(w.State, nil))
		if err != nil {
			return parquet.EventRow{}, fmt.Errorf("event %s: state: %w", w.ID, err)
		}
		r.State = &rec
	}
	return r, nil
}

// record decodes an event's state into a record of the lake's entity.
func (v *entityView) record(raw []byte) (plinth.Record, error) {
	val, err := v.state.DecodeStored(raw)
	if err != nil {
		return plinth.Record{}, err
	}
	m, _ := val.(map[string]any)
	rec := plinth.Record{Data: m}
	if n, ok := m["version"].(int64); ok {
		rec.Version = n
	}
	for name, t := range map[string]*time.Time{"createdAt": &rec.CreatedAt, "updatedAt": &rec.UpdatedAt} {
		if s, ok := m[name].(string); ok {
			if *t, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return plinth.Record{}, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	delete(m, "version")
	delete(m, "createdAt")
	delete(m, "updatedAt")
	return rec, nil
}

// strip removes the members the lake leaves out from oldData or newData:
// a top-level object as Plinth writes it (compact JSON), scanned member by
// member without decoding the values. The result is appended to *arena
// when it is not nil: the bytes already there are never written again,
// as rows still point into them.
func (v *entityView) strip(raw jsontext.Value, arena *[]byte) []byte {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if len(v.omitted) == 0 && len(v.pruned) == 0 {
		return raw
	}
	a := arenaFor(arena, len(raw))
	out, ok := stripMembers(a[len(a):], raw, v.omitted, v.pruned)
	if !ok {
		return stripSlow(raw, v.omitted, v.pruned)
	}
	return keep(arena, a, out)
}

// stripAt is strip of the value at payload[at:], which it walks once,
// and the offset just past the value (-1 when it is no JSON value).
func (v *entityView) stripAt(payload []byte, at int, arena *[]byte) ([]byte, int) {
	if payload[at] != '{' || len(v.omitted) == 0 && len(v.pruned) == 0 {
		end := jsonscan.SkipValue(payload, at)
		if end < 0 {
			return nil, -1
		}
		return v.strip(payload[at:end], arena), end
	}
	a := arenaFor(arena, len(payload)-at) // the value is no longer than the rest
	out, end := stripObject(a[len(a):], payload, at, v.omitted, v.pruned)
	if end < 0 {
		if end = jsonscan.SkipValue(payload, at); end < 0 {
			return nil, -1
		}
		return stripSlow(payload[at:end], v.omitted, v.pruned), end
	}
	return keep(arena, a, out), end
}

// arenaFor returns *arena with room for n more bytes, a new one when it
// has not (nil when arena is nil).
func arenaFor(arena *[]byte, n int) []byte {
	if arena == nil {
		return nil
	}
	if a := *arena; cap(a)-len(a) >= n {
		return a
	}
	*arena = make([]byte, 0, max(textArena, n))
	return *arena
}

// keep moves the arena a (*arena) past out when out was appended to it
// in place, and returns out capped: no later append reaches the arena.
func keep(arena *[]byte, a, out []byte) []byte {
	if arena != nil && cap(out) == cap(a)-len(a) {
		*arena = a[:len(a)+len(out)]
	}
	return out[:len(out):len(out)]
}

// stripMembers is strip's fast path: it appends the stripped object to
// dst[:0] (a new slice when dst is nil). ok is false for JSON jsonscan
// does not walk, which stripSlow then handles.
func stripMembers(dst, raw []byte, omit map[string]bool, prune map[string]*plinth.Field) (_ []byte, ok bool) {
	out, end := stripObject(dst, raw, 0, omit, prune)
	return out, end >= 0 && onlySpace(raw[end:])
}

// stripObject appends to dst[:0] (a new slice when dst is nil) the object
// at payload[at:] without the members omit names, and with those prune
// names pruned; it returns the offset just past the object, or -1 when
// jsonscan cannot walk it.
func stripObject(dst, payload []byte, at int, omit map[string]bool, prune map[string]*plinth.Field) ([]byte, int) {
	out := dst[:0]
	if out == nil {
		out = make([]byte, 0, len(payload)-at)
	}
	out = append(out, '{')
	end := jsonscan.Object(payload, at, func(name []byte, at int) int {
		vend := jsonscan.SkipValue(payload, at)
		if vend < 0 {
			return -1
		}
		if !omit[string(name)] { // member names need no unescaping: Plinth's are plain
			if len(out) > 1 {
				out = append(out, ',')
			}
			out = append(out, '"')
			out = append(out, name...)
			out = append(out, '"', ':')
			value := payload[at:vend]
			if f := prune[string(name)]; f != nil {
				value = pruneJSON(f, value)
			}
			out = append(out, value...)
		}
		return vend
	})
	if end < 0 {
		return nil, -1
	}
	return append(out, '}'), end
}

// stripSlow is strip through a JSON decoder.
func stripSlow(raw []byte, omit map[string]bool, prune map[string]*plinth.Field) []byte {
	var out bytes.Buffer
	out.Grow(len(raw))
	enc := jsontext.NewEncoder(&out, jsontext.AllowDuplicateNames(true))
	dec := jsontext.NewDecoder(bytes.NewReader(raw), jsontext.AllowDuplicateNames(true))
	if _, err := dec.ReadToken(); err != nil { // {
		return raw
	}
	_ = enc.WriteToken(jsontext.BeginObject)
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return raw
		}
		name := tok.String() // before the next read voids tok
		val, err := dec.ReadValue()
		if err != nil {
			return raw
		}
		if omit[name] {
			continue
		}
		if f := prune[name]; f != nil {
			val = pruneJSON(f, val)
		}
		_ = enc.WriteToken(jsontext.String(name))
		_ = enc.WriteValue(val)
	}
	_ = enc.WriteToken(jsontext.EndObject)
	return bytes.TrimRight(out.Bytes(), "\n")
}

// subjectPlural returns the plural of the entity a subject names:
// plinth.<env>.<domain>.<plural>.<kind>.
func subjectPlural(subject string) string {
	// Without strings.Split: no allocation for every message.
	rest := subject
	for range 3 {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			return ""
		}
		rest = rest[i+1:]
	}
	plural, kind, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(kind, '.') >= 0 {
		return ""
	}
	return plural
}
