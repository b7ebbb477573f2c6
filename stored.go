package plinth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// DecodeStored decodes the JSON a store wrote for an object or array field
// back into canonical values, converting numbers by the field's types. It
// trusts that the data was validated when written (it does not check
// formats again, so data written before a spec tightened still reads) and
// skips members the spec no longer has. Every read of a nested value goes
// through it, so it reads tokens rather than building generic values first.
func (f *Field) DecodeStored(raw []byte) (any, error) {
	sd := decoders.Get().(*storedDecoder)
	defer decoders.Put(sd)
	sd.r.Reset(raw)
	sd.d.Reset(sd.r)
	v, err := decodeStored(sd.d, f)
	if err == nil {
		if _, end := sd.d.ReadToken(); end != io.EOF {
			err = errors.New("unexpected data after the value")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("field %q holds JSON that does not decode: %w", f.Name, err)
	}
	return v, nil
}

// decoders are reused: setting one up costs more than decoding a value.
var decoders = sync.Pool{New: func() any {
	r := bytes.NewReader(nil)
	return &storedDecoder{r: r, d: jsontext.NewDecoder(r)}
}}

type storedDecoder struct {
	r *bytes.Reader
	d *jsontext.Decoder
}

func decodeStored(d *jsontext.Decoder, f *Field) (any, error) {
	tok, err := d.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case 'n':
		return nil, nil
	case 't', 'f':
		return tok.Bool(), nil
	case '"':
		return tok.String(), nil
	case '0':
		if f.Type == TypeInteger {
			if n, err := tok.Int(); err == nil {
				return n, nil
			}
		}
		return tok.Float()
	case '{':
		m := make(map[string]any, len(f.Fields))
		for d.PeekKind() != '}' {
			name, err := d.ReadToken()
			if err != nil {
				return nil, err
			}
			sub := FieldByName(f.Fields, name.String())
			if sub == nil {
				if err := d.SkipValue(); err != nil {
					return nil, err
				}
				continue
			}
			v, err := decodeStored(d, sub)
			if err != nil {
				return nil, err
			}
			if v != nil {
				m[sub.Name] = v
			}
		}
		_, err := d.ReadToken()
		return m, err
	case '[':
		items := []any{}
		for d.PeekKind() != ']' {
			item := f.Items
			if item == nil {
				item = &Field{}
			}
			v, err := decodeStored(d, item)
			if err != nil {
				return nil, err
			}
			if v != nil {
				items = append(items, v)
			}
		}
		_, err := d.ReadToken()
		return items, err
	}
	return nil, fmt.Errorf("unexpected %s", tok.Kind())
}
