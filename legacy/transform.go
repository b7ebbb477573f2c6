package legacy

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

// Transform is one step that turns a legacy value into a field's value.
type Transform struct {
	Name   string
	Line   int
	fn     func(v any) (any, error)
	text   func(string) string // the same as fn for a text value, when it is a text function
	lookup *Lookup
}

// TransformNames lists the transforms a mapping may use, for messages and docs.
var TransformNames = []string{"trim", "squeeze", "nullIf", "upper", "lower", "title", "nullIfEmpty", "date", "datetime", "lookup", "concat", "default", "integer", "number"}

// titleCasers: a Caser keeps state while it works, so each goroutine
// takes its own.
var titleCasers = sync.Pool{New: func() any { return cases.Title(language.BritishEnglish) }}

func titleCase(s string) string {
	if t, ok := asciiTitle(s); ok {
		return t
	}
	c := titleCasers.Get().(cases.Caser)
	defer titleCasers.Put(c)
	return c.String(strings.ToLower(s))
}

// asciiBreaks and asciiMids are, for each ASCII byte that is not a
// letter, whether the title caser starts a new word after it, and whether
// it is a character that joins a word's parts (two in a row start a new
// word): learnt from the caser itself, so that asciiTitle does as it does.
var asciiBreaks, asciiMids = func() (breaks, mids [utf8.RuneSelf]bool) {
	c := cases.Title(language.BritishEnglish)
	for b := range utf8.RuneSelf {
		if isASCIILetter(byte(b)) {
			continue
		}
		ch := string(rune(b))
		breaks[b] = c.String("a"+ch+"b") == "A"+ch+"B"
		mids[b] = !breaks[b] && c.String("a"+ch+ch+"b") == "A"+ch+ch+"B"
	}
	return breaks, mids
}()

func isASCIILetter(b byte) bool { return b|0x20 >= 'a' && b|0x20 <= 'z' }

// asciiTitle title-cases ASCII text as the caser does, without its
// per-call cost (most legacy names are ASCII); ok is false for other text.
func asciiTitle(s string) (string, bool) {
	var out strings.Builder
	out.Grow(len(s))
	midWord, wasMid := false, false
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b >= utf8.RuneSelf {
			return "", false
		}
		mid := asciiMids[b]
		if wasMid && mid {
			midWord = false
		}
		switch {
		case isASCIILetter(b) && !midWord:
			out.WriteByte(b &^ 0x20)
			midWord = true
		case isASCIILetter(b):
			out.WriteByte(b | 0x20)
		default:
			out.WriteByte(b)
			if asciiBreaks[b] {
				midWord = false
			}
		}
		wasMid = mid
	}
	return out.String(), true
}

// textFn makes a transform of a string function; nulls stay null and
// lists (several columns before concat) are transformed item by item.
func textFn(f func(string) string) func(any) (any, error) {
	var apply func(v any) (any, error)
	apply = func(v any) (any, error) {
		switch x := v.(type) {
		case nil:
			return nil, nil
		case string:
			return f(x), nil
		case []any:
			out := make([]any, len(x))
			for i, item := range x {
				out[i], _ = apply(item)
			}
			return out, nil
		}
		return v, nil
	}
	return apply
}

func (l *loader) transform(n *yaml.Node, what string, lookups map[string]*Lookup) (Transform, bool) {
	name, arg := n.Value, (*yaml.Node)(nil)
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 {
		name, arg = n.Content[0].Value, n.Content[1]
	} else if n.Kind != yaml.ScalarNode {
		l.Errorf(n, "%s: a transform is a name (trim) or a name with its argument ({date: dd/MM/yyyy})", what)
		return Transform{}, false
	}
	t := Transform{Name: name, Line: n.Line}
	needArg := func() bool {
		if arg == nil {
			l.Errorf(n, "%s: transform %s needs an argument", what, name)
			return false
		}
		return true
	}
	noArg := func(f func(string) string) {
		if arg != nil {
			l.Errorf(n, "%s: transform %s takes no argument", what, name)
		}
		t.fn, t.text = textFn(f), f
	}
	switch name {
	case "trim":
		noArg(strings.TrimSpace)
	case "squeeze":
		noArg(func(s string) string { return strings.Join(strings.Fields(s), " ") })
	case "upper":
		noArg(strings.ToUpper)
	case "lower":
		noArg(strings.ToLower)
	case "title":
		noArg(titleCase)
	case "nullIfEmpty":
		if arg != nil {
			l.Errorf(n, "%s: transform nullIfEmpty takes no argument", what)
		}
		t.fn = nullIfEmpty
	case "nullIf":
		if !needArg() {
			return t, false
		}
		nulls := l.strs(arg, what+": nullIf")
		t.fn = func(v any) (any, error) {
			if v == nil {
				return nil, nil
			}
			s := strings.TrimSpace(toText(v))
			if tm, ok := v.(time.Time); ok {
				s = tm.Format(time.DateOnly)
				if tm.Hour()+tm.Minute()+tm.Second() > 0 {
					s = tm.Format("2006-01-02 15:04:05")
				}
			}
			for _, n := range nulls {
				if strings.EqualFold(s, n) {
					return nil, nil
				}
			}
			return v, nil
		}
	case "date", "datetime":
		if !needArg() {
			return t, false
		}
		t.fn = l.timeTransform(arg, what, name == "datetime")
	case "lookup":
		if !needArg() {
			return t, false
		}
		lk := lookups[arg.Value]
		if lk == nil {
			l.Errorf(arg, "%s: lookup %q is not declared under lookups", what, arg.Value)
			return t, false
		}
		t.fn, t.lookup = lk.apply, lk
	case "concat":
		sep := " "
		if arg != nil {
			sep = arg.Value
		}
		t.fn = func(v any) (any, error) { return concat(v, sep), nil }
	case "default":
		if !needArg() {
			return t, false
		}
		d := l.scalar(arg, what+": default")
		t.fn = func(v any) (any, error) {
			if v == nil {
				return d, nil
			}
			return v, nil
		}
	case "integer", "number":
		if arg != nil {
			l.Errorf(n, "%s: transform %s takes no argument", what, name)
		}
		t.fn = numberFn(name == "integer")
	default:
		l.Errorf(n, "%s: unknown transform %q (known: %s)", what, name, strings.Join(TransformNames, ", "))
		return t, false
	}
	return t, true
}

