package hub

import (
	"encoding/json"
	"fmt"
	"html/template"
	"regexp"
	"slices"
	"strings"

	"github.com/plinth-data/plinth"
)

// apiDoc is the readable form of one domain's part of the OpenAPI
// document, rendered on the server so the Hub needs no script or CDN.
type apiDoc struct {
	Operations []docOperation
	Schemas    []docSchema
}

type docOperation struct {
	Method, Path, ID string
	Summary          string
	Description      template.HTML
	Parameters       []docParam
	Body             string // schema name of the request body
	Responses        []docResponse
	Anchor           string
}

type docParam struct {
	Name, In, Type string
	Required       bool
	Description    template.HTML
}

type docResponse struct {
	Status      string
	Description template.HTML
	Schema      string
}

type docSchema struct {
	Name        string
	Description template.HTML
	Properties  []docProperty
}

type docProperty struct {
	Path, Type, PII string
	Required        bool
	Description     template.HTML
}

// oa is the part of OpenAPI 3.1 the Hub reads.
type oa struct {
	Paths      map[string]map[string]oaOperation `json:"paths"`
	Components struct {
		Schemas    map[string]oaSchema   `json:"schemas"`
		Parameters map[string]oaParam    `json:"parameters"`
		Responses  map[string]oaResponse `json:"responses"`
	} `json:"components"`
}

type oaOperation struct {
	OperationID string                `json:"operationId"`
	Summary     string                `json:"summary"`
	Description string                `json:"description"`
	Parameters  []oaParam             `json:"parameters"`
	RequestBody *oaResponse           `json:"requestBody"`
	Responses   map[string]oaResponse `json:"responses"`
}

type oaParam struct {
	Ref         string    `json:"$ref"`
	Name        string    `json:"name"`
	In          string    `json:"in"`
	Required    bool      `json:"required"`
	Description string    `json:"description"`
	Schema      *oaSchema `json:"schema"`
}

type oaResponse struct {
	Ref         string                               `json:"$ref"`
	Description string                               `json:"description"`
	Content     map[string]struct{ Schema oaSchema } `json:"content"`
}

type oaSchema struct {
	Ref         string              `json:"$ref"`
	Type        any                 `json:"type"`
	Format      string              `json:"format"`
	Description string              `json:"description"`
	PII         string              `json:"x-plinth-pii"`
	Properties  map[string]oaSchema `json:"properties"`
	Required    []string            `json:"required"`
	Items       *oaSchema           `json:"items"`
}

var methodOrder = []string{"get", "post", "put", "patch", "delete"}

// buildDocs reads the OpenAPI document once, for every domain.
func buildDocs(doc []byte, ds []*plinth.Domain) (map[string]apiDoc, error) {
	out := map[string]apiDoc{}
	if len(doc) == 0 {
		return out, nil
	}
	var d oa
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("hub: the OpenAPI document does not decode: %w", err)
	}
	for _, dom := range ds {
		out[dom.Name] = d.domainDoc(dom)
	}
	return out, nil
}

// domainDoc is the operations on the domain's entities (API and Reporting
// API) and the schemas they use.
func (d oa) domainDoc(dom *plinth.Domain) apiDoc {
	return d.pathsDoc(func(p string) bool {
		for _, e := range dom.Entities {
			if p == plinth.EntityCollection(e.Plural) || strings.HasPrefix(p, plinth.EntityCollection(e.Plural)+"/") ||
				p == plinth.EntityReport(e.Plural) || strings.HasPrefix(p, plinth.EntityReport(e.Plural)+"/") {
				return true
			}
		}
		return false
	})
}

// wholeDoc renders a whole OpenAPI document (an external API's).
func wholeDoc(doc []byte) (apiDoc, error) {
	var d oa
	if err := json.Unmarshal(doc, &d); err != nil {
		return apiDoc{}, fmt.Errorf("the OpenAPI document does not decode: %w", err)
	}
	return d.pathsDoc(func(string) bool { return true }), nil
}

