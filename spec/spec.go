// Package spec loads domain specs from YAML into plinth.Domain, checking
// everything and reporting every problem with its file and line, and derives
// the OpenAPI document from the loaded domains.
package spec

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/plinth-data/plinth"
)

// Error lists every problem found in one or more spec files, one per line,
// each as "file:line: message".
type Error struct {
	Problems []string
}

func (e *Error) Error() string { return strings.Join(e.Problems, "\n") }

var (
	kebabRE = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
	camelRE = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)
	snakeRE = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	upperRE = regexp.MustCompile(`[A-Z]{2}`)
)

// reservedParams are list parameters every entity has.
var reservedParams = []string{"limit", "cursor"}

// LoadFS loads every *.yaml and *.yml file in the root of fsys. Entity paths
// must be unique across all the domains.
func LoadFS(fsys fs.FS, dir string) ([]*plinth.Domain, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("reading domain specs: %w", err)
	}
	var domains []*plinth.Domain
	var problems []string
	for _, entry := range entries {
		name := entry.Name()
		if entry.IsDir() || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) || IsMappingFile(name) {
			continue
		}
		file := path.Join(dir, name)
		data, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, fmt.Errorf("reading domain spec: %w", err)
		}
		d, err := Parse(file, data)
		var se *Error
		if errors.As(err, &se) {
			problems = append(problems, se.Problems...)
			continue
		}
		domains = append(domains, d)
	}
	if len(problems) == 0 && len(domains) == 0 {
		return nil, fmt.Errorf("no domain specs (*.yaml) found in %s", dir)
	}
	problems = append(problems, checkUnique(domains)...)
	problems = append(problems, checkReferences(domains)...)
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	return domains, nil
}

// checkUnique reports domain names and entity paths used twice.
func checkUnique(domains []*plinth.Domain) []string {
	var problems []string
	domainFile := map[string]string{}
	pluralFile := map[string]string{}
	for _, d := range domains {
		if prev, ok := domainFile[d.Name]; ok {
			problems = append(problems, fmt.Sprintf("%s: domain %q is also defined in %s", d.File, d.Name, prev))
		}
		domainFile[d.Name] = d.File
		for _, e := range d.Entities {
			if prev, ok := pluralFile[e.Plural]; ok {
				problems = append(problems, fmt.Sprintf("%s: entity %q: path %s is also used in %s", d.File, e.Name, plinth.EntityCollection(e.Plural), prev))
			}
			pluralFile[e.Plural] = d.File
		}
	}
	return problems
}

// checkReferences reports fields whose references name no entity, or one
// whose key is of another type.
func checkReferences(domains []*plinth.Domain) []string {
	byPlural := map[string]*plinth.Entity{}
	for _, d := range domains {
		for _, e := range d.Entities {
			byPlural[e.Plural] = e
		}
	}
	keyType := map[plinth.KeyType]plinth.Type{plinth.KeyUUID: plinth.TypeUUID, plinth.KeyInteger: plinth.TypeInteger, plinth.KeyText: plinth.TypeString}
	var problems []string
	var walk func(d *plinth.Domain, e *plinth.Entity, prefix string, fields []*plinth.Field)
	check := func(d *plinth.Domain, e *plinth.Entity, path string, f *plinth.Field) {
		if f == nil || f.References == "" {
			return
		}
		r := byPlural[f.References]
		switch {
		case r == nil:
			problems = append(problems, fmt.Sprintf("%s: entity %q: field %q: references %q names no entity (use the plural of one)", d.File, e.Name, path, f.References))
		case keyType[r.Key.Type] != f.Type:
			problems = append(problems, fmt.Sprintf("%s: entity %q: field %q: references %s, whose key %s is of type %s; give the field type %s", d.File, e.Name, path, r.Plural, r.Key.Name, r.Key.Type, keyType[r.Key.Type]))
		}
	}
	walk = func(d *plinth.Domain, e *plinth.Entity, prefix string, fields []*plinth.Field) {
		for _, f := range fields {
			if f == nil {
				continue
			}
			check(d, e, prefix+f.Name, f)
			walk(d, e, prefix+f.Name+".", f.Fields)
			if f.Items != nil {
				check(d, e, prefix+f.Name, f.Items)
				walk(d, e, prefix+f.Name+".", f.Items.Fields)
			}
		}
	}
	for _, d := range domains {
		for _, e := range d.Entities {
			walk(d, e, "", e.Fields)
		}
	}
	return problems
}

