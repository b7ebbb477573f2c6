package parquet

import (
	"fmt"
	"io"
	"time"
	"unsafe"

	pq "github.com/parquet-go/parquet-go"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/internal/jsonscan"
)

// Event files (the data lake's events datasets) hold one row per change
// event: the envelope, then the record's state flattened into the
// columns SchemaFor gives the entity, each prefixed with StatePrefix. So
// a state column has the very type the entity's report and snapshot
// columns have.
//
//	column          Parquet type                               from the event
//	sequence        INT64 (REQUIRED)                           the stream sequence
//	id              STRING                                     id
//	eventType       STRING (dictionary)                        eventType
//	entityId        STRING                                     entityId
//	entityVersion   INT64                                      entityVersion
//	dateTime        TIMESTAMP(MICROS, UTC)                     dateTime
//	userName        STRING                                     user.name
//	userEmail       STRING                                     user.email
//	correlationId   STRING                                     correlationId
//	sourceSystem    STRING                                     sourceSystem
//	oldData         STRING, JSON text                          eventData.oldData
//	newData         STRING, JSON text                          eventData.newData
//	state_<field>…  as SchemaFor                               state (null on delete)
//
// The prefix keeps the envelope's names (id, eventType …) and a field of
// the same name apart.
const StatePrefix = "state_"

// EventColumns are the envelope columns of an event file, in order.
var EventColumns = []string{"sequence", "id", "eventType", "entityId", "entityVersion", "dateTime",
	"userName", "userEmail", "correlationId", "sourceSystem", "oldData", "newData"}

// EventRow is one event as the lake lands it.
type EventRow struct {
	Sequence      uint64
	ID            string
	EventType     string
	EntityID      string
	EntityVersion int64
	DateTime      time.Time
	UserName      string
	UserEmail     string
	CorrelationID string
	SourceSystem  string
	// OldData and NewData are JSON text; nil is null.
	OldData, NewData []byte
	// State is the record after the change; nil on delete.
	State *plinth.Record
	// StateJSON, when State is nil, is the record after the change as
	// the API's JSON (as the event carries it); nil or null on delete.
	StateJSON []byte
}

// EventSchemaFor returns the Parquet schema of the events of an entity.
func EventSchemaFor(e *plinth.Entity) *pq.Schema {
	str := func(name string) pq.Field { return &field{Node: pq.Optional(pq.String()), name: name} }
	ts := pq.Optional(pq.Timestamp(pq.Microsecond))
	fields := []pq.Field{
		&field{Node: pq.Required(pq.Leaf(pq.Int64Type)), name: "sequence"},
		str("id"),
		&field{Node: pq.Optional(pq.Encoded(pq.String(), &pq.RLEDictionary)), name: "eventType"},
		str("entityId"),
		&field{Node: pq.Optional(pq.Leaf(pq.Int64Type)), name: "entityVersion"},
		&field{Node: ts, name: "dateTime"},
		str("userName"), str("userEmail"), str("correlationId"),
		&field{Node: pq.Optional(pq.Encoded(pq.String(), &pq.RLEDictionary)), name: "sourceSystem"},
		str("oldData"), str("newData"),
	}
	for _, f := range SchemaFor(e).Fields() {
		fields = append(fields, &field{Node: f, name: StatePrefix + f.Name()})
	}
	return pq.NewSchema(e.Name+"Events", &group{fields: fields})
}

// EventWriter streams the events of one entity into a Parquet file.
type EventWriter struct {
	w       *Writer
	rows    *EventRows
	pending []pq.Row // rows of their own, written in batches
}

// eventBatch is how many rows EventWriter hands parquet-go at once:
// column by column over a batch costs much less than row by row.
const eventBatch = 256

// NewEventWriter returns an EventWriter of the events of e to w.
func NewEventWriter(w io.Writer, e *plinth.Entity, opts Options) (*EventWriter, error) {
	m := NewMapping(e)
	// No min/max of oldData and newData: bounds of JSON text help no
	// reader skip a page, and comparing long texts for them costs.
	pw, err := newWriter(w, e, m, EventSchemaFor(e), opts, pq.SkipPageBounds("oldData"), pq.SkipPageBounds("newData"))
	if err != nil {
		return nil, err
	}
	return &EventWriter{w: pw, rows: &EventRows{m: m, nulls: len(e.Fields) + 3}}, nil
}

// EventRows turns events of an entity into rows of EventSchemaFor. Each
// goroutine needs its own; the rows it makes are independent of it, so
// they can be made on many goroutines and written on one.
type EventRows struct {
	m     *Mapping
	nulls int        // state columns
	arena []pq.Value // what rows are cut from: one allocation for many rows
}

