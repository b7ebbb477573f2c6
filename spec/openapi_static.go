package spec

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/plinth-data/plinth"
)

// The parts of the OpenAPI document that do not depend on the domains (the
// platform routes, the admin API and the components they share with the
// entities, such as Problem) are documentation more than code, so they are
// written as JSON in openapi_static.json and merged into each document. Their
// paths come from package plinth's route source: the file holds operations
// by operationId, and the endpoints of that name place them.
//
//go:embed openapi_static.json
var staticJSON string

// staticDoc is the shape of openapi_static.json.
type staticDoc struct {
	Comment  string        `json:"$comment"`
	Platform staticSection `json:"platform"`
	Admin    staticSection `json:"admin"`
}

// staticSection holds components, in document order, and operations.
type staticSection struct {
	Parameters obj               `json:"parameters"`
	Headers    obj               `json:"headers"`
	Schemas    obj               `json:"schemas"`
	Responses  obj               `json:"responses"`
	Operations []json.RawMessage `json:"operations"`
}

// examples is what the static parts show as examples and name as served:
// a domain and an entity of this API, when it has any.
type examples struct {
	api, plural string
	// served ends a description of a domain name with the domains this
	// API serves.
	served string
}

func examplesOf(domains []*plinth.Domain) examples {
	ex := examples{api: "residents", plural: "residents"}
	var names []string
	for _, d := range domains {
		if d != nil {
			names = append(names, d.Name)
		}
	}
	if len(domains) > 0 && domains[0] != nil && len(domains[0].Entities) > 0 && domains[0].Entities[0] != nil {
		ex.api, ex.plural = domains[0].Name, domains[0].Entities[0].Plural
	}
	ex.served = ", such as `" + ex.api + "`."
	switch n := len(names); {
	case n == 1:
		ex.served = ": `" + names[0] + "`, the one this API serves."
	case n > 1:
		ex.served += " This API serves `" + strings.Join(names[:n-1], "`, `") + "` and `" + names[n-1] + "`."
	}
	return ex
}

// placeholders fills the ${name} placeholders of openapi_static.json. A
// quoted placeholder stands for a number.
func (ex examples) placeholders() *strings.Replacer {
	text := func(s string) string {
		b, _ := encodeJSON(s) // a string always encodes
		return string(b[1 : len(b)-1])
	}
	return strings.NewReplacer(
		`"${maxLimit}"`, strconv.Itoa(plinth.MaxLimit),
		`"${defaultLimit}"`, strconv.Itoa(plinth.DefaultLimit),
		"${maxLimit}", strconv.Itoa(plinth.MaxLimit),
		"${exampleAPI}", text(ex.api),
		"${examplePlural}", text(ex.plural),
		"${exampleEndpoint}", text(plinth.EntityItem(ex.plural)),
		"${served}", text(ex.served),
		"${adminNote}", text(adminNote),
		"${auditorNote}", text(auditorNote),
	)
}

// auditorNote ends the description of the audit search.
const auditorNote = "Requires a user token in one of the configured admin groups or auditor groups; any other valid token gets 403."

// static adds the platform routes, the admin API and the shared components.
// The admin paths go to g.adminPaths, to follow the domains' paths.
func (g *openAPIGen) static(ex examples) error {
	var doc staticDoc
	dec := json.NewDecoder(strings.NewReader(ex.placeholders().Replace(staticJSON)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("openapi: openapi_static.json: %w", err)
	}
	if err := g.section(doc.Platform, "the platform", plinth.PlatformEndpoints(), &g.paths); err != nil {
		return err
	}
	return g.section(doc.Admin, "the admin API", plinth.AdminEndpoints(), &g.adminPaths)
}

// section adds the components of a static section and places its
// operations on the paths of eps.
func (g *openAPIGen) section(s staticSection, owner string, eps []plinth.Endpoint, paths *obj) error {
	for _, m := range s.Schemas {
		if err := g.claim("schema", m.key, owner); err != nil {
			return err
		}
	}
	ops := make(map[string]any, len(s.Operations))
	for _, raw := range s.Operations {
		var op struct {
			ID string `json:"operationId"`
		}
		if err := json.Unmarshal(raw, &op); err != nil {
			return fmt.Errorf("openapi: an operation of %s: %w", owner, err)
		}
		if err := g.claim("operationId", op.ID, owner); err != nil {
			return err
		}
		ops[op.ID] = raw
		g.markUsed(raw)
	}
	g.parameters = append(g.parameters, s.Parameters...)
	g.headers = append(g.headers, s.Headers...)
	g.schemas = append(g.schemas, s.Schemas...)
	g.responses = append(g.responses, s.Responses...)
	return endpointPaths(paths, eps, ops, owner)
}

// responseRefRE finds the shared responses an operation refers to.
var responseRefRE = regexp.MustCompile(`"#/components/responses/([A-Za-z0-9]+)"`)

// markUsed records the responses a static operation refers to, so that
// they are in the document.
func (g *openAPIGen) markUsed(op json.RawMessage) {
	for _, m := range responseRefRE.FindAllSubmatch(op, -1) {
		g.used[string(m[1])] = true
	}
}

// endpointPaths adds one path item per route template of eps, in order,
// holding the operation of each endpoint by its name. Every endpoint needs
// an operation and every operation an endpoint: the document describes
// exactly the routes that are served.
func endpointPaths(paths *obj, eps []plinth.Endpoint, ops map[string]any, owner string) error {
	for i, ep := range eps {
		op, ok := ops[ep.Name]
		if !ok {
			return fmt.Errorf("openapi: %s has no operation %q for %s %s", owner, ep.Name, ep.Method, ep.Template)
		}
		delete(ops, ep.Name)
		if i == 0 || eps[i-1].Template != ep.Template {
			paths.set(ep.Template, obj{})
		}
		item := &(*paths)[len(*paths)-1]
		item.value = append(item.value.(obj), member{strings.ToLower(ep.Method), op})
	}
	for name := range ops {
		return fmt.Errorf("openapi: operation %q of %s is on no route", name, owner)
	}
	return nil
}
