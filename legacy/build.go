package legacy

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
)

// keyNamespace derives generated keys from legacy keys (UUID version 5),
// so the same legacy row gets the same key on every run.
var keyNamespace = uuid.MustParse("6f1c5a52-5c1e-4d8e-9a57-6c0d3c1b7a10")

// LegacyKey is a root row's key column values, in key order.
type LegacyKey []any

// Text is the legacy key as text: composite parts joined by sep.
func (k LegacyKey) Text(sep string) string {
	if len(k) == 1 {
		return strings.TrimSpace(toText(k[0]))
	}
	parts := make([]string, len(k))
	for i, v := range k {
		parts[i] = strings.TrimSpace(toText(v))
	}
	return strings.Join(parts, sep)
}

// legacyKey reads the key columns of a root row.
func (m *Mapping) legacyKey(r Row) LegacyKey {
	k := make(LegacyKey, len(m.Key.Columns))
	for i, c := range m.Key.Columns {
		k[i] = r[strings.ToLower(c)]
	}
	return k
}

// RecordKey forms the record key from a legacy key: the value itself
// (integer or text), composite parts joined, or a key derived from it.
func (m *Mapping) RecordKey(k LegacyKey) (any, error) {
	for i, v := range k {
		if v == nil {
			return nil, fmt.Errorf("key column %s is null", m.Key.Columns[i])
		}
	}
	text := k.Text(m.Key.Separator)
	switch {
	case m.Key.Generate == "uuid":
		return uuid.NewSHA1(keyNamespace, []byte(m.System+"\x00"+m.Table+"\x00"+text)).String(), nil
	case m.Entity.Key.Type == plinth.KeyInteger:
		if n, ok := k[0].(int64); ok {
			return n, nil
		}
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("key %q is not an integer", text)
		}
		return n, nil
	}
	return text, nil
}

// TargetKey is the key the record of a legacy key has in the target:
// RecordKey, rewritten as Rewrite rewrites records.
func (m *Mapping) TargetKey(k LegacyKey) (any, error) {
	key, err := m.RecordKey(k)
	if err != nil || m.Rewrite == nil {
		return key, err
	}
	name := m.Entity.Key.Name
	out, err := m.Rewrite(m.Entity, map[string]any{name: key})
	if err != nil {
		return nil, err
	}
	return out[name], nil
}

// Rejection is a source row that could not become a valid record.
type Rejection struct {
	Key    string // the legacy key as text
	Reason string
}

// Build turns a root row and its child rows (already selected for it, in
// order, by child name) into a record's canonical data, validated against
// the entity. Nested children are not given here: they come out empty.
func (m *Mapping) Build(root Row, children map[string][]Row) (map[string]any, error) {
	return m.build(root, func(c *ChildMap, _ Row) []Row {
		if c.up == nil {
			return children[c.Field]
		}
		return nil
	})
}

// rowsFunc gives a child's rows joined to one row of the table it joins.
type rowsFunc func(c *ChildMap, parent Row) []Row

func (m *Mapping) build(root Row, rowsOf rowsFunc) (map[string]any, error) {
	e := m.Entity
	doc := map[string]any{}
	lk := m.legacyKey(root)
	key, err := m.RecordKey(lk)
	if err != nil {
		return nil, err
	}
	doc[e.Key.Name] = key
	if m.Key.LegacyField != "" {
		if f := e.Field(m.Key.LegacyField); f.Type == plinth.TypeInteger {
			doc[m.Key.LegacyField] = lk[0]
		} else {
			doc[m.Key.LegacyField] = lk.Text(m.Key.Separator)
		}
	}
	items := map[string][]any{}
	for _, c := range m.Children {
		list, err := m.buildItems(c, rowsOf(c, root), rowsOf)
		if err != nil {
			return nil, err
		}
		items[c.Field] = list
		if len(list) > 0 && !c.Lookup {
			doc[c.Field] = list
		}
	}
	for _, f := range m.Fields {
		var v any
		if f.First != nil {
			if v, err = coerce(f.field, first(f.First, childNamed(m.Children, f.First.Child), items[f.First.Child])); err != nil {
				return nil, fmt.Errorf("%s: %w", f.Field, err)
			}
		} else if v, err = f.value(root); err != nil {
			return nil, err
		}
		if v != nil {
			doc[f.Field] = v
		}
	}
	data, err := e.Validate(doc, false)
	if err != nil {
		return nil, err
	}
	return data, nil
}