// Parse loads one domain spec. file names it in messages.
func Parse(file string, data []byte) (*plinth.Domain, error) {
	l := &loader{YAMLProblems{File: file}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if err != nil && err != io.EOF {
		return nil, &Error{Problems: []string{syntaxProblem(file, data, err)}}
	}
	if err == io.EOF || len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
		return nil, &Error{Problems: []string{fmt.Sprintf("%s:1: the spec is empty", file)}}
	}
	// One domain per file: a second YAML document would otherwise be
	// silently ignored.
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		return nil, &Error{Problems: []string{syntaxProblem(file, data, err)}}
	default:
		l.Errorf(&next, "the file holds more than one YAML document; put each domain in a file of its own")
		return nil, &Error{Problems: l.Problems}
	}
	d := l.domain(doc.Content[0])
	if len(l.Problems) > 0 {
		return nil, &Error{Problems: l.Problems}
	}
	return d, nil
}

// IsMappingFile reports whether a file name is a legacy mapping
// (<domain>.<source>.mapping.yaml), which lives beside the domain specs
// but is not one.
func IsMappingFile(name string) bool {
	return strings.HasSuffix(name, ".mapping.yaml") || strings.HasSuffix(name, ".mapping.yml")
}

// SyntaxProblem words a YAML syntax error of file as "file:line: message",
// as the spec loader does, for other YAML formats (legacy mappings).
func SyntaxProblem(file string, data []byte, err error) string { return syntaxProblem(file, data, err) }

var yamlLineRE = regexp.MustCompile(`^line (\d+): `)

// yamlParserProblems are the problems the YAML parser (as opposed to its
// scanner) reports. For these, go.yaml.in/yaml/v3 gives a zero-based line
// number, and none at all on the first line.
var yamlParserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// isScannerProblem reports whether msg is a problem the YAML scanner
// reports at a position (rather than a decoding problem without one, such
// as an unknown alias).
func isScannerProblem(msg string) bool {
	for _, p := range []string{"found ", "did not find ", "could not find ", "mapping keys are not allowed", "mapping values are not allowed", "block sequence entries are not allowed"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// syntaxProblem words a YAML syntax error like every other problem,
// "file:line: message", with the line counted from 1 and no further than
// the last line of data.
func syntaxProblem(file string, data []byte, err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	switch {
	case slices.Contains(yamlParserProblems, msg):
		line++
	case line == 0 && isScannerProblem(msg):
		line = 1 // the scanner gives no line for the first
	}
	lines := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		lines++
	}
	line = min(line, max(lines, 1))
	if line == 0 {
		return fmt.Sprintf("%s: %s", file, msg)
	}
	return fmt.Sprintf("%s:%d: %s", file, line, msg)
}

// YAMLProblems gathers every problem of a YAML file as "file:line:
// message", for the spec loader and the other files beside the specs
// (legacy mappings), so that all are reported at once.
type YAMLProblems struct {
	File     string
	Problems []string
}

// Errorf records a problem at the node's line.
func (l *YAMLProblems) Errorf(n *yaml.Node, format string, args ...any) {
	l.Problems = append(l.Problems, fmt.Sprintf("%s:%d: %s", l.File, n.Line, fmt.Sprintf(format, args...)))
}

// Mapping returns the keys of a mapping node, reporting unknown and
// repeated keys, and required keys that are missing.
func (l *YAMLProblems) Mapping(n *yaml.Node, what string, required []string, optional ...string) map[string]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		l.Errorf(n, "%s must be a mapping", what)
		return nil
	}
	m := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case !slices.Contains(required, k.Value) && !slices.Contains(optional, k.Value):
			allowed := append(slices.Clone(required), optional...)
			sort.Strings(allowed)
			l.Errorf(k, "%s: unknown key %q (known keys: %s)", what, k.Value, strings.Join(allowed, ", "))
		case m[k.Value] != nil:
			l.Errorf(k, "%s: key %q is repeated", what, k.Value)
		default:
			m[k.Value] = v
		}
	}
	for _, k := range required {
		if m[k] == nil {
			l.Errorf(n, "%s: %q is required", what, k)
		}
	}
	return m
}

