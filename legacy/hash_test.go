package legacy

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// jsonHash is what HashData must equal: the hash of the encoding/json
// bytes of the data with empty collections and nulls pruned.
func jsonHash(data map[string]any) Hash {
	b, _ := json.Marshal(pruned(data))
	return sha256.Sum256(b)
}

func pruned(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if p := pruned(val); p != nil {
				out[k] = p
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		if len(x) == 0 {
			return nil
		}
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = pruned(val)
		}
		return out
	}
	return v
}

// TestHashDataIsPrunedJSON: HashData gives the same hash as the pruned
// encoding/json bytes, for every kind of value a record (or a store's
// decoding of one) holds, and for every record of the case fixture.
func TestHashDataIsPrunedJSON(t *testing.T) {
	cases := []map[string]any{
		nil,
		{},
		{"a": nil, "b": []any{}, "c": map[string]any{"d": nil, "e": []any{}}},
		{"personId": int64(12), "n": 12, "f": 12.0, "g": 1.5, "tiny": 1e-9, "huge": 1e22, "neg": -0.000001, "num": json.Number("7")},
		{"s": "plain", "esc": "a\"b\\c\n<tag>&", "utf": "Zoë Ünal", "bad": "\xff\xfe", "sep": "\u2028"},
		{"t": true, "f": false, "at": time.Date(2024, 5, 1, 9, 30, 0, 0, time.UTC)},
		{"list": []any{nil, map[string]any{}, map[string]any{"x": nil}, map[string]any{"y": "1", "z": []any{}}, "s", int64(3)}},
		{"nested": map[string]any{"deep": map[string]any{"deeper": map[string]any{"v": "x", "w": nil}}, "k": []any{[]any{}}}},
		{"other": []string{"a", "b"}, "m": map[string]string{"b": "2", "a": "1"}},
		{"nan": math.NaN()},
	}
	for i, c := range cases {
		if got, want := HashData(c), jsonHash(c); got != want {
			b, _ := json.Marshal(pruned(c))
			t.Errorf("case %d: hash differs from encoding/json's of %s", i, b)
		}
	}
	if HashData(map[string]any{"a": "1"}) == HashData(map[string]any{"a": "2"}) {
		t.Fatal("different data, same hash")
	}
	ctx := context.Background()
	src, m := source(t, KindMariaDB)
	snap, err := src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	built, err := snap.readBatch(ctx, m, nil, fixtureRows)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range built {
		if b.Data == nil {
			continue
		}
		n++
		if HashData(b.Data) != jsonHash(b.Data) {
			t.Fatalf("record %v: hash differs from encoding/json's", b.Key)
		}
	}
	if n == 0 {
		t.Fatal("no records built")
	}
}
