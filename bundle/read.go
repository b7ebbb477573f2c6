package bundle

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/plinth-data/plinth"
)

// CheckEnvironment applies the organisation's rule to data of class c
// loaded into a store of environment env: development holds only dummy
// data, staging dummy or obfuscated data, production any.
func CheckEnvironment(env string, c plinth.DataClass) error {
	switch env {
	case plinth.EnvProduction:
		return nil
	case plinth.EnvStaging:
		if c == plinth.ClassReal {
			return errors.New("the bundle holds real data, and staging holds only dummy or obfuscated data: " +
				"load it into production, or obfuscate it first (plinth obfuscate --from <bundle> --to <new bundle> --key-file K) and load the obfuscated bundle")
		}
		return nil
	case plinth.EnvDevelopment:
		if c != plinth.ClassDummy {
			return fmt.Errorf("the bundle holds %s data, and development holds only dummy data: "+
				"load it into %s, or fill development with plinth seed (or load a bundle exported from a seeded store)", c, map[plinth.DataClass]string{
				plinth.ClassReal: "production", plinth.ClassObfuscated: "staging"}[c])
		}
		return nil
	}
	return fmt.Errorf("environment %q: use development, staging or production", env)
}

// classRank orders the classes by how sensitive they are.
func classRank(c plinth.DataClass) int {
	switch c {
	case plinth.ClassDummy:
		return 0
	case plinth.ClassObfuscated:
		return 1
	}
	return 2
}

// VerifyChecksums checks that every file the manifest names for the
// entities (every entity when plurals is empty) has its size and SHA-256.
func VerifyChecksums(dir string, m *Manifest, plurals ...string) error {
	for _, d := range m.Domains {
		for _, em := range d.Entities {
			if len(plurals) > 0 && !slices.Contains(plurals, em.Plural) {
				continue
			}
			if err := verifyFile(dir, em); err != nil {
				return err
			}
		}
	}
	return nil
}