type loader struct{ YAMLProblems }

func (l *loader) str(n *yaml.Node, what string) string {
	if n == nil {
		return ""
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.Errorf(n, "%s must be a string", what)
		return ""
	}
	return n.Value
}

func (l *loader) boolean(n *yaml.Node, what string) bool {
	if n == nil {
		return false
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		l.Errorf(n, "%s must be true or false", what)
	}
	return b
}

func (l *loader) number(n *yaml.Node, what string) *float64 {
	if n == nil {
		return nil
	}
	var x float64
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(&x) != nil || math.IsInf(x, 0) || math.IsNaN(x) {
		l.Errorf(n, "%s must be a number", what)
		return nil
	}
	return &x
}

func (l *loader) seq(n *yaml.Node, what string) []*yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		l.Errorf(n, "%s must be a list", what)
		return nil
	}
	return n.Content
}

// dataSafety reads a dataSafety block (of a domain or a special-category
// field): what obfuscation does with special-category data.
func (l *loader) dataSafety(n *yaml.Node, what string) plinth.SpecialHandling {
	if n == nil {
		return ""
	}
	m := l.Mapping(n, what, nil, "special")
	sp := m["special"]
	if sp == nil {
		return ""
	}
	h := plinth.SpecialHandling(l.str(sp, what+".special"))
	switch h {
	case plinth.SpecialRemove, plinth.SpecialGeneralise:
		return h
	}
	if stringNode(sp) {
		l.Errorf(sp, "%s.special: %q is not a policy; use remove (the default: the copy leaves special-category data out) or generalise (the copy keeps a coarse form)", what, h)
	}
	return ""
}

func (l *loader) domain(n *yaml.Node) *plinth.Domain {
	m := l.Mapping(n, "domain", []string{"domain", "description", "owner", "entities"}, "sourceSystem", "dataSafety")
	if m == nil {
		return nil
	}
	d := &plinth.Domain{
		Name:         l.str(m["domain"], "domain"),
		Description:  l.str(m["description"], "description"),
		SourceSystem: l.str(m["sourceSystem"], "sourceSystem"),
		File:         l.File,
	}
	if stringNode(m["domain"]) && !kebabRE.MatchString(d.Name) {
		l.Errorf(m["domain"], "domain %q must be lower-case kebab-case, such as benefit-claims", d.Name)
	}
	if o := m["owner"]; o != nil {
		om := l.Mapping(o, "owner", []string{"serviceArea", "productOwner"}, "cloudAccount", "groups")
		d.Owner = plinth.Owner{
			ServiceArea:  l.str(om["serviceArea"], "owner.serviceArea"),
			ProductOwner: l.str(om["productOwner"], "owner.productOwner"),
			CloudAccount: l.str(om["cloudAccount"], "owner.cloudAccount"),
		}
		for _, g := range l.seq(om["groups"], "owner.groups") {
			if name := l.str(g, "owner.groups"); name != "" {
				d.Owner.Groups = append(d.Owner.Groups, name)
			}
		}
	}
	d.DataSafety.Special = l.dataSafety(m["dataSafety"], "dataSafety")
	entities := l.seq(m["entities"], "entities")
	if m["entities"] != nil && m["entities"].Kind == yaml.SequenceNode && len(entities) == 0 {
		l.Errorf(m["entities"], "entities: a domain needs at least one entity")
	}
	seen := map[string]bool{}
	for _, en := range entities {
		e := l.entity(en)
		if e == nil {
			continue
		}
		if seen[e.Plural] {
			l.Errorf(en, "entity %q: plural %q is used by another entity", e.Name, e.Plural)
		}
		seen[e.Plural] = true
		e.Domain = d
		d.Entities = append(d.Entities, e)
	}
	return d
}

