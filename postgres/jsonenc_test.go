package postgres

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// appendJSON must mean what encoding/json's text means: jsonb keeps the
// value, not the text, so key order and escaping may differ.
func TestAppendJSONMeansWhatEncodingJSONMeans(t *testing.T) {
	values := []any{
		nil, true, "plain", "quote \" back \\ slash", "tab\tnew\nline\rcr \x01 \x1f",
		"<html> & émigré 東京 \U0001F600", "bad \xff utf-8", int64(-42), 7, 3.5, 1e21, 1e-7, -0.0,
		json.Number("12.50"),
		map[string]any{"a": []any{map[string]any{"b": nil, "c": "d"}, int64(1), 2.25}, "e": map[string]any{}},
		[]any{}, []any{"x", []any{false}},
	}
	for _, v := range values {
		got, err := appendJSON(nil, v)
		if err != nil {
			t.Fatalf("%#v: %v", v, err)
		}
		want, _ := json.Marshal(v)
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("%#v: invalid JSON %s: %v", v, got, err)
		}
		_ = json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%#v: %s means %#v, encoding/json's %s means %#v", v, got, g, want, w)
		}
	}
}

func TestAppendJSONRefusesNULAndNaN(t *testing.T) {
	if _, err := appendJSON(nil, map[string]any{"a": []any{"x\x00y"}}); !errors.Is(err, errNUL) {
		t.Errorf("NUL: %v, want errNUL", err)
	}
	zero := 0.0
	if _, err := appendJSON(nil, []any{zero / zero}); err == nil {
		t.Error("NaN was encoded")
	}
}
