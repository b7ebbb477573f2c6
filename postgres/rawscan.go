package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/plinth-data/plinth"
)

// A scan's rows are decoded here from their binary wire form, straight
// into records: a report reads every row of a table, and pgx's general
// per-column scan plans cost more than the decoding itself. Rows whose
// columns do not all come in the binary form of the column's type go
// through pgx (scanner.record) instead.

// binaryOIDs are the type OIDs whose binary form rawValue decodes.
var binaryOIDs = map[string]uint32{
	typeText:        pgtype.TextOID,
	typeBigint:      pgtype.Int8OID,
	typeDouble:      pgtype.Float8OID,
	typeBoolean:     pgtype.BoolOID,
	typeDate:        pgtype.DateOID,
	typeTimestamptz: pgtype.TimestamptzOID,
	typeUUID:        pgtype.UUIDOID,
	typeJSONB:       pgtype.JSONBOID,
}

// rawDecodable reports whether every column of rows comes in the binary
// form rawRecord expects for the scanner's select list (text and jsonb may
// come in the text format, which pgx asks for: the same text), and notes
// each column's format for rawRecord.
func (s *scanner) rawDecodable(fds []pgconn.FieldDescription) bool {
	cols := s.columns()
	if len(fds) != len(cols)+3 {
		return false
	}
	s.formats = s.formats[:0]
	for i, c := range cols {
		s.formats = append(s.formats, fds[i].Format)
		oid, ok := binaryOIDs[c.sqlType]
		// Text's binary form is its text, and jsonb's is its text after a
		// version byte: either format will do.
		binaryForm := fds[i].Format == pgx.BinaryFormatCode || c.sqlType == typeText || c.sqlType == typeJSONB
		if !ok || fds[i].DataTypeOID != oid || !binaryForm {
			return false
		}
	}
	sys := []uint32{pgtype.Int8OID, pgtype.TimestamptzOID, pgtype.TimestamptzOID}
	for i, oid := range sys {
		if fd := fds[len(cols)+i]; fd.DataTypeOID != oid || fd.Format != pgx.BinaryFormatCode {
			return false
		}
	}
	return true
}

// columns are the key and field columns of the select list, in order.
func (s *scanner) columns() []*column {
	if s.cols == nil {
		s.cols, s.pos = s.t.selectCols, s.t.selectPos
	}
	return s.cols
}

// decode returns the record of rows' current row: decoded from its binary
// form when raw (rawDecodable said so), through pgx otherwise.
func (s *scanner) decode(rows pgx.Rows, raw bool) (plinth.Record, error) {
	if raw {
		return s.rawRecord(rows.RawValues())
	}
	return s.record(rows)
}

// rawRecord decodes one row of raw binary values into a record.
func (s *scanner) rawRecord(vals [][]byte) (plinth.Record, error) {
	cols := s.columns()
	var r plinth.Record
	if s.fieldValues {
		r.Values = s.maps.Values(len(s.t.e.Fields))
	} else {
		r.Data = s.maps.Get(len(cols))
	}
	// The record's strings and nested JSON text share one buffer: one
	// allocation per record rather than one per value. Strings point into
	// it (unsafe.String): it is only ever appended to, never changed.
	size := 0
	for i, c := range cols {
		if c.sqlType == typeText || c.sqlType == typeJSONB {
			size += len(vals[i])
		}
	}
	// Room for dates and times as text, and for the members a nested
	// value's stored text lacks (null).
	text := make([]byte, 0, size+size/2+s.textRoom())
	for i, c := range cols {
		raw := vals[i]
		if raw == nil {
			continue
		}
		f := c.field
		var v any
		var err error
		if c.sqlType == typeJSONB && s.formats[i] == pgx.BinaryFormatCode {
			if len(raw) == 0 || raw[0] != 1 {
				return plinth.Record{}, fmt.Errorf("%s: unknown jsonb format", f.Name)
			}
			raw = raw[1:]
		}
		if c.sqlType == typeJSONB && s.nestedJSON {
			var t plinth.JSONText // jsonb's text is valid JSON without duplicate names
			if text, t, err = f.StoredJSONText(text, raw, true); t != nil {
				v = t
			}
		} else {
			text, v, err = rawValue(text, c.sqlType, f, raw)
		}
		switch {
		case err != nil:
			return plinth.Record{}, fmt.Errorf("%s: %w", f.Name, err)
		case v == nil:
		case r.Values != nil:
			r.Values[s.pos[i]] = v
		default:
			r.Data[f.Name] = v
		}
	}
	n := len(cols)
	if len(vals[n]) != 8 {
		return plinth.Record{}, errBadBinary
	}
	r.Version = int64(binary.BigEndian.Uint64(vals[n]))
	var err error
	if r.CreatedAt, err = rawTime(vals[n+1]); err != nil {
		return plinth.Record{}, err
	}
	if r.UpdatedAt, err = rawTime(vals[n+2]); err != nil {
		return plinth.Record{}, err
	}
	return r, nil
}