func nullIfEmpty(v any) (any, error) {
	if s, ok := v.(string); ok && strings.TrimSpace(s) == "" {
		return nil, nil
	}
	return v, nil
}

// concat joins the non-empty values of several columns.
func concat(v any, sep string) any {
	items, ok := v.([]any)
	if !ok {
		return v
	}
	var parts []string
	for _, item := range items {
		if item == nil {
			continue
		}
		if s := strings.TrimSpace(toText(item)); s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	return strings.Join(parts, sep)
}

func numberFn(integer bool) func(any) (any, error) {
	return func(v any) (any, error) {
		s, ok := v.(string)
		if !ok {
			return v, nil
		}
		s = strings.TrimSpace(s)
		if integer {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not an integer", s)
			}
			return n, nil
		}
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		return x, nil
	}
}

// apply decodes a code; a code not listed becomes the default, or fails.
func (lk *Lookup) apply(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	code := strings.TrimSpace(toText(v))
	if lk.IgnoreCase {
		code = strings.ToLower(code)
	}
	if out, ok := lk.Values[code]; ok {
		return out, nil
	}
	if lk.HasDefault {
		return lk.Default, nil
	}
	return nil, fmt.Errorf("code %q is not in lookup %s", code, lk.Name)
}

// timeTransform parses text in one of the named formats (yyyy-MM-dd,
// dd/MM/yyyy, dd-MMM-yy HH:mm …) into a date or an RFC 3339 time; values
// the driver already gives as times pass through.
func (l *loader) timeTransform(arg *yaml.Node, what string, datetime bool) func(any) (any, error) {
	var names []string
	zone := time.UTC
	if arg.Kind == yaml.MappingNode {
		k := l.Mapping(arg, what+": date", []string{"formats"}, "zone")
		if k == nil {
			return nil
		}
		names = l.strs(k["formats"], what+": formats")
		if z := k["zone"]; z != nil {
			loc, err := time.LoadLocation(z.Value)
			if err != nil {
				l.Errorf(z, "%s: zone %q is not a known time zone", what, z.Value)
			} else {
				zone = loc
			}
		}
	} else {
		names = l.strs(arg, what+": formats")
	}
	layouts := make([]string, len(names))
	for i, name := range names {
		layouts[i] = GoLayout(name)
	}
	return func(v any) (any, error) {
		var t time.Time
		switch x := v.(type) {
		case nil:
			return nil, nil
		case time.Time:
			t = x
		case string:
			s := strings.TrimSpace(x)
			var err error
			for _, layout := range layouts {
				if t, err = time.ParseInLocation(layout, s, zone); err == nil {
					break
				}
			}
			if err != nil {
				return nil, fmt.Errorf("%q is in none of the formats %s", s, strings.Join(names, ", "))
			}
		default:
			return v, nil
		}
		if datetime {
			return t.UTC().Format(time.RFC3339Nano), nil
		}
		return t.Format(time.DateOnly), nil
	}
}

// GoLayout turns a date format as people write it (yyyy, yy, MMMM, MMM,
// MM, dd, HH, mm, ss, SSS; anything else literal) into a Go layout.
func GoLayout(name string) string {
	r := strings.NewReplacer("yyyy", "2006", "yy", "06", "MMMM", "January", "MMM", "Jan", "MM", "01",
		"dd", "02", "HH", "15", "mm", "04", "ss", "05", "SSS", "000")
	return r.Replace(name)
}

// toText renders a source value as text.
func toText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case nil:
		return ""
	case int64: // keys, mostly: fmt.Sprint's reflection is slow
		return strconv.FormatInt(x, 10)
	}
	return fmt.Sprint(v)
}

// kind is the value kind the lookup produces ("" when mixed).
func (lk *Lookup) kind() string {
	kind := ""
	vals := make([]any, 0, len(lk.Values)+1)
	for _, v := range lk.Values {
		vals = append(vals, v)
	}
	if lk.HasDefault && lk.Default != nil {
		vals = append(vals, lk.Default)
	}
	for _, v := range vals {
		k := valueKind(v)
		if kind != "" && k != kind {
			return ""
		}
		kind = k
	}
	return kind
}
