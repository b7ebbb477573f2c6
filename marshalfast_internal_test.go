package plinth

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// hashJSONCase checks appendHashJSON against encoding/json for r: when it
// says it could encode r, the bytes must be Marshal's.
func hashJSONCase(t *testing.T, r AuditRecord) (fast bool) {
	t.Helper()
	want, err := json.Marshal(r)
	got, ok := appendHashJSON(nil, &r)
	if !ok {
		return false
	}
	if err != nil {
		t.Fatalf("appendHashJSON encoded a record Marshal refuses (%v):\n%s", err, got)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("appendHashJSON differs from Marshal:\n got %s\nwant %s", got, want)
	}
	return true
}

// awkward are strings encoding/json escapes or writes as they are, one
// kind each.
var awkward = []string{
	"", "plain", "José Ñúñez", "名前", "emoji 🙂", "tab\there", "new\nline", "\x00", "\x1f", "\x7f",
	`quote"`, `back\slash`, "<script>", "a&b", "x>y", "\u2028", "\u2029", "\ufffd", "bad \xff utf-8",
	"half \xe2\x80", "/slash", "'single'", "mix é & <é>",
}

// plainShare is how often randomText writes only what encoding/json
// writes as it is (letters, digits, spaces, é, 名), so that a fair share
// of random records take appendHashJSON's way through.
var plainShare = 0.97

func randomText(rng *rand.Rand) string {
	if rng.Float64() < plainShare {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString([]string{"a", "Z", "0", " ", "é", "名", "-", ".", "@", "/"}[rng.IntN(10)])
		}
		return b.String()
	}
	if rng.IntN(3) == 0 {
		return awkward[rng.IntN(len(awkward))]
	}
	var b strings.Builder
	for range rng.IntN(12) {
		switch rng.IntN(6) {
		case 0:
			b.WriteString(awkward[rng.IntN(len(awkward))])
		case 1:
			b.WriteByte(byte(rng.IntN(256)))
		default:
			b.WriteByte(byte('a' + rng.IntN(26)))
		}
	}
	return b.String()
}

func randomList(rng *rand.Rand) []string {
	switch rng.IntN(4) {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	l := make([]string, rng.IntN(5)+1)
	for i := range l {
		l[i] = randomText(rng)
	}
	return l
}

var awkwardNumbers = []float64{0, math.Copysign(0, -1), 1.5, -2.25, 1e-6, 9.99e-7, 1e20, 1e21, 123456789.125,
	5e-324, math.MaxFloat64, math.NaN(), math.Inf(1), math.Inf(-1), 0.1, 1.0 / 3}

func randomRecord(rng *rand.Rand) AuditRecord {
	r := AuditRecord{
		Sequence: rng.Int64N(1 << 40), LogID: randomText(rng), CorrelationID: randomText(rng),
		Environment: randomText(rng), Domain: randomText(rng), Entity: randomText(rng), Operation: randomText(rng),
		Method: randomText(rng), Route: randomText(rng), Decision: randomText(rng), Reason: randomText(rng),
		Status: rng.IntN(600) - 50, RecordIDs: randomList(rng), Count: rng.IntN(1000) - 10,
		ClientAddress: randomText(rng), UserAgent: randomText(rng), PrevHash: randomText(rng), Hash: randomText(rng),
		Principal: Principal{Subject: randomText(rng), Email: randomText(rng), Name: randomText(rng),
			Groups: randomList(rng), TokenID: randomText(rng), Consumer: randomText(rng)},
	}
	if rng.IntN(4) == 0 {
		r.DurationMs = awkwardNumbers[rng.IntN(len(awkwardNumbers))]
	} else {
		r.DurationMs = rng.Float64() * math.Pow(10, float64(rng.IntN(30)-10))
	}
	switch rng.IntN(6) {
	case 0:
		r.Time = time.Date(rng.IntN(12000)-1000, 1, 1, 0, 0, 0, 0, time.UTC)
	case 1:
		r.Time = time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).UTC()
	case 2:
		r.Time = time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).UTC().Truncate(time.Microsecond)
	}
	if rng.IntN(3) > 0 {
		r.Filters = map[string]string{}
		for range rng.IntN(4) {
			r.Filters[randomText(rng)] = randomText(rng)
		}
	}
	return r
}

// TestAuditHashJSONAsMarshal compares the hash's encoding with
// encoding/json over random records built from awkward strings, numbers
// and times, and checks that plain records take the fast way.
func TestAuditHashJSONAsMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	fast := 0
	for range 20000 {
		if hashJSONCase(t, randomRecord(rng)) {
			fast++
		}
	}
	if fast < 100 {
		t.Fatalf("only %d of 20000 random records took the fast way: the test no longer compares it", fast)
	}
	plain := AuditRecord{Sequence: 7, Time: time.Date(2026, 12, 1, 10, 0, 0, 123456000, time.UTC),
		CorrelationID: "c-1", Environment: EnvProduction, Domain: "residents", Entity: "residents",
		Operation: "list", Method: "GET", Route: "/api/v1/residents", Filters: map[string]string{"b": "2", "a": "1"},
		Principal: Principal{Subject: "alice", Email: "alice@example.org", Name: "Alice Ñ", Groups: []string{"readers"}},
		Decision:  DecisionAllow, Status: 200, RecordIDs: []string{"1", "2"}, Count: 2, DurationMs: 1.25,
		ClientAddress: "127.0.0.1", UserAgent: "wrk", PrevHash: strings.Repeat("a", 64)}
	if !hashJSONCase(t, plain) {
		t.Fatal("a plain record was left to encoding/json")
	}
}