var errBadBinary = errors.New("a column's binary value has the wrong length")

// textRoom is how much room a record's buffer needs beyond the text and
// nested JSON the row holds: dates and times as text, and some slack.
func (s *scanner) textRoom() int {
	if s.room == 0 {
		s.room = 64
		for _, c := range s.columns() {
			if c.sqlType == typeDate || c.sqlType == typeTimestamptz {
				s.room += len(time.RFC3339Nano)
			}
		}
	}
	return s.room
}

// rawValue decodes the binary form of a column of the given type into the
// field's canonical value, as decode does for pgx's scanned values. Text
// values (strings, dates, times) are appended to text and point into it.
func rawValue(text []byte, sqlType string, f *plinth.Field, raw []byte) ([]byte, any, error) {
	fixed := func(n int) error {
		if len(raw) != n {
			return errBadBinary
		}
		return nil
	}
	switch sqlType {
	case typeText:
		return appendString(text, raw)
	case typeBigint:
		if err := fixed(8); err != nil {
			return text, nil, err
		}
		return text, int64(binary.BigEndian.Uint64(raw)), nil
	case typeDouble:
		if err := fixed(8); err != nil {
			return text, nil, err
		}
		return text, math.Float64frombits(binary.BigEndian.Uint64(raw)), nil
	case typeBoolean:
		if err := fixed(1); err != nil {
			return text, nil, err
		}
		return text, raw[0] != 0, nil
	case typeDate:
		if err := fixed(4); err != nil {
			return text, nil, err
		}
		days := int32(binary.BigEndian.Uint32(raw))
		if days == math.MaxInt32 || days == math.MinInt32 {
			return text, nil, errors.New("the date is infinite")
		}
		start := len(text)
		text = pgEpoch.AddDate(0, 0, int(days)).AppendFormat(text, time.DateOnly)
		return stringAt(text, start)
	case typeTimestamptz:
		t, err := rawTime(raw)
		if err != nil {
			return text, nil, err
		}
		start := len(text) // as plinth.FormatTime writes it
		text = t.UTC().AppendFormat(text, time.RFC3339Nano)
		return stringAt(text, start)
	case typeUUID:
		if err := fixed(16); err != nil {
			return text, nil, err
		}
		return text, uuid.UUID(raw).String(), nil
	case typeJSONB:
		v, err := f.DecodeStored(raw)
		return text, v, err
	}
	return text, nil, fmt.Errorf("no binary decoding for %s", sqlType)
}

// appendString appends raw to text and returns it as a string that
// points into text.
func appendString(text, raw []byte) ([]byte, any, error) {
	start := len(text)
	return stringAt(append(text, raw...), start)
}

// stringAt returns text[start:] as a string that shares text's bytes,
// which must never change afterwards.
func stringAt(text []byte, start int) ([]byte, any, error) {
	if len(text) == start {
		return text, "", nil
	}
	return text, unsafe.String(&text[start], len(text)-start), nil
}

// pgEpoch is where PostgreSQL counts dates and timestamps from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// rawTime decodes a timestamptz: microseconds since pgEpoch.
func rawTime(raw []byte) (time.Time, error) {
	if len(raw) != 8 {
		return time.Time{}, errBadBinary
	}
	us := int64(binary.BigEndian.Uint64(raw))
	if us == math.MaxInt64 || us == math.MinInt64 {
		return time.Time{}, errors.New("the time is infinite")
	}
	return time.UnixMicro(pgEpoch.UnixMicro() + us).UTC(), nil
}