// value reads and transforms one field's value from a row.
func (f *FieldMap) value(r Row) (any, error) {
	var v any
	switch {
	case f.HasConstant:
		v = f.Constant
	case len(f.Columns) > 0:
		list := make([]any, len(f.Columns))
		for i, c := range f.Columns {
			list[i] = r[strings.ToLower(c)]
		}
		v = list
	case f.col != "":
		v = r[f.col]
	default:
		v = r[strings.ToLower(f.Column)]
	}
	for i := 0; i < len(f.Transforms); i++ {
		t := &f.Transforms[i]
		if s, ok := v.(string); ok && t.text != nil {
			// A run of text functions works on the string itself, boxed
			// once at the end rather than after every step.
			for ; i < len(f.Transforms) && f.Transforms[i].text != nil; i++ {
				s = f.Transforms[i].text(s)
			}
			v, i = s, i-1
			continue
		}
		var err error
		if v, err = t.fn(v); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", f.Field, t.Name, err)
		}
	}
	v, err := coerce(f.field, v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Field, err)
	}
	return v, nil
}

// coerce converts a source value to what the field's type expects.
func coerce(f *plinth.Field, v any) (any, error) {
	if v == nil || f == nil {
		return v, nil
	}
	switch f.Type {
	case plinth.TypeString, plinth.TypeUUID:
		if t, ok := v.(time.Time); ok {
			return t.Format(time.RFC3339Nano), nil
		}
		if _, ok := v.(string); !ok {
			return toText(v), nil
		}
	case plinth.TypeDate:
		if t, ok := v.(time.Time); ok {
			return t.Format(time.DateOnly), nil
		}
	case plinth.TypeDateTime:
		if t, ok := v.(time.Time); ok {
			return t.UTC().Format(time.RFC3339Nano), nil
		}
	case plinth.TypeInteger:
		if s, ok := v.(string); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not an integer", s)
			}
			return n, nil
		}
	case plinth.TypeBoolean:
		switch x := v.(type) {
		case int64:
			return x != 0, nil
		case string:
			b, err := strconv.ParseBool(strings.TrimSpace(x))
			if err != nil {
				return nil, fmt.Errorf("%q is not true or false (decode it with a lookup)", x)
			}
			return b, nil
		}
	}
	return v, nil
}

// buildItems makes a child collection: rows kept by the conditions, mapped
// (with their own children), narrowed to current or historic rows,
// duplicates dropped.
func (m *Mapping) buildItems(c *ChildMap, rows []Row, rowsOf rowsFunc) ([]any, error) {
	var out []any
	today := time.Now().UTC().Format(time.DateOnly)
	for _, r := range rows {
		if !keep(c.Where, r) {
			continue
		}
		item := map[string]any{}
		var nested map[string][]any
		for _, nc := range c.Children {
			list, err := m.buildItems(nc, rowsOf(nc, r), rowsOf)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.Field, err)
			}
			if nested == nil {
				nested = map[string][]any{}
			}
			nested[nc.Field] = list
			if len(list) > 0 && !nc.Lookup {
				item[nc.Field] = list
			}
		}
		for _, f := range c.Fields {
			var v any
			var err error
			if f.First != nil {
				if v, err = coerce(f.field, first(f.First, childNamed(c.Children, f.First.Child), nested[f.First.Child])); err != nil {
					err = fmt.Errorf("%s: %w", f.Field, err)
				}
			} else {
				v, err = f.value(r)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.Field, err)
			}
			if v != nil {
				item[f.Field] = v
			}
		}
		if c.Rows != "all" && current(item, c.EndField, today) != (c.Rows == "current") {
			continue
		}
		if c.Distinct && containsItem(out, item) {
			continue
		}
		out = append(out, item)
	}
	return out, nil
}

// current reports whether an item has no end, or one not yet past.
func current(item map[string]any, endField, today string) bool {
	end, ok := item[endField].(string)
	return !ok || end == "" || end[:min(len(end), 10)] > today
}

func containsItem(list []any, item map[string]any) bool {
	for _, x := range list {
		if reflect.DeepEqual(x, item) {
			return true
		}
	}
	return false
}

// first takes the item field of the first item that qualifies.
func first(f *FirstMap, c *ChildMap, items []any) any {
	today := time.Now().UTC().Format(time.DateOnly)
	for _, it := range items {
		item := it.(map[string]any)
		if f.When != "" && item[f.When] != true {
			continue
		}
		if f.Current && !current(item, c.EndField, today) {
			continue
		}
		if v, ok := item[f.Item]; ok {
			return v
		}
	}
	return nil
}

// keep reports whether a row passes every condition. Values compare as
// trimmed text, ignoring case; a null is in no list.
func keep(conds []Condition, r Row) bool {
	for _, c := range conds {
		v := r[strings.ToLower(c.Column)]
		switch {
		case c.IsNull != nil:
			if (v == nil) != *c.IsNull {
				return false
			}
		case c.In != nil:
			if v == nil || !inFold(c.In, toText(v)) {
				return false
			}
		case c.NotIn != nil:
			if v != nil && inFold(c.NotIn, toText(v)) {
				return false
			}
		}
	}
	return true
}

func inFold(list []string, s string) bool {
	s = strings.TrimSpace(s)
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