func (l *loader) entity(n *yaml.Node) *plinth.Entity {
	m := l.Mapping(n, "entity", []string{"name", "plural", "key", "fields"}, "description", "filters")
	if m == nil {
		return nil
	}
	e := &plinth.Entity{
		Name:        l.str(m["name"], "entity name"),
		Plural:      l.str(m["plural"], "entity plural"),
		Description: l.str(m["description"], "entity description"),
	}
	what := fmt.Sprintf("entity %q", e.Name)
	if stringNode(m["name"]) && !validCamel(e.Name) {
		l.Errorf(m["name"], "%s: name must be camelCase without acronyms, such as benefitClaim", what)
	}
	if stringNode(m["plural"]) && !kebabRE.MatchString(e.Plural) {
		l.Errorf(m["plural"], "%s: plural %q must be lower-case kebab-case, such as benefit-claims", what, e.Plural)
	}
	if plinth.ReservedPlural(e.Plural) {
		l.Errorf(m["plural"], "%s: plural %q is reserved by Plinth", what, e.Plural)
	}
	// Without a usable key the fields are still checked, so that every
	// problem is reported at once; the filters are not, as the key field
	// they may name is missing.
	key := l.key(m["key"], what)
	seen := map[string]bool{}
	if key != nil {
		e.Key = plinth.Key{Name: key.Name, Type: plinth.KeyType(key.Type), Generated: key.Required}
		key.Required = false
		e.Fields = append(e.Fields, key)
		seen[key.Name] = true
	}
	fields := l.seq(m["fields"], what+": fields")
	if m["fields"] != nil && m["fields"].Kind == yaml.SequenceNode && len(fields) == 0 {
		l.Errorf(m["fields"], "%s: fields: an entity needs at least one field besides its key", what)
	}
	for _, fn := range fields {
		f := l.field(fn, "", plinth.PII(""), true)
		if f == nil {
			continue
		}
		if seen[f.Name] {
			l.Errorf(fn, "field %q: the name is used twice", f.Name)
			continue
		}
		seen[f.Name] = true
		e.Fields = append(e.Fields, f)
	}
	if key == nil {
		return nil
	}
	params := map[string]bool{}
	for _, fn := range l.seq(m["filters"], what+": filters") {
		f := l.filter(fn, e)
		if f == nil {
			continue
		}
		for _, p := range paramsOf(f) {
			if params[p] {
				l.Errorf(fn, "filter %q: query parameter %q is used twice", f.Param, p)
			}
			params[p] = true
		}
		e.Filters = append(e.Filters, f)
	}
	return e
}

func paramsOf(f *plinth.Filter) []string {
	if f.Match == plinth.MatchRange {
		return []string{f.Param, f.Param + "_from", f.Param + "_to"}
	}
	return []string{f.Param}
}

// key reads the key block into its field. The Required flag of the result
// carries "generated" back to the caller.
func (l *loader) key(n *yaml.Node, what string) *plinth.Field {
	if n == nil {
		return nil
	}
	m := l.Mapping(n, what+": key", []string{"name", "type", "pii"}, "generated", "description")
	if m == nil || m["name"] == nil || m["type"] == nil || m["pii"] == nil {
		return nil
	}
	f := &plinth.Field{
		Name:        l.str(m["name"], "key name"),
		Description: l.str(m["description"], "key description"),
		PII:         plinth.PII(l.str(m["pii"], "key pii")),
		Required:    l.boolean(m["generated"], "key generated"),
	}
	if !stringNode(m["name"]) {
		// str has reported it
	} else if !validCamel(f.Name) {
		l.Errorf(m["name"], "key %q: name must be camelCase without acronyms, such as mosaicId", f.Name)
	} else if slices.Contains(plinth.SystemFields, f.Name) {
		l.Errorf(m["name"], "key %q: the name is reserved for a system field (%s)", f.Name, strings.Join(plinth.SystemFields, ", "))
	}
	l.checkPII(m["pii"], f, fmt.Sprintf("key %q", f.Name))
	switch kt := l.str(m["type"], "key type"); plinth.KeyType(kt) {
	case plinth.KeyInteger:
		f.Type = plinth.TypeInteger
	case plinth.KeyUUID:
		f.Type = plinth.TypeUUID
	case plinth.KeyText:
		f.Type = plinth.TypeString
		if f.Required {
			l.Errorf(m["generated"], "key %q: a string key cannot be generated; use uuid or integer, or set generated: false", f.Name)
		}
	default:
		if stringNode(m["type"]) {
			l.Errorf(m["type"], "key %q: unknown key type %q (use uuid, integer or string)", f.Name, kt)
		}
	}
	return f
}