// FuzzAuditHashJSON: any strings and numbers, the same bytes as Marshal.
func FuzzAuditHashJSON(f *testing.F) {
	f.Add("alice", "José <x>", "k", "v\u2028", int64(3), 1.5, int64(1764583200123456))
	f.Add("", "\xff", "", "", int64(0), 1e21, int64(-62135596800000000))
	f.Fuzz(func(t *testing.T, subject, name, key, value string, seq int64, ms float64, micros int64) {
		r := AuditRecord{Sequence: seq, Time: time.UnixMicro(micros).UTC(), CorrelationID: name,
			Operation: key, Filters: map[string]string{key: value, value: key}, DurationMs: ms,
			Principal: Principal{Subject: subject, Name: name, Groups: []string{value}}, RecordIDs: []string{key}}
		hashJSONCase(t, r)
	})
}

// BenchmarkComputeHash is the chainer's hash of one view's record.
func BenchmarkComputeHash(b *testing.B) {
	r := AuditRecord{Sequence: 123456, Time: time.Now(), CorrelationID: "0f8fad5b-d9cb-469f-a165-70867728950e",
		Environment: EnvDevelopment, Domain: "residents", Entity: "residents", Operation: "view", Method: "GET",
		Route: "/api/v1/residents/{id}", Principal: Principal{Subject: "dev", Groups: []string{"readers", "writers"}},
		Decision: DecisionAllow, Status: 200, RecordIDs: []string{"4711"}, Count: 1, DurationMs: 0.412,
		ClientAddress: "127.0.0.1", UserAgent: "wrk", PrevHash: strings.Repeat("ab", 32)}
	for b.Loop() {
		_ = r.ComputeHash()
	}
}

// awkwardRaw are JSON values encoding/json copies as they are, or
// compacts or escapes.
var awkwardRaw = []string{
	`null`, `{}`, `[]`, `{"a":1,"b":[true,false,null],"c":{"d":"e"}}`, `"plain string"`, `{"name":"Flat 2, High St"}`,
	`{"x":"a<b"}`, `{"x":"a&b"}`, `{"x":">"}`, `{"x":"\u003c"}`, "{\"x\":\"\u2028\"}", "{\"x\":\"\u2029\"}",
	`{"x":"quote \" then <"}`, `{"x":"back\\"}`, `{"x":"back\\\\","y":"<"}`, `{ "spaced": 1 }`, "{\"a\":\n1}",
	`[1, 2]`, `{"x":"tab\tinside"}`, `{"é":"名"}`, `-0.5e-7`, `12345678901234567890`, ``,
	`{"x":"a\"<"}`, `{"x":"\\\"&"}`, `["\\","<"]`,
}

func randomWireEvent(rng *rand.Rand) wireEvent {
	raw := func() json.RawMessage {
		if rng.IntN(8) == 0 {
			return nil
		}
		return json.RawMessage(awkwardRaw[rng.IntN(len(awkwardRaw))])
	}
	w := wireEvent{ID: randomText(rng), EventType: randomText(rng), SourceDomain: randomText(rng),
		SourceSystem: randomText(rng), Version: randomText(rng), CorrelationID: randomText(rng),
		User: EventUser{Name: randomText(rng), Email: randomText(rng)}, EntityID: randomText(rng),
		EventData: wireData{OldData: orNull(raw()), NewData: orNull(raw())}, EntityVersion: rng.Int64() - rng.Int64(),
		State: orNull(raw())}
	if rng.IntN(6) == 0 {
		w.DateTime = time.Date(rng.IntN(12000)-1000, 1, 1, 0, 0, 0, 0, time.UTC)
	} else {
		w.DateTime = time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).UTC().Truncate(time.Microsecond)
	}
	return w
}

// TestWireEventAsMarshal compares the event envelope's encoding with
// encoding/json over random envelopes with awkward strings and raw parts.
func TestWireEventAsMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	fast := 0
	for range 20000 {
		w := randomWireEvent(rng)
		want, err := json.Marshal(w)
		got, ok := appendWireEvent(nil, &w)
		if !ok {
			continue
		}
		fast++
		if err != nil {
			t.Fatalf("appendWireEvent encoded an envelope Marshal refuses (%v):\n%s", err, got)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("appendWireEvent differs from Marshal:\n got %s\nwant %s", got, want)
		}
	}
	if fast < 1000 {
		t.Fatalf("only %d of 20000 random envelopes took the fast way", fast)
	}
}
