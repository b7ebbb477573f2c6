package legacy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/plinth-data/plinth"
)

// Resolve checks the mapping against the domain specs and ties it to its
// entity: unknown fields, a key that cannot form the entity's key, child
// collections that are not arrays of objects, constants of the wrong type,
// required fields left unmapped. Every problem is reported at once.
func (m *Mapping) Resolve(domains []*plinth.Domain) error {
	var p problems
	p.file = m.File
	m.Entity = nil
	for _, d := range domains {
		for _, e := range d.Entities {
			if d.Name == m.Domain && e.Plural == m.Plural {
				m.Entity = e
			}
		}
	}
	if m.Entity == nil {
		p.add(m.lines.entity, "entity %q is not in domain %q (check the domain specs)", m.Plural, m.Domain)
		return p.err()
	}
	e := m.Entity
	m.resolveKey(&p)
	mapped := map[string]bool{e.Key.Name: true}
	if m.Key.LegacyField != "" {
		mapped[m.Key.LegacyField] = true
	}
	for _, f := range m.Fields {
		f.field, f.col = e.Field(f.Field), strings.ToLower(f.Column)
		switch {
		case f.field == nil:
			p.add(f.Line, "field %q is not a field of %s (fields: %s)", f.Field, e.Plural, fieldNames(e.Fields))
			continue
		case f.Field == e.Key.Name:
			p.add(f.Line, "field %q is the key; it is formed from key.columns", f.Field)
		case f.Field == m.Key.LegacyField:
			p.add(f.Line, "field %q keeps the legacy key (key.legacyField); it is filled from key.columns", f.Field)
		}
		mapped[f.Field] = true
		m.resolveField(&p, f, "", m.Children)
	}
	for _, c := range m.Children {
		if !c.Lookup {
			mapped[c.Field] = true
		}
		m.resolveChild(&p, c, e.Fields, e.Plural, "")
	}
	for _, f := range e.Fields {
		if f.Required && !mapped[f.Name] {
			p.add(m.lines.entity, "field %q of %s is required but nothing maps to it", f.Name, e.Plural)
		}
	}
	return p.err()
}

func (m *Mapping) resolveKey(p *problems) {
	e := m.Entity
	k := m.Key
	switch {
	case k.Generate == "uuid":
		if e.Key.Type != plinth.KeyUUID {
			p.add(k.Line, "key.generate uuid needs a uuid key, but %s's key %s is %s", e.Plural, e.Key.Name, e.Key.Type)
		}
		if lf := e.Field(k.LegacyField); lf == nil {
			p.add(k.Line, "key.legacyField %q is not a field of %s", k.LegacyField, e.Plural)
		} else if lf.Type != plinth.TypeString && !(lf.Type == plinth.TypeInteger && len(k.Columns) == 1) {
			p.add(k.Line, "key.legacyField %q must be a string field (or an integer field for a one-column key)", k.LegacyField)
		}
	case len(k.Columns) > 1 && e.Key.Type != plinth.KeyText:
		p.add(k.Line, "a composite key (%s) forms a text key, but %s's key %s is %s", strings.Join(k.Columns, ", "), e.Plural, e.Key.Name, e.Key.Type)
	case e.Key.Type == plinth.KeyUUID:
		p.add(k.Line, "%s's key %s is a uuid: map the legacy key with generate: uuid and legacyField", e.Plural, e.Key.Name)
	}
}

// resolveField checks a field's mapping; scope is the children its first
// may take from (the root's, or the enclosing child's own).
func (m *Mapping) resolveField(p *problems, f *FieldMap, within string, scope []*ChildMap) {
	what := within + f.Field
	if f.field.Type == plinth.TypeArray && f.Column != "" {
		p.add(f.Line, "field %q is an array: fill it with a child collection", what)
	}
	if f.HasConstant && f.Constant != nil && len(f.Transforms) == 0 {
		if _, err := f.field.Canonical(f.Constant); err != nil {
			p.add(f.Line, "field %q: the constant %v: %s", what, f.Constant, fieldProblem(err))
		}
	}
	if f.First != nil {
		c := childNamed(scope, f.First.Child)
		if c != nil && c.Lookup {
			if !slices.ContainsFunc(c.Fields, func(fm *FieldMap) bool { return fm.Field == f.First.Item }) {
				p.add(f.Line, "field %q: first.item %q is not a field of the lookup child %s", what, f.First.Item, c.Field)
			}
			return
		}
		if c == nil || c.field == nil || c.field.Items == nil {
			return
		}
		item := plinth.FieldByName(c.field.Items.Fields, f.First.Item)
		if item == nil {
			p.add(f.Line, "field %q: first.item %q is not a field of %s items", what, f.First.Item, c.Field)
		} else if item.Type != f.field.Type {
			p.add(f.Line, "field %q is %s but %s.%s is %s", what, f.field.Type, c.Field, item.Name, item.Type)
		}
		if f.First.When != "" {
			if w := plinth.FieldByName(c.field.Items.Fields, f.First.When); w == nil || w.Type != plinth.TypeBoolean {
				p.add(f.Line, "field %q: first.when %q is not a boolean field of %s items", what, f.First.When, c.Field)
			}
		}
		if f.First.Current && c.EndField == "" {
			p.add(f.Line, "field %q: first.current needs the child %s to name its endField", what, c.Field)
		}
	}
}