// pathsDoc is the operations on the paths keep keeps and the schemas they
// use.
func (d oa) pathsDoc(keep func(path string) bool) apiDoc {
	var doc apiDoc
	used := map[string]bool{}
	var paths []string
	for p := range d.Paths {
		if keep(p) {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	for _, p := range paths {
		for _, m := range methodOrder {
			op, ok := d.Paths[p][m]
			if !ok {
				continue
			}
			doc.Operations = append(doc.Operations, d.operation(strings.ToUpper(m), p, op, used))
		}
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		sc, ok := d.Components.Schemas[n]
		if !ok {
			continue
		}
		ds := docSchema{Name: n, Description: markdown(sc.Description)}
		ds.Properties = properties(sc, "")
		doc.Schemas = append(doc.Schemas, ds)
	}
	return doc
}

func (d oa) operation(method, path string, op oaOperation, used map[string]bool) docOperation {
	o := docOperation{Method: method, Path: path, ID: op.OperationID, Summary: op.Summary, Description: markdown(op.Description), Anchor: "op-" + op.OperationID}
	for _, p := range op.Parameters {
		if p.Ref != "" {
			p = d.Components.Parameters[refName(p.Ref)]
		}
		typ := ""
		if p.Schema != nil {
			typ = typeOf(*p.Schema)
		}
		o.Parameters = append(o.Parameters, docParam{Name: p.Name, In: p.In, Type: typ, Required: p.Required, Description: markdown(p.Description)})
	}
	if op.RequestBody != nil {
		o.Body = schemaOf(*op.RequestBody)
		used[o.Body] = o.Body != ""
	}
	codes := make([]string, 0, len(op.Responses))
	for c := range op.Responses {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for _, c := range codes {
		r := op.Responses[c]
		if r.Ref != "" {
			r = d.Components.Responses[refName(r.Ref)]
		}
		name := schemaOf(r)
		if strings.HasPrefix(c, "2") && name != "" {
			used[name] = true
		}
		o.Responses = append(o.Responses, docResponse{Status: c, Description: markdown(r.Description), Schema: name})
	}
	return o
}

func schemaOf(r oaResponse) string {
	for _, ct := range []string{"application/json", "application/merge-patch+json"} {
		if c, ok := r.Content[ct]; ok && c.Schema.Ref != "" {
			return refName(c.Schema.Ref)
		}
	}
	return ""
}

func refName(ref string) string { return ref[strings.LastIndex(ref, "/")+1:] }

// typeOf writes a schema's type as people read it: "string (date), null".
func typeOf(s oaSchema) string {
	if s.Ref != "" {
		return refName(s.Ref)
	}
	var ts []string
	switch t := s.Type.(type) {
	case string:
		ts = []string{t}
	case []any:
		for _, x := range t {
			ts = append(ts, fmt.Sprint(x))
		}
	}
	if s.Format != "" && len(ts) > 0 {
		ts[0] += " (" + s.Format + ")"
	}
	if s.Items != nil && len(ts) > 0 && strings.HasPrefix(ts[0], "array") {
		ts[0] = "array of " + typeOf(*s.Items)
	}
	return strings.Join(ts, ", ")
}

func properties(s oaSchema, prefix string) []docProperty {
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []docProperty
	for _, n := range names {
		p := s.Properties[n]
		out = append(out, docProperty{Path: prefix + n, Type: typeOf(p), PII: p.PII, Required: slices.Contains(s.Required, n), Description: markdown(p.Description)})
		out = append(out, properties(p, prefix+n+".")...)
		if p.Items != nil {
			out = append(out, properties(*p.Items, prefix+n+"[].")...)
		}
	}
	return out
}

var (
	codeRE = regexp.MustCompile("`([^`]+)`")
	boldRE = regexp.MustCompile(`\*\*([^*]+)\*\*`)
)

// markdown renders the little Markdown the generated descriptions use
// (code spans, bold, line breaks) after escaping everything else.
func markdown(s string) template.HTML {
	h := template.HTMLEscapeString(s)
	h = codeRE.ReplaceAllString(h, "<code>$1</code>")
	h = boldRE.ReplaceAllString(h, "<strong>$1</strong>")
	h = strings.ReplaceAll(h, "\n", "<br>")
	return template.HTML(h) // escaped above
}
