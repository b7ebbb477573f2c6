package plinth

import (
	"fmt"
	"strings"
	"time"
)

// Matches reports whether a record's canonical data meets every condition
// of the query, as the stores decide a list: exact values, folded prefix
// and contains, inclusive ranges, and, for a filter that reaches into an
// array of objects, some item that meets the condition. It serves where
// no store is asked, such as telling which reports may have included a
// record.
func (q Query) Matches(data map[string]any) bool {
	for _, c := range q.Conditions {
		if !c.matches(data) {
			return false
		}
	}
	return true
}

func (c Condition) matches(data map[string]any) bool {
	f := c.Filter
	if f.Array == nil {
		return c.matchesValue(valueAt(data, f.Path))
	}
	items, _ := data[f.Array.Name].([]any)
	for _, item := range items {
		obj, _ := item.(map[string]any)
		if c.matchesValue(valueAt(obj, f.Path[1:])) {
			return true
		}
	}
	return false
}

// valueAt follows a path of object fields.
func valueAt(data map[string]any, path []string) any {
	var v any = data
	for _, name := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[name]
	}
	return v
}

func (c Condition) matchesValue(v any) bool {
	if v == nil {
		return false
	}
	switch c.Op {
	case OpPrefix:
		s, ok := v.(string)
		return ok && strings.HasPrefix(Fold(s), c.Value.(string))
	case OpContains:
		s, ok := v.(string)
		return ok && strings.Contains(Fold(s), c.Value.(string))
	}
	order, ok := compare(v, c.Value)
	if c.Filter.Field != nil && c.Filter.Field.Type == TypeDateTime {
		order, ok = compareInstants(v, c.Value)
	}
	switch c.Op {
	case OpGTE:
		return ok && order >= 0
	case OpLTE:
		return ok && order <= 0
	}
	return ok && order == 0
}

// compare orders two canonical values of one field: numbers by value,
// text (dates and datetimes are canonical text) byte by byte. ok is false
// for values of different kinds, which never match.
func compare(a, b any) (order int, ok bool) {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return strings.Compare(x, y), ok
	case bool:
		y, ok := b.(bool)
		return 0, ok && x == y
	}
	x, okA := toFloat(a)
	y, okB := toFloat(b)
	switch {
	case !okA || !okB:
		return 0, false
	case x < y:
		return -1, true
	case x > y:
		return 1, true
	}
	return 0, true
}

// compareInstants orders canonical datetimes as instants: their text does
// not sort so ("10:00:00.5Z" is later than "10:00:00Z").
func compareInstants(a, b any) (order int, ok bool) {
	x, errA := time.Parse(time.RFC3339Nano, fmt.Sprint(a))
	y, errB := time.Parse(time.RFC3339Nano, fmt.Sprint(b))
	if errA != nil || errB != nil {
		return 0, false
	}
	return x.Compare(y), true
}