// appendJSON appends the record of one row of raw binary values (as
// rawDecodable found them) as the API's JSON: exactly what
// Entity.MarshalRecord writes for the record rawRecord decodes, written
// straight from the row, without a map or a boxed value per field. The
// record it returns carries the key (Record.Key), version and times; its
// JSON is left to the caller, who knows where b ends up.
func (s *scanner) appendJSON(b []byte, vals [][]byte) ([]byte, plinth.Record, error) {
	t := s.t
	n := len(s.columns())
	if len(vals[n]) != 8 {
		return b, plinth.Record{}, errBadBinary
	}
	r := plinth.Record{Version: int64(binary.BigEndian.Uint64(vals[n]))}
	var err error
	if r.CreatedAt, err = rawTime(vals[n+1]); err != nil {
		return b, plinth.Record{}, err
	}
	if r.UpdatedAt, err = rawTime(vals[n+2]); err != nil {
		return b, plinth.Record{}, err
	}
	if vals[0] == nil {
		return b, plinth.Record{}, errors.New("a row without a key")
	}
	if _, r.Key, err = rawValue(nil, t.key.sqlType, t.key.field, vals[0]); err != nil {
		return b, plinth.Record{}, fmt.Errorf("%s: %w", t.key.field.Name, err)
	}
	start := len(b)
	if len(t.e.Fields) == 0 {
		b = append(b, '{')
	}
	for i, prefix := range t.jsonPrefixes {
		b = append(b, prefix...)
		col := t.fieldCol[i]
		if col < 0 || vals[col] == nil {
			b = append(b, "null"...)
			continue
		}
		if b, err = s.appendValueJSON(b, col, vals[col]); err != nil {
			return b[:start], plinth.Record{}, fmt.Errorf("%s: %w", t.selectCols[col].field.Name, err)
		}
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, r.Version, 10)
	b = append(b, `,"createdAt":"`...)
	b = r.CreatedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","updatedAt":"`...)
	b = r.UpdatedAt.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"', '}'), r, nil
}

// appendValueJSON appends the JSON of column col's binary value raw, as
// Field.AppendJSON writes the value rawValue decodes from it (nested
// values as their JSON text).
func (s *scanner) appendValueJSON(b []byte, col int, raw []byte) ([]byte, error) {
	c := s.cols[col]
	fixed := func(n int) error {
		if len(raw) != n {
			return errBadBinary
		}
		return nil
	}
	switch c.sqlType {
	case typeText:
		return plinth.AppendJSONString(b, unsafe.String(unsafe.SliceData(raw), len(raw))), nil
	case typeBigint:
		if err := fixed(8); err != nil {
			return b, err
		}
		return strconv.AppendInt(b, int64(binary.BigEndian.Uint64(raw)), 10), nil
	case typeDouble:
		if err := fixed(8); err != nil {
			return b, err
		}
		return plinth.AppendJSONNumber(b, math.Float64frombits(binary.BigEndian.Uint64(raw))), nil
	case typeBoolean:
		if err := fixed(1); err != nil {
			return b, err
		}
		return strconv.AppendBool(b, raw[0] != 0), nil
	case typeDate:
		if err := fixed(4); err != nil {
			return b, err
		}
		days := int32(binary.BigEndian.Uint32(raw))
		if days == math.MaxInt32 || days == math.MinInt32 {
			return b, errors.New("the date is infinite")
		}
		b = append(b, '"')
		return append(pgEpoch.AddDate(0, 0, int(days)).AppendFormat(b, time.DateOnly), '"'), nil
	case typeTimestamptz:
		tm, err := rawTime(raw)
		if err != nil {
			return b, err
		}
		b = append(b, '"')
		return append(tm.AppendFormat(b, time.RFC3339Nano), '"'), nil
	case typeUUID:
		if err := fixed(16); err != nil {
			return b, err
		}
		return appendUUID(b, raw), nil
	case typeJSONB:
		if s.formats[col] == pgx.BinaryFormatCode {
			if len(raw) == 0 || raw[0] != 1 {
				return b, errors.New("unknown jsonb format")
			}
			raw = raw[1:]
		}
		// jsonb's text is valid JSON without duplicate names; a null
		// value is written as null, as MarshalRecord writes an absent one.
		return s.jsonb.AppendJSONB(b, c.field, raw)
	}
	return b, fmt.Errorf("no binary decoding for %s", c.sqlType)
}

// appendUUID appends a uuid's 16 bytes as a JSON string, as uuid.String
// spells it.
func appendUUID(b, u []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hex[c>>4], hex[c&0xf])
	}
	return append(b, '"')
}
