package plinth

// Encoders that write exactly what encoding/json's Marshal writes, for the
// two encodings every request or write pays for: the audit hash and the
// event envelope. Each handles the common case and leaves anything else to
// Marshal.

import (
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendHashJSON appends r as encoding/json's Marshal writes it, which is
// what ComputeHash hashes, and reports whether it could: false when r
// holds anything whose encoding it leaves to encoding/json (a string with
// a byte that JSON or HTML escaping changes, a number Marshal writes in
// exponent form or refuses, a time outside years 0–9999). Marshal itself
// was three quarters of ComputeHash's time, and the chainer hashes every
// record (BENCHMARKS.md, "2026-12-01, ninth session"). The output is the
// same byte for byte: FuzzAuditHashJSON and TestAuditHashJSONAsMarshal
// compare the two.
func appendHashJSON(b []byte, r *AuditRecord) ([]byte, bool) {
	ok := true
	str := func(b []byte, s string) []byte {
		if !plainJSON(s) {
			ok = false
			return b
		}
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	field := func(b []byte, name, value string, omitEmpty bool) []byte {
		if omitEmpty && value == "" {
			return b
		}
		b = append(b, ',', '"')
		b = append(b, name...)
		b = append(b, '"', ':')
		return str(b, value)
	}
	list := func(b []byte, name string, values []string) []byte {
		if len(values) == 0 {
			return b
		}
		b = append(b, ',', '"')
		b = append(b, name...)
		b = append(b, `":[`...)
		for i, v := range values {
			if i > 0 {
				b = append(b, ',')
			}
			b = str(b, v)
		}
		return append(b, ']')
	}
	if y := r.Time.Year(); y < 0 || y > 9999 {
		return b, false
	}
	d := r.DurationMs
	if a := math.Abs(d); math.IsNaN(d) || math.IsInf(d, 0) || (a != 0 && (a < 1e-6 || a >= 1e21)) {
		return b, false
	}
	b = append(b, `{"sequence":`...)
	b = strconv.AppendInt(b, r.Sequence, 10)
	b = field(b, "logId", r.LogID, true)
	b = append(b, `,"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = field(b, "correlationId", r.CorrelationID, false)
	b = field(b, "environment", r.Environment, false)
	b = field(b, "domain", r.Domain, true)
	b = field(b, "entity", r.Entity, true)
	b = field(b, "operation", r.Operation, false)
	b = field(b, "method", r.Method, true)
	b = field(b, "route", r.Route, true)
	if len(r.Filters) > 0 {
		keys := make([]string, 0, len(r.Filters))
		for k := range r.Filters {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, `,"filters":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = str(b, k)
			b = append(b, ':')
			b = str(b, r.Filters[k])
		}
		b = append(b, '}')
	}
	p := &r.Principal
	b = append(b, `,"principal":{"subject":`...)
	b = str(b, p.Subject)
	b = field(b, "email", p.Email, true)
	b = field(b, "name", p.Name, true)
	b = list(b, "groups", p.Groups)
	b = field(b, "tokenId", p.TokenID, true)
	b = field(b, "consumer", p.Consumer, true)
	b = append(b, '}')
	b = field(b, "decision", r.Decision, false)
	b = field(b, "reason", r.Reason, true)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = list(b, "recordIds", r.RecordIDs)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(r.Count), 10)
	b = append(b, `,"durationMs":`...)
	b = strconv.AppendFloat(b, d, 'f', -1, 64)
	b = field(b, "clientAddress", r.ClientAddress, true)
	b = field(b, "userAgent", r.UserAgent, true)
	b = field(b, "prevHash", r.PrevHash, false)
	b = field(b, "hash", r.Hash, false)
	return append(b, '}'), ok
}

// plainJSON reports whether encoding/json writes s as it is between
// quotes: valid UTF-8 without the characters it escapes (control
// characters, the quote, the backslash, <, > and & for HTML, and U+2028
// and U+2029 for JavaScript).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
		if c >= utf8.RuneSelf {
			return utf8.ValidString(s[i:]) && plainRunes(s[i:])
		}
	}
	return true
}

// plainRunes is plainJSON for the rest of a valid UTF-8 string.
func plainRunes(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c == '\u2028' || c == '\u2029' {
			return false
		}
	}
	return true
}

// appendWireEvent appends w as encoding/json's Marshal writes it, and
// reports whether it could: false when a string is not plainJSON, a raw
// part is not plainRawJSON, or the time is outside years 0–9999. Marshal
// checked and compacted the record's JSON twice over (the state and, on a
// create, the new data), 4 % of serve's CPU per create (BENCHMARKS.md,
// "2026-12-01, ninth session"); TestWireEventAsMarshal compares the two.
func appendWireEvent(b []byte, w *wireEvent) ([]byte, bool) {
	if y := w.DateTime.Year(); y < 0 || y > 9999 {
		return b, false
	}
	for _, s := range []string{w.ID, w.EventType, w.SourceDomain, w.SourceSystem, w.Version, w.CorrelationID,
		w.User.Name, w.User.Email, w.EntityID} {
		if !plainJSON(s) {
			return b, false
		}
	}
	for _, raw := range [][]byte{w.EventData.OldData, w.EventData.NewData, w.State} {
		if !plainRawJSON(raw) {
			return b, false
		}
	}
	str := func(b []byte, name, s string) []byte {
		b = append(b, name...)
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	b = str(b, `{"id":`, w.ID)
	b = str(b, `,"eventType":`, w.EventType)
	b = str(b, `,"sourceDomain":`, w.SourceDomain)
	b = str(b, `,"sourceSystem":`, w.SourceSystem)
	b = str(b, `,"version":`, w.Version)
	b = str(b, `,"correlationId":`, w.CorrelationID)
	b = append(b, `,"dateTime":"`...)
	b = w.DateTime.AppendFormat(b, time.RFC3339Nano)
	b = str(b, `","user":{"name":`, w.User.Name)
	b = str(b, `,"email":`, w.User.Email)
	b = str(b, `},"entityId":`, w.EntityID)
	b = append(b, `,"eventData":{"oldData":`...)
	b = append(b, w.EventData.OldData...)
	b = append(b, `,"newData":`...)
	b = append(b, w.EventData.NewData...)
	b = append(b, `},"entityVersion":`...)
	b = strconv.AppendInt(b, w.EntityVersion, 10)
	b = append(b, `,"state":`...)
	b = append(b, w.State...)
	return append(b, '}'), true
}

// plainRawJSON reports whether encoding/json copies raw, valid JSON, as it
// is: no white space between tokens (it compacts) and, inside strings, no
// <, > or & and no U+2028 or U+2029 (it escapes them). It does not check
// that raw is valid: BuildEvent's parts are JSON Plinth wrote.
func plainRawJSON(raw []byte) bool {
	if len(raw) == 0 {
		return false // Marshal writes an empty RawMessage as null
	}
	inString, escaped := false, false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString && (c == '<' || c == '>' || c == '&'):
			return false
		case inString && c == 0xe2 && i+2 < len(raw) && raw[i+1] == 0x80 && (raw[i+2] == 0xa8 || raw[i+2] == 0xa9):
			return false
		case c == '"':
			inString = true
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
}
