package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

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
		s.cols = append([]*column{s.t.key}, s.t.fields...)
		s.pos = make([]int, len(s.cols))
		for i, c := range s.cols {
			s.pos[i] = slices.Index(s.t.e.Fields, c.field)
		}
	}
	return s.cols
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
	var text []byte // the nested fields' JSON text, one allocation per record
	if s.nestedJSON {
		n := 0
		for i, c := range cols {
			if c.sqlType == typeJSONB {
				n += len(vals[i])
			}
		}
		if n > 0 { // room for the members the stored text lacks (null)
			text = make([]byte, 0, n+n/2+64)
		}
	}
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
			v, err = rawValue(c.sqlType, f, raw)
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

// rawValue decodes the binary form of a column of the given type into the
// field's canonical value, as decode does for pgx's scanned values.
func rawValue(sqlType string, f *plinth.Field, raw []byte) (any, error) {
	fixed := func(n int) error {
		if len(raw) != n {
			return errBadBinary
		}
		return nil
	}
	switch sqlType {
	case typeText:
		return string(raw), nil
	case typeBigint:
		if err := fixed(8); err != nil {
			return nil, err
		}
		return int64(binary.BigEndian.Uint64(raw)), nil
	case typeDouble:
		if err := fixed(8); err != nil {
			return nil, err
		}
		return math.Float64frombits(binary.BigEndian.Uint64(raw)), nil
	case typeBoolean:
		if err := fixed(1); err != nil {
			return nil, err
		}
		return raw[0] != 0, nil
	case typeDate:
		if err := fixed(4); err != nil {
			return nil, err
		}
		days := int32(binary.BigEndian.Uint32(raw))
		if days == math.MaxInt32 || days == math.MinInt32 {
			return nil, errors.New("the date is infinite")
		}
		return pgEpoch.AddDate(0, 0, int(days)).Format(time.DateOnly), nil
	case typeTimestamptz:
		t, err := rawTime(raw)
		if err != nil {
			return nil, err
		}
		return plinth.FormatTime(t), nil
	case typeUUID:
		if err := fixed(16); err != nil {
			return nil, err
		}
		return uuid.UUID(raw).String(), nil
	case typeJSONB:
		return f.DecodeStored(raw)
	}
	return nil, fmt.Errorf("no binary decoding for %s", sqlType)
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