// arenaValues is how many values EventRows allocates at once (about 48
// KiB): a row of its own each would be an allocation per event.
const arenaValues = 2048

// NewEventRows returns the row maker of e's events.
func NewEventRows(e *plinth.Entity) *EventRows {
	return &EventRows{m: NewMapping(e), nulls: len(e.Fields) + 3}
}

// Row is an event made into a row, ready for EventWriter.WriteRow.
type Row struct{ values pq.Row }

// Row makes the row of an event. Its values point into ev (a copy is
// made of what points into the maker's buffers), so ev's byte slices must
// not change until the row is written.
func (r *EventRows) Row(ev EventRow) (Row, error) {
	n := len(EventColumns) + r.nulls
	if cap(r.arena)-len(r.arena) < n {
		r.arena = make([]pq.Value, 0, max(arenaValues, n))
	}
	// The row's own part of the arena: appending to it cannot reach the
	// next row's, and the arena moves on past it.
	row := r.arena[len(r.arena) : len(r.arena) : len(r.arena)+n]
	r.arena = r.arena[:len(r.arena)+n]
	row = append(row,
		pq.Int64Value(int64(ev.Sequence)).Level(0, 0, 0),
		text(ev.ID, 1), text(ev.EventType, 2), text(ev.EntityID, 3),
		pq.Int64Value(ev.EntityVersion).Level(0, 1, 4),
		timestamp(ev.DateTime, 5),
		text(ev.UserName, 6), text(ev.UserEmail, 7), text(ev.CorrelationID, 8), text(ev.SourceSystem, 9),
		jsonText(ev.OldData, 10), jsonText(ev.NewData, 11),
	)
	base := len(EventColumns)
	var err error
	switch {
	case ev.State != nil:
		if row, err = r.m.appendColumns(row, *ev.State, base); err == nil {
			for i := base; i < len(row); i++ {
				row[i] = row[i].Clone() // nested text lives in the mapping's buffer
			}
		}
	case len(ev.StateJSON) > 0 && !jsonscan.IsNull(ev.StateJSON):
		var ok bool
		if row, ok, err = r.m.appendJSON(row, ev.StateJSON, base); err == nil && !ok {
			err = fmt.Errorf("the state is not a JSON object")
		}
	default:
		for i := 0; i < r.nulls; i++ {
			row = append(row, pq.NullValue().Level(0, 0, base+i))
		}
	}
	if err != nil {
		return Row{}, fmt.Errorf("event %s: %w", ev.ID, err)
	}
	return Row{row}, nil
}

// Write adds an event.
func (w *EventWriter) Write(ev EventRow) error {
	row, err := w.rows.Row(ev)
	if err != nil {
		return err
	}
	return w.WriteRow(row)
}

// WriteRow adds an event made into a row by an EventRows of the same
// entity. Rows are written in batches.
func (w *EventWriter) WriteRow(row Row) error {
	if w.w.closed {
		return fmt.Errorf("parquet: write after close")
	}
	w.pending = append(w.pending, row.values)
	if len(w.pending) >= eventBatch {
		return w.flush()
	}
	return nil
}

// flush writes the rows waiting for a batch.
func (w *EventWriter) flush() error {
	if len(w.pending) == 0 {
		return nil
	}
	err := w.w.writeRows(w.pending)
	clear(w.pending)
	w.pending = w.pending[:0]
	return err
}

// text is a string column's value; the empty string is null (the
// envelope's absent correlation id or e-mail).
func text(s string, col int) pq.Value {
	if s == "" {
		return pq.NullValue().Level(0, 0, col)
	}
	return pq.ByteArrayValue(unsafe.Slice(unsafe.StringData(s), len(s))).Level(0, 1, col)
}

func jsonText(b []byte, col int) pq.Value {
	if b == nil || string(b) == "null" {
		return pq.NullValue().Level(0, 0, col)
	}
	return pq.ByteArrayValue(b).Level(0, 1, col)
}

// Count returns the number of events written.
func (w *EventWriter) Count() int64 { return w.w.Count() + int64(len(w.pending)) }

// SetMetadata sets a key-value pair of the footer.
func (w *EventWriter) SetMetadata(key, value string) { w.w.SetMetadata(key, value) }

// Close writes the last rows and the footer. It does not close the
// underlying writer.
func (w *EventWriter) Close() error {
	if err := w.flush(); err != nil {
		return err
	}
	return w.w.Close()
}