func verifyFile(dir string, em EntityManifest) error {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(em.File)))
	if err != nil {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("bundle %s: reading %s: %w", dir, em.File, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != em.SHA256 || n != em.Bytes {
		return &ChecksumError{Dir: dir, File: em.File, Want: em.SHA256, Got: sum, WantBytes: em.Bytes, GotBytes: n}
	}
	return nil
}

// ChecksumError is a bundle file that does not match its manifest.
type ChecksumError struct {
	Dir, File string
	Want, Got string
	WantBytes int64
	GotBytes  int64
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("bundle %s: %s does not match its checksum in the manifest (%d bytes with sha256 %s; the manifest says %d bytes with sha256 %s): "+
		"the file was changed or damaged, so nothing was loaded; export the bundle again", e.Dir, e.File, e.GotBytes, e.Got, e.WantBytes, e.Want)
}

// RecordError is a line of a bundle that is not a valid record of the
// target's spec, or would not be stored exactly as written.
type RecordError struct {
	File   string
	Entity string
	Line   int64
	Field  string // "" when the problem is the whole line
	Detail string
}

func (e *RecordError) Error() string {
	where := fmt.Sprintf("%s line %d (%s)", e.File, e.Line, e.Entity)
	if e.Field != "" {
		return fmt.Sprintf("%s: field %s %s", where, e.Field, e.Detail)
	}
	return fmt.Sprintf("%s: %s", where, e.Detail)
}

// lineReader reads the lines of a bundle file. It inflates with
// klauspost/compress, which takes about half the CPU of compress/gzip.
type lineReader struct {
	f    *os.File
	gz   *gzip.Reader
	sc   *bufio.Scanner
	line int64
}

func openLines(dir, rel string) (*lineReader, error) {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	gz, err := gzip.NewReader(bufio.NewReaderSize(f, 256<<10))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	sc := bufio.NewScanner(gz)
	sc.Buffer(make([]byte, 0, 64<<10), 256<<20)
	return &lineReader{f: f, gz: gz, sc: sc}, nil
}

// next returns the next line (valid until the following call), or io.EOF.
func (r *lineReader) next() ([]byte, error) {
	if !r.sc.Scan() {
		if err := r.sc.Err(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	r.line++
	return r.sc.Bytes(), nil
}

func (r *lineReader) Close() error {
	r.gz.Close()
	return r.f.Close()
}

// systemFields are dropped from a line before validation (see Load).
var systemFields = plinth.SystemFields

// decodeRecord validates one line against e and returns the record to
// load: its canonical data, version, createdAt and updatedAt (zero when the
// line has none). The line must be a record as the API writes it: its data
// must be valid and stored exactly as written (a value the store would
// hold in another form is refused, not changed), and it must carry its key.
func decodeRecord(e *plinth.Entity, file string, lineNo int64, line []byte) (plinth.Record, error) {
	rec, _, err := checkRecord(e, nil, file, lineNo, line)
	return rec, err
}

// checkRecord is decodeRecord; exact reports that the line is byte for
// byte the API's JSON of the record it returns (as every line export
// writes is), which lets a later read of the same bytes decode them
// without checking them again (decodeChecked).
//
// With rf (recordField(e)) it first tries the cheaper way for such a line:
// decode it by the fields' types (decodeChecked, no generic values, no
// json.Number), validate that, and accept it when the record's JSON is
// the line again. Whatever that way does not accept — a bad record, a
// member the spec lacks (that decoding skips it), a value written in
// another form — goes the full way, which names the problem.
func checkRecord(e *plinth.Entity, rf *plinth.Field, file string, lineNo int64, line []byte) (rec plinth.Record, exact bool, err error) {
	if rf != nil {
		if rec, err := decodeChecked(e, rf, file, lineNo, line); err == nil {
			if data, err := e.Validate(rec.Data, false); err == nil && data[e.Key.Name] != nil {
				rec.Data = data
				if bytes.Equal(e.MarshalRecord(rec), line) {
					return rec, true, nil
				}
			}
		}
	}
	rec, err = validateLine(e, file, lineNo, line, &exact)
	return rec, exact, err
}

func validateLine(e *plinth.Entity, file string, lineNo int64, line []byte, exact *bool) (plinth.Record, error) {
	bad := func(field, format string, args ...any) error {
		return &RecordError{File: file, Entity: e.Name, Line: lineNo, Field: field, Detail: fmt.Sprintf(format, args...)}
	}
	if len(bytes.TrimSpace(line)) == 0 {
		return plinth.Record{}, bad("", "is empty; every line holds one record")
	}
	doc, err := plinth.DecodeJSONObject(line)
	if err != nil {
		return plinth.Record{}, bad("", "is not one JSON object: %s", err)
	}
	var meta plinth.Record
	if v, ok := doc["version"].(json.Number); ok {
		meta.Version, _ = strconv.ParseInt(string(v), 10, 64)
	}
	meta.CreatedAt = parseTime(doc["createdAt"])
	meta.UpdatedAt = parseTime(doc["updatedAt"])
	for _, name := range systemFields {
		delete(doc, name)
	}
	data, err := e.Validate(doc, false)
	if err != nil {
		var ve *plinth.ValidationError
		if errors.As(err, &ve) && len(ve.Errors) > 0 {
			fe := ve.Errors[0]
			more := ""
			if len(ve.Errors) > 1 {
				parts := make([]string, 0, len(ve.Errors)-1)
				for _, o := range ve.Errors[1:] {
					parts = append(parts, o.Field+" "+o.Detail)
				}
				more = " (also: " + strings.Join(parts, "; ") + ")"
			}
			return plinth.Record{}, bad(fe.Field, "%s%s", fe.Detail, more)
		}
		return plinth.Record{}, bad("", "%s", err)
	}
	if data[e.Key.Name] == nil {
		return plinth.Record{}, bad(e.Key.Name, "is missing; a bundle's records keep their keys")
	}
	// Fast path: the line is exactly the API's JSON of the canonical record
	// (as every line export writes is).
	meta.Data = data
	if bytes.Equal(e.MarshalRecord(meta), line) {
		*exact = true
		return meta, nil
	}
	// Otherwise compare field by field, ignoring member order, spacing and
	// nulls, to name the field that would be stored differently.
	back, err := plinth.DecodeJSONObject(e.MarshalRecord(plinth.Record{Data: data}))
	if err != nil {
		return plinth.Record{}, bad("", "cannot be encoded again: %s", err)
	}
	for _, f := range e.Fields {
		got, want := comparable(doc[f.Name]), comparable(back[f.Name])
		if got != want {
			return plinth.Record{}, bad(f.Name, "would be stored as %s, not %s as written; nothing is changed on the way in, so correct the bundle's source", want, got)
		}
	}
	return meta, nil
}

func parseTime(v any) time.Time {
	s, _ := v.(string)
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// comparable returns the JSON of v without null members, map keys sorted.
func comparable(v any) string {
	b, err := json.Marshal(dropNulls(v))
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			if x != nil {
				out[k] = dropNulls(x)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = dropNulls(x)
		}
		return out
	}
	return v
}

// recordField is a field whose nested fields are the entity's and the
// system fields a line carries, to decode a line with DecodeStored.
func recordField(e *plinth.Entity) *plinth.Field {
	fields := slices.Clone(e.Fields)
	for _, f := range []*plinth.Field{{Name: "version", Type: plinth.TypeInteger},
		{Name: "createdAt", Type: plinth.TypeString}, {Name: "updatedAt", Type: plinth.TypeString}} {
		if plinth.FieldByName(fields, f.Name) == nil {
			fields = append(fields, f)
		}
	}
	return &plinth.Field{Name: e.Name, Type: plinth.TypeObject, Fields: fields}
}

// decodeChecked decodes a line that checkRecord found valid and exact
// (checked by its hash, see checkedBatches): the line is the API's JSON of
// canonical data, so decoding it by the fields' types, as a store reads
// back what it wrote (Field.DecodeStored), gives that data again without
// the work of validating it. rf is recordField(e).
func decodeChecked(e *plinth.Entity, rf *plinth.Field, file string, lineNo int64, line []byte) (plinth.Record, error) {
	v, err := rf.DecodeStored(line)
	doc, ok := v.(map[string]any)
	if err != nil || !ok {
		return plinth.Record{}, &RecordError{File: file, Entity: e.Name, Line: lineNo, Detail: fmt.Sprintf("changed since it was checked: %v", err)}
	}
	var rec plinth.Record
	if n, ok := doc["version"].(int64); ok {
		rec.Version = n
	}
	rec.CreatedAt = parseTime(doc["createdAt"])
	rec.UpdatedAt = parseTime(doc["updatedAt"])
	for _, name := range systemFields {
		delete(doc, name)
	}
	rec.Data = doc
	return rec, nil
}