var fieldKeys = []string{"description", "required", "maxLength", "enum", "pattern", "min", "max", "format", "pii", "fields", "items", "references", "dataSafety"}

// field reads one field. prefix is the dotted path of the enclosing field;
// inherited is the PII class nested fields take when they set none.
func (l *loader) field(n *yaml.Node, prefix string, inherited plinth.PII, named bool) *plinth.Field {
	required := []string{"type"}
	if named {
		required = []string{"name", "type"}
	}
	what := "field"
	if named && n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "name" && stringNode(n.Content[i+1]) {
				what = fmt.Sprintf("field %q", prefix+n.Content[i+1].Value)
			}
		}
	} else if !named {
		what = fmt.Sprintf("field %q", strings.TrimSuffix(prefix, "."))
	}
	optional := fieldKeys
	if !named {
		what += ": items"
	}
	m := l.Mapping(n, what, required, optional...)
	if m == nil || m["type"] == nil || (named && m["name"] == nil) {
		return nil
	}
	f := &plinth.Field{
		Type:        plinth.Type(l.str(m["type"], what+": type")),
		Description: l.str(m["description"], what+": description"),
		Required:    l.boolean(m["required"], what+": required"),
		Format:      plinth.Format(l.str(m["format"], what+": format")),
		PII:         inherited,
	}
	if named {
		f.Name = l.str(m["name"], "field name")
		if !stringNode(m["name"]) {
			// str has reported it
		} else if !validCamel(f.Name) {
			l.Errorf(m["name"], "%s: name must be camelCase without acronyms, such as dateOfBirth", what)
		} else if prefix == "" && slices.Contains(plinth.SystemFields, f.Name) {
			l.Errorf(m["name"], "%s: the name is reserved for a system field (%s)", what, strings.Join(plinth.SystemFields, ", "))
		}
	}
	if !slices.Contains(plinth.Types, f.Type) {
		if stringNode(m["type"]) {
			l.Errorf(m["type"], "%s: unknown type %q (use %s)", what, f.Type, joinTypes())
		}
		return nil
	}
	if p := m["pii"]; p != nil {
		f.PII = plinth.PII(l.str(p, what+": pii"))
		l.checkPII(p, f, what)
	} else if prefix == "" && named {
		l.Errorf(n, "%s: pii is required (none, personal or special)", what)
	}
	l.constraints(m, f, what)
	if ds := m["dataSafety"]; ds != nil {
		f.Special = l.dataSafety(ds, what+": dataSafety")
		if f.PII != plinth.PIISpecial {
			l.Errorf(ds, "%s: dataSafety applies only to special-category fields (pii: special); this field's pii is %s", what, cmp.Or(string(f.PII), "not set"))
		}
	}
	if r := m["references"]; r != nil {
		f.References = l.str(r, what+": references")
		switch f.Type {
		case plinth.TypeUUID, plinth.TypeInteger, plinth.TypeString:
		default:
			l.Errorf(r, "%s: references applies only to uuid, integer or string fields (the type of the referenced key)", what)
		}
	}
	// inner is the dotted path prefix of nested fields; array items have
	// no name of their own, so their fields sit under the array's name.
	inner := prefix
	if named {
		inner = prefix + f.Name + "."
	}
	switch f.Type {
	case plinth.TypeObject:
		if m["items"] != nil {
			l.Errorf(m["items"], "%s: items is only for arrays", what)
		}
		fields := l.seq(m["fields"], what+": fields")
		if m["fields"] == nil || (m["fields"].Kind == yaml.SequenceNode && len(fields) == 0) {
			l.Errorf(n, "%s: an object needs fields", what)
		}
		seen := map[string]bool{}
		for _, fn := range fields {
			nf := l.field(fn, inner, f.PII, true)
			if nf == nil {
				continue
			}
			if seen[nf.Name] {
				l.Errorf(fn, "field %q: the name is used twice", inner+nf.Name)
			}
			seen[nf.Name] = true
			f.Fields = append(f.Fields, nf)
		}
	case plinth.TypeArray:
		if m["fields"] != nil {
			l.Errorf(m["fields"], "%s: fields is only for objects; give arrays items", what)
		}
		if m["items"] == nil {
			l.Errorf(n, "%s: an array needs items", what)
			return f
		}
		f.Items = l.field(m["items"], inner, f.PII, false)
		if f.Items != nil && f.Items.Type == plinth.TypeArray {
			l.Errorf(m["items"], "%s: arrays of arrays are not supported; use an array of objects", what)
		}
	default:
		for _, k := range []string{"fields", "items"} {
			if m[k] != nil {
				l.Errorf(m[k], "%s: %s is only for %s", what, k, map[string]string{"fields": "objects", "items": "arrays"}[k])
			}
		}
	}
	return f
}