// resolveChild ties a child to the array field it fills among fields (the
// entity's, or the enclosing child's items', named by owner), and its
// nested children to its items' fields.
func (m *Mapping) resolveChild(p *problems, c *ChildMap, fields []*plinth.Field, owner, within string) {
	what := within + c.Field
	if c.Lookup {
		if c.Rows != "all" || c.EndField != "" {
			p.add(c.Line, "child %s: a lookup child has no rows or endField", what)
		}
		// Its items have no declared fields: what is nested in it can only
		// serve its first, as lookups too.
		for _, nc := range c.Children {
			if !nc.Lookup {
				p.add(nc.Line, "child %s.%s: a lookup child's children are lookups too (lookup: true)", what, nc.Field)
			}
			m.resolveChild(p, nc, nil, what, what+".")
		}
		return
	}
	c.field = plinth.FieldByName(fields, c.Field)
	if c.field == nil {
		p.add(c.Line, "child %q fills no field: %s has no field of that name (fields: %s)", what, owner, fieldNames(fields))
		return
	}
	if c.field.Type != plinth.TypeArray || c.field.Items == nil || c.field.Items.Type != plinth.TypeObject {
		p.add(c.Line, "child %q fills field %s, which is not an array of objects", what, what)
		c.field = nil
		return
	}
	items := c.field.Items.Fields
	mapped := map[string]bool{}
	for _, f := range c.Fields {
		f.field, f.col = plinth.FieldByName(items, f.Field), strings.ToLower(f.Column)
		if f.field == nil {
			p.add(f.Line, "child %s: field %q is not a field of its items (fields: %s)", what, f.Field, fieldNames(items))
			continue
		}
		mapped[f.Field] = true
		m.resolveField(p, f, what+".", c.Children)
	}
	for _, nc := range c.Children {
		if !nc.Lookup {
			mapped[nc.Field] = true
		}
		m.resolveChild(p, nc, items, what+" items", what+".")
	}
	if c.EndField != "" {
		if f := plinth.FieldByName(items, c.EndField); f == nil || (f.Type != plinth.TypeDate && f.Type != plinth.TypeDateTime) {
			p.add(c.Line, "child %s: endField %q is not a date field of its items", what, c.EndField)
		} else if !mapped[c.EndField] {
			p.add(c.Line, "child %s: endField %q is not mapped", what, c.EndField)
		}
	}
	for _, f := range items {
		if f.Required && !mapped[f.Name] {
			p.add(c.Line, "child %s: item field %q is required but nothing maps to it", what, f.Name)
		}
	}
}

// childNamed finds a child by its name among list.
func childNamed(list []*ChildMap, name string) *ChildMap {
	for _, c := range list {
		if c.Field == name {
			return c
		}
	}
	return nil
}

func fieldNames(fs []*plinth.Field) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

// fieldProblem is a validation error's detail without the field path.
func fieldProblem(err error) string {
	var ve *plinth.ValidationError
	if e, ok := err.(*plinth.ValidationError); ok {
		ve = e
	}
	if ve != nil && len(ve.Errors) > 0 {
		return ve.Errors[0].Detail
	}
	return err.Error()
}

// problems gathers "file:line: message" lines.
type problems struct {
	file string
	list []string
}

func (p *problems) add(line int, format string, args ...any) {
	p.list = append(p.list, fmt.Sprintf("%s:%d: %s", p.file, line, fmt.Sprintf(format, args...)))
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &Error{Problems: p.list}
}