func (l *loader) checkPII(n *yaml.Node, f *plinth.Field, what string) {
	switch f.PII {
	case plinth.PIINone, plinth.PIIPersonal, plinth.PIISpecial:
	default:
		l.Errorf(n, "%s: unknown pii class %q (use none, personal or special)", what, f.PII)
	}
}

// constraints reads maxLength, enum, pattern, min, max and format, and
// checks each suits the field's type.
func (l *loader) constraints(m map[string]*yaml.Node, f *plinth.Field, what string) {
	isString := f.Type == plinth.TypeString
	isNumber := f.Type == plinth.TypeInteger || f.Type == plinth.TypeNumber
	onlyFor := func(key, types string, ok bool) bool {
		if m[key] != nil && !ok {
			l.Errorf(m[key], "%s: %s applies only to %s fields", what, key, types)
			return false
		}
		return m[key] != nil
	}
	if onlyFor("maxLength", "string", isString) {
		var n int
		if m["maxLength"].Tag != "!!int" || m["maxLength"].Decode(&n) != nil || n < 1 {
			l.Errorf(m["maxLength"], "%s: maxLength must be a positive integer", what)
		} else {
			f.MaxLength = &n
		}
	}
	if onlyFor("enum", "string", isString) {
		for _, v := range l.seq(m["enum"], what+": enum") {
			f.Enum = append(f.Enum, l.str(v, what+": enum value"))
		}
		if m["enum"].Kind == yaml.SequenceNode && len(f.Enum) == 0 {
			l.Errorf(m["enum"], "%s: enum needs at least one value", what)
		}
	}
	if onlyFor("pattern", "string", isString) {
		re, err := regexp.Compile(l.str(m["pattern"], what+": pattern"))
		if err != nil {
			l.Errorf(m["pattern"], "%s: pattern does not compile: %s", what, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		} else {
			f.Pattern = re
		}
	}
	if onlyFor("min", "integer or number", isNumber) {
		f.Min = l.number(m["min"], what+": min")
	}
	if onlyFor("max", "integer or number", isNumber) {
		f.Max = l.number(m["max"], what+": max")
	}
	if f.Min != nil && f.Max != nil && *f.Min > *f.Max {
		l.Errorf(m["min"], "%s: min is greater than max", what)
	}
	if stringNode(m["format"]) {
		switch {
		case !slices.Contains(plinth.Formats, f.Format):
			l.Errorf(m["format"], "%s: unknown format %q (use %s)", what, f.Format, joinFormats())
		case f.Format == plinth.FormatUPRN && !isString && f.Type != plinth.TypeInteger:
			l.Errorf(m["format"], "%s: format uprn applies only to string or integer fields", what)
		case f.Format != plinth.FormatUPRN && !isString:
			l.Errorf(m["format"], "%s: format %s applies only to string fields", what, f.Format)
		}
	}
}

func (l *loader) filter(n *yaml.Node, e *plinth.Entity) *plinth.Filter {
	m := l.Mapping(n, "filter", []string{"param", "field", "match"})
	if m == nil || m["param"] == nil || m["field"] == nil || m["match"] == nil {
		return nil
	}
	f := &plinth.Filter{
		Param: l.str(m["param"], "filter param"),
		Match: plinth.Match(l.str(m["match"], "filter match")),
	}
	what := fmt.Sprintf("filter %q", f.Param)
	if stringNode(m["param"]) && !snakeRE.MatchString(f.Param) {
		l.Errorf(m["param"], "%s: param must be snake_case, such as last_name", what)
	}
	if slices.Contains(reservedParams, f.Param) {
		l.Errorf(m["param"], "%s: param %q is reserved for pagination", what, f.Param)
	}
	switch f.Match {
	case plinth.MatchExact, plinth.MatchPrefix, plinth.MatchContains, plinth.MatchRange:
	default:
		if stringNode(m["match"]) {
			l.Errorf(m["match"], "%s: unknown match %q (use exact, prefix, contains or range)", what, f.Match)
		}
		return nil
	}
	fieldPath := l.str(m["field"], what+": field")
	if !stringNode(m["field"]) {
		return nil
	}
	f.Path = strings.Split(fieldPath, ".")
	top := e.Field(f.Path[0])
	switch {
	case top == nil:
		l.Errorf(m["field"], "%s: field %q is not a field of %s", what, fieldPath, e.Name)
		return nil
	case len(f.Path) == 1:
		f.Field = top
	case len(f.Path) == 2 && top.Type == plinth.TypeArray && top.Items != nil && top.Items.Type == plinth.TypeObject:
		f.Array = top
		f.Field = plinth.FieldByName(top.Items.Fields, f.Path[1])
		if f.Field == nil {
			l.Errorf(m["field"], "%s: field %q is not a field of the items of %s", what, fieldPath, top.Name)
			return nil
		}
	default:
		l.Errorf(m["field"], "%s: field %q: filters reach a top-level field or a field of an array of objects (such as addresses.postCode)", what, fieldPath)
		return nil
	}
	t := f.Field.Type
	switch {
	case t == plinth.TypeObject || t == plinth.TypeArray:
		l.Errorf(m["field"], "%s: field %q is an %s; filters compare single values", what, fieldPath, t)
	case (f.Match == plinth.MatchPrefix || f.Match == plinth.MatchContains) && t != plinth.TypeString:
		l.Errorf(m["match"], "%s: match %s applies only to string fields, and %q is %s", what, f.Match, fieldPath, t)
	case f.Match == plinth.MatchRange && t != plinth.TypeInteger && t != plinth.TypeNumber && t != plinth.TypeDate && t != plinth.TypeDateTime:
		l.Errorf(m["match"], "%s: match range applies only to integer, number, date and datetime fields, and %q is %s", what, fieldPath, t)
	}
	return f
}

// stringNode reports whether n is a value str reads without complaint.
func stringNode(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.ScalarNode && n.Tag != "!!null"
}

// validCamel reports whether s is camelCase with no run of capitals.
func validCamel(s string) bool { return camelRE.MatchString(s) && !upperRE.MatchString(s) }

func joinTypes() string {
	s := make([]string, len(plinth.Types))
	for i, t := range plinth.Types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func joinFormats() string {
	s := make([]string, len(plinth.Formats))
	for i, f := range plinth.Formats {
		s[i] = string(f)
	}
	return strings.Join(s, ", ")
}
