package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/plinth-data/plinth"
)

// OpenAPIInfo describes the deployment an OpenAPI document is for.
type OpenAPIInfo struct {
	Title       string // default "Plinth Platform API"
	Version     string // version of the document; default "1.0.0"
	ServerURL   string // base URL clients call, without /api/v1: "https://residents.example.gov.uk"
	Environment string // development, staging or production; shown with the server
}

// OpenAPI derives the OpenAPI 3.1 document of the Platform API that serves
// the domains: five operations per entity, the health checks and the
// document itself. It returns indented JSON; the same input always gives the
// same bytes.
func OpenAPI(domains []*plinth.Domain, info OpenAPIInfo) ([]byte, error) {
	g := &openAPIGen{
		paths:      obj{},
		schemas:    obj{},
		parameters: obj{},
		headers:    obj{},
		responses:  obj{},
		seen:       map[string]string{},
		used:       map[string]bool{},
	}
	doc, err := g.document(domains, info)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encoding the OpenAPI document: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// obj is a JSON object that keeps its members in the order they were added,
// so the document reads in spec order and encodes the same way every time.
type obj []member

type member struct {
	key   string
	value any
}

func (o *obj) set(key string, value any) { *o = append(*o, member{key, value}) }

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := encodeJSON(m.key)
		if err != nil {
			return nil, err
		}
		v, err := encodeJSON(m.value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.key, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON decodes an object keeping its members in order, each
// value as raw JSON.
func (o *obj) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("want a JSON object, got %.20s", b)
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		o.set(t.(string), v)
	}
	return nil
}

func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// The objects of the document whose shape is fixed.
type (
	openAPIDoc struct {
		OpenAPI    string                `json:"openapi"`
		Info       openAPIInfoObject     `json:"info"`
		Servers    []server              `json:"servers"`
		Tags       []tag                 `json:"tags"`
		Security   []securityRequirement `json:"security"`
		Paths      obj                   `json:"paths"`
		Components components            `json:"components"`
	}
	openAPIInfoObject struct {
		Title       string   `json:"title"`
		Version     string   `json:"version"`
		Summary     string   `json:"summary,omitempty"`
		Description string   `json:"description"`
		Contact     *contact `json:"contact,omitempty"`
		License     license  `json:"license"`
	}
	contact struct {
		Name  string `json:"name,omitempty"`
		Email string `json:"email,omitempty"`
	}
	license struct {
		Name string `json:"name"`
		URL  string `json:"url"`
	}
	server struct {
		URL         string `json:"url"`
		Description string `json:"description,omitempty"`
	}
	tag struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	components struct {
		Schemas         obj `json:"schemas"`
		Parameters      obj `json:"parameters"`
		Headers         obj `json:"headers"`
		Responses       obj `json:"responses"`
		SecuritySchemes obj `json:"securitySchemes"`
	}
	// securityRequirement names the schemes a request must satisfy, each
	// with its scopes.
	securityRequirement map[string][]string
	securityScheme      struct {
		Type         string `json:"type"`
		Scheme       string `json:"scheme"`
		BearerFormat string `json:"bearerFormat"`
		Description  string `json:"description"`
	}
	operation struct {
		Tags        []string     `json:"tags"`
		Summary     string       `json:"summary"`
		Description string       `json:"description"`
		OperationID string       `json:"operationId"`
		Parameters  []any        `json:"parameters,omitempty"`
		RequestBody *requestBody `json:"requestBody,omitempty"`
		Responses   obj          `json:"responses"`
	}
	parameter struct {
		Name        string `json:"name"`
		In          string `json:"in"`
		Description string `json:"description"`
		Required    bool   `json:"required,omitempty"`
		Schema      obj    `json:"schema"`
	}
	requestBody struct {
		Description string `json:"description"`
		Required    bool   `json:"required"`
		Content     obj    `json:"content"`
	}
	response struct {
		Description string `json:"description"`
		Headers     obj    `json:"headers,omitempty"`
		Content     obj    `json:"content,omitempty"`
	}
	mediaType struct {
		Schema any `json:"schema"`
	}
	ref struct {
		Ref string `json:"$ref"`
	}
)

func schemaRef(name string) ref   { return ref{"#/components/schemas/" + name} }
func paramRef(name string) ref    { return ref{"#/components/parameters/" + name} }
func headerRef(name string) ref   { return ref{"#/components/headers/" + name} }
func responseRef(name string) ref { return ref{"#/components/responses/" + name} }
func jsonContent(schema any) obj  { return obj{{"application/json", mediaType{Schema: schema}}} }

// Media types.
const (
	mediaJSON       = "application/json"
	mediaMergePatch = "application/merge-patch+json"
)

// Tags of the operations that are not about a domain.
const (
	platformTag = "platform"
	adminTag    = "admin"
)

// bearerAuth names the security scheme of every protected operation.
const bearerAuth = "bearerAuth"

type openAPIGen struct {
	paths, schemas, parameters, headers, responses obj
	// adminPaths follow the domains' paths in the document.
	adminPaths obj
	// seen maps each component name and operationId to what claimed it,
	// so two entities that would share one are reported.
	seen map[string]string
	// used holds the names of the responses operations refer to; the
	// others are left out of the document.
	used map[string]bool
}

func (g *openAPIGen) responseRef(name string) ref {
	g.used[name] = true
	return responseRef(name)
}

// errorResponses names the shared response of each error status.
var errorResponses = map[string]string{
	"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound", "409": "Conflict",
	"406": "NotAcceptable", "410": "Gone", "412": "PreconditionFailed", "413": "ContentTooLarge", "415": "UnsupportedMediaType",
	"422": "UnprocessableContent", "428": "PreconditionRequired", "500": "InternalServerError",
	"503": "ServiceUnavailable",
}

// errs refers to the shared responses of the codes, in order. A code given
// as "404=TokenNotFound" refers to the named response instead.
func (g *openAPIGen) errs(codes ...string) obj {
	var o obj
	for _, c := range codes {
		code, name, ok := strings.Cut(c, "=")
		if !ok {
			name = errorResponses[code]
		}
		o.set(code, g.responseRef(name))
	}
	return o
}

// usedResponses returns the response components that operations refer to.
func (g *openAPIGen) usedResponses() obj {
	var o obj
	for _, m := range g.responses {
		if g.used[m.key] {
			o = append(o, m)
		}
	}
	return o
}

// claim records a name that must be unique in the document.
func (g *openAPIGen) claim(kind, name, owner string) error {
	key := kind + " " + name
	if prev, ok := g.seen[key]; ok {
		return fmt.Errorf("openapi: %s %q of %s is also used by %s; rename one of them", kind, name, owner, prev)
	}
	g.seen[key] = owner
	return nil
}

func (g *openAPIGen) document(domains []*plinth.Domain, info OpenAPIInfo) (*openAPIDoc, error) {
	if info.Title == "" {
		info.Title = "Plinth Platform API"
	}
	if info.Version == "" {
		info.Version = "1.0.0"
	}
	serverURL := strings.TrimRight(info.ServerURL, "/")
	if serverURL == "" {
		serverURL = "/"
	}
	serverDesc := "The Platform API"
	if info.Environment != "" {
		serverDesc = fmt.Sprintf("The Platform API in the %s environment", info.Environment)
	}

	if err := g.static(examplesOf(domains)); err != nil {
		return nil, err
	}
	var tags []tag
	for _, d := range domains {
		if d == nil {
			return nil, fmt.Errorf("openapi: a domain is nil")
		}
		if err := g.claim("tag", d.Name, "domain "+d.Name); err != nil {
			return nil, err
		}
		tags = append(tags, tag{Name: d.Name, Description: domainTagDescription(d)})
		for _, e := range d.Entities {
			if err := g.entity(d, e); err != nil {
				return nil, err
			}
		}
	}
	if err := g.claim("tag", reportTag, "the Reporting API"); err != nil {
		return nil, fmt.Errorf("openapi: the domain name %q is reserved for the Reporting API", reportTag)
	}
	if err := g.reportIndex(); err != nil {
		return nil, err
	}
	for _, d := range domains {
		for _, e := range d.Entities {
			if err := g.reports(d, e); err != nil {
				return nil, err
			}
		}
	}
	tags = append(tags, tag{Name: reportTag, Description: "The Reporting API, for BI tools and analysts: every record of an entity in one streamed response " +
		"(CSV, NDJSON, JSON or Parquet) from one read snapshot, incremental extracts by watermark, deletions, and each report's columns. " +
		"Open to the reporting groups of each domain's access policy and to service tokens granted a report route."})
	if err := g.claim("tag", platformTag, "the platform routes"); err != nil {
		return nil, fmt.Errorf("openapi: the domain name %q is reserved for the platform routes", platformTag)
	}
	tags = append(tags, tag{Name: platformTag, Description: "Health checks for load balancers and orchestrators, and this API description. These need no token."})
	if err := g.claim("tag", adminTag, "the admin API"); err != nil {
		return nil, fmt.Errorf("openapi: the domain name %q is reserved for the admin API", adminTag)
	}
	tags = append(tags, tag{Name: adminTag, Description: "Service tokens and access policies: who may call which API; " +
		"and the audit trail of every request. " + adminNote + " Searching the audit trail is also open to the auditor groups."})
	g.paths = append(g.paths, g.adminPaths...)

	return &openAPIDoc{
		OpenAPI: "3.1.0",
		Info: openAPIInfoObject{
			Title:       info.Title,
			Version:     info.Version,
			Summary:     summaryOf(domains),
			Description: infoDescription(domains, info.Environment),
			Contact:     contactOf(domains),
			License: license{
				Name: "Open Government Licence v3.0",
				URL:  "https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/",
			},
		},
		Servers:  []server{{URL: serverURL, Description: serverDesc}},
		Tags:     tags,
		Security: []securityRequirement{{bearerAuth: {}}},
		Paths:    g.paths,
		Components: components{
			Schemas:    g.schemas,
			Parameters: g.parameters,
			Headers:    g.headers,
			Responses:  g.usedResponses(),
			SecuritySchemes: obj{{bearerAuth, securityScheme{
				Type: "http", Scheme: "bearer", BearerFormat: "JWT",
				Description: bearerDescription,
			}}},
		},
	}, nil
}

func summaryOf(domains []*plinth.Domain) string {
	names := make([]string, 0, len(domains))
	for _, d := range domains {
		names = append(names, d.Name)
	}
	if len(names) == 0 {
		return ""
	}
	return "Platform API for the " + strings.Join(names, ", ") + " data " + plural(len(names), "domain", "domains") + "."
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func infoDescription(domains []*plinth.Domain, env string) string {
	var b strings.Builder
	b.WriteString("A Platform API generated by Plinth from domain specs. Each domain is owned by one team; " +
		"this API is the only way in to its data and returns every field of each record.\n\n")
	if env != "" {
		fmt.Fprintf(&b, "Environment: **%s**.\n\n", env)
	}
	b.WriteString("## Domains\n\n")
	for _, d := range domains {
		fmt.Fprintf(&b, "- **%s**: %s Owner: %s", d.Name, sentence(d.Description), d.Owner.ServiceArea)
		if d.Owner.ProductOwner != "" {
			fmt.Fprintf(&b, " (product owner %s)", d.Owner.ProductOwner)
		}
		b.WriteString(".")
		if d.SourceSystem != "" {
			fmt.Fprintf(&b, " Source system: %s.", d.SourceSystem)
		}
		b.WriteString("\n")
	}
	b.WriteString(`
## Conventions

- **Authentication**: every operation except the health checks and this document needs ` + "`Authorization: Bearer <token>`" + `, with a user token from the organisation's single sign-on or a Plinth service token (see the ` + "`bearerAuth`" + ` security scheme). 401 means the token is missing or not valid, 403 that it is valid but does not allow the request; the problem details say which. The admin API needs an admin group; searching the audit trail, an admin or auditor group.
- **Lists** are keyset-paginated in ascending key order: ` + "`limit`" + ` (1 to 100, default 20) and the opaque ` + "`cursor`" + ` from the previous page's ` + "`nextCursor`" + `, which is null on the last page. Filters combine with AND. Unknown, repeated or empty query parameters are refused with 400.
- **Records** carry every field of the entity, null when it has no value, and the system fields ` + "`version`, `createdAt` and `updatedAt`" + `.
- **Concurrency**: responses that return a record carry ` + "`ETag: \"<version>\"`" + `. PATCH and DELETE require ` + "`If-Match`" + ` with that ETag: 428 when it is missing, 412 when the record has changed since.
- **Updates** are JSON Merge Patch (RFC 7396): fields given replace the stored ones, null removes a field, nested objects merge and arrays are replaced whole.
- **Errors** are RFC 9457 problem details (` + "`application/problem+json`" + `) with ` + "`correlationId`" + ` and, for invalid input, an ` + "`errors`" + ` list naming each field or parameter.
- **Audit**: every request that touches data or access, allowed or denied, leaves one record in a tamper-evident audit trail: who (the user or service token), what (operation, route, filter values, the ids of the records returned or changed), when, and the decision and status. Reads are recorded before the response is sent, writes in the same transaction as the change.
- **Correlation**: send ` + "`x-correlation-id`" + ` to tie a request to its logs, audit records and change events; one is generated when it is absent or not valid, and every response echoes it.
- **Personal data**: every field is marked with ` + "`x-plinth-pii`" + ` (none, personal or special category).
`)
	return b.String()
}

// bearerDescription explains the bearerAuth security scheme.
const bearerDescription = "Send `Authorization: Bearer <token>` with one of two kinds of JWT.\n\n" +
	"- **User tokens** from the organisation's single sign-on, carrying the claims `sub`, `email`, `name` and `groups`. " +
	"They are signed with HS256 and a shared secret, or with RS256 or ES256 and a key from the configured JWKS, chosen by `kid`. " +
	"`exp`, `nbf` and `iat` are checked with a small clock skew, and `iss` and `aud` when configured; `alg: none` is refused. " +
	"The groups decide what the user may do, through the access policy of each domain and environment.\n" +
	"- **Plinth service tokens** for other services, listeners and front ends, issued by `POST /admin/v1/tokens` (or `plinth token issue`). " +
	"Each is scoped to one API, one endpoint template (matched exactly), some methods and one environment. " +
	"The token carries only its id and consumer; its grant is checked on every call, so disabling the grant revokes the token within 5 seconds.\n\n" +
	"A missing or invalid token gets 401 with `WWW-Authenticate`; a valid token without permission gets 403."

// adminNote ends the description of every admin operation.
const adminNote = "Requires a user token in one of the configured admin groups; any other valid token gets 403."

// sentence returns s with a full stop at the end.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.HasSuffix(s, ".") {
		return s
	}
	return s + "."
}

// contactOf names the owner of a single-domain API, or the owners of several.
func contactOf(domains []*plinth.Domain) *contact {
	var areas, emails []string
	for _, d := range domains {
		if d.Owner.ServiceArea != "" && !slices.Contains(areas, d.Owner.ServiceArea) {
			areas = append(areas, d.Owner.ServiceArea)
		}
		if d.Owner.ProductOwner != "" && !slices.Contains(emails, d.Owner.ProductOwner) {
			emails = append(emails, d.Owner.ProductOwner)
		}
	}
	c := &contact{Name: strings.Join(areas, "; ")}
	if len(emails) == 1 {
		c.Email = emails[0]
	}
	if c.Name == "" && c.Email == "" {
		return nil
	}
	return c
}

func domainTagDescription(d *plinth.Domain) string {
	s := sentence(d.Description)
	if d.Owner.ServiceArea != "" {
		s += " Owned by " + d.Owner.ServiceArea
		if d.Owner.ProductOwner != "" {
			s += " (product owner " + d.Owner.ProductOwner + ")"
		}
		s += "."
	}
	if d.SourceSystem != "" {
		s += " Source system: " + d.SourceSystem + "."
	}
	return strings.TrimSpace(s)
}

// entity adds the schemas and the five operations of one entity.
func (g *openAPIGen) entity(d *plinth.Domain, e *plinth.Entity) error {
	if e == nil || len(e.Fields) == 0 {
		return fmt.Errorf("openapi: domain %s: an entity is nil or has no key field", d.Name)
	}
	owner := fmt.Sprintf("entity %s of domain %s", e.Name, d.Name)
	name := pascal(e.Name)
	plural := pascal(e.Plural)
	for _, s := range []string{name, name + "Create", name + "Patch", name + "List"} {
		if err := g.claim("schema", s, owner); err != nil {
			return err
		}
	}
	for _, id := range []string{"list" + plural, "create" + name, "get" + name, "update" + name, "delete" + name} {
		if err := g.claim("operationId", id, owner); err != nil {
			return err
		}
	}
	if err := g.claim("path", e.Plural, owner); err != nil {
		return err
	}

	key := e.KeyField()
	g.schemas.set(name, g.recordSchema(e))
	g.schemas.set(name+"Create", g.createSchema(e))
	g.schemas.set(name+"Patch", g.patchSchema(e))
	g.schemas.set(name+"List", obj{
		{"type", "object"},
		{"description", fmt.Sprintf("One page of %s, in ascending order of %s.", e.Plural, key.Name)},
		{"properties", obj{
			{e.Plural, obj{{"type", "array"}, {"items", schemaRef(name)}}},
			{"nextCursor", obj{{"type", []string{"string", "null"}},
				{"description", "Send as `cursor`, with the same filters, for the next page; null on the last page."}}},
		}},
		{"required", []string{e.Plural, "nextCursor"}},
	})

	noun := humanName(e.Name)
	tags := []string{d.Name}
	correlation := paramRef("CorrelationId")
	idParam := parameter{
		Name: "id", In: "path", Required: true,
		Description: strings.TrimSpace(fmt.Sprintf("The `%s` of the %s. %s", key.Name, noun, sentence(key.Description))),
		Schema:      keySchema(e.Key.Type),
	}
	recordHeaders := func(extra ...member) obj {
		h := obj{{"x-correlation-id", headerRef("CorrelationId")}, {"ETag", headerRef("ETag")}}
		return append(h, extra...)
	}
	errs := g.errs

	// The collection: list and create.
	listParams := []any{correlation}
	for _, f := range e.Filters {
		listParams = append(listParams, filterParams(e, f)...)
	}
	listParams = append(listParams, paramRef("Limit"), paramRef("Cursor"))
	listResponses := obj{{"200", response{
		Description: fmt.Sprintf("A page of %s.", e.Plural),
		Headers:     obj{{"x-correlation-id", headerRef("CorrelationId")}},
		Content:     jsonContent(schemaRef(name + "List")),
	}}}
	listResponses = append(listResponses, errs("400", "401", "403", "500", "503")...)

	createDesc := fmt.Sprintf("Creates a %s from the fields in the body, validated against the domain spec; nothing is written when any field is invalid (422). ", noun)
	createErrs := []string{"400", "401", "403", "413", "415", "422", "500", "503"}
	if e.Key.Generated {
		createDesc += fmt.Sprintf("The key `%s` is assigned by the server: leave it out. ", key.Name)
	} else {
		createDesc += fmt.Sprintf("The key `%s` is required and must be unique (409 when a %s with it exists). ", key.Name, noun)
		createErrs = []string{"400", "401", "403", "409", "413", "415", "422", "500", "503"}
	}
	createDesc += "Returns the stored record, its Location and its ETag."
	createResponses := obj{{"201", response{
		Description: fmt.Sprintf("The %s was created.", noun),
		Headers:     recordHeaders(member{"Location", headerRef("Location")}),
		Content:     jsonContent(schemaRef(name)),
	}}}
	createResponses = append(createResponses, errs(createErrs...)...)

	ops := map[string]any{
		plinth.ActionList: operation{
			Tags: tags, OperationID: "list" + plural,
			Summary:     fmt.Sprintf("List %s", humanName(e.Plural)),
			Description: listDescription(e),
			Parameters:  listParams,
			Responses:   listResponses,
		},
		plinth.ActionCreate: operation{
			Tags: tags, OperationID: "create" + name,
			Summary:     fmt.Sprintf("Create a %s", noun),
			Description: createDesc,
			Parameters:  []any{correlation},
			RequestBody: &requestBody{
				Description: fmt.Sprintf("The new %s.", noun),
				Required:    true,
				Content:     jsonContent(schemaRef(name + "Create")),
			},
			Responses: createResponses,
		},
	}

	// One record: get, update, delete.
	getResponses := obj{{"200", response{
		Description: fmt.Sprintf("The %s.", noun),
		Headers:     recordHeaders(),
		Content:     jsonContent(schemaRef(name)),
	}}}
	getResponses = append(getResponses, errs("400", "401", "403", "404", "500", "503")...)
	updateResponses := obj{{"200", response{
		Description: fmt.Sprintf("The %s after the update, with its new ETag.", noun),
		Headers:     recordHeaders(),
		Content:     jsonContent(schemaRef(name)),
	}}}
	updateResponses = append(updateResponses, errs("400", "401", "403", "404", "412", "413", "415", "422", "428", "500", "503")...)
	deleteResponses := obj{{"204", response{
		Description: fmt.Sprintf("The %s was deleted.", noun),
		Headers:     obj{{"x-correlation-id", headerRef("CorrelationId")}},
	}}}
	deleteResponses = append(deleteResponses, errs("400", "401", "403", "404", "412", "428", "500", "503")...)
	patchSchema := schemaRef(name + "Patch")

	maps.Copy(ops, map[string]any{
		plinth.ActionView: operation{
			Tags: tags, OperationID: "get" + name,
			Summary: fmt.Sprintf("Get a %s", noun),
			Description: fmt.Sprintf("Returns the %s with every field, null where it has no value. "+
				"The ETag header carries its version, for a later update or delete.", noun),
			Parameters: []any{idParam, correlation},
			Responses:  getResponses,
		},
		plinth.ActionUpdate: operation{
			Tags: tags, OperationID: "update" + name,
			Summary: fmt.Sprintf("Update a %s", noun),
			Description: fmt.Sprintf("Changes a %s with a JSON Merge Patch (RFC 7396): fields in the body replace the stored ones, "+
				"null removes a field, nested objects merge and arrays are replaced whole. "+
				"The key `%s` cannot be changed. The merged record is validated as a whole; nothing is written when any field is invalid (422). "+
				"Send the ETag from the last read in If-Match: 428 when it is missing, 412 when the %s has changed since. "+
				"A patch that changes nothing leaves the record and its version as they are.", noun, key.Name, noun),
			Parameters: []any{idParam, paramRef("IfMatch"), correlation},
			RequestBody: &requestBody{
				Description: "The changes, as a JSON Merge Patch. `application/json` is accepted too.",
				Required:    true,
				Content: obj{
					{mediaMergePatch, mediaType{Schema: patchSchema}},
					{mediaJSON, mediaType{Schema: patchSchema}},
				},
			},
			Responses: updateResponses,
		},
		plinth.ActionDelete: operation{
			Tags: tags, OperationID: "delete" + name,
			Summary: fmt.Sprintf("Delete a %s", noun),
			Description: fmt.Sprintf("Deletes a %s. Send the ETag from the last read in If-Match: "+
				"428 when it is missing, 412 when the %s has changed since.", noun, noun),
			Parameters: []any{idParam, paramRef("IfMatch"), correlation},
			Responses:  deleteResponses,
		},
	})
	return endpointPaths(&g.paths, plinth.EntityEndpoints(e.Plural), ops, owner)
}

func listDescription(e *plinth.Entity) string {
	s := fmt.Sprintf("Lists %s in ascending order of %s, a page at a time: follow `nextCursor` until it is null. ",
		e.Plural, e.Key.Name)
	if len(e.Filters) > 0 {
		s += "Filters combine with AND. "
	}
	s += "Unknown, repeated or empty query parameters are refused with 400, naming each."
	return s
}

// filterParams returns the query parameters of one filter.
func filterParams(e *plinth.Entity, f *plinth.Filter) []any {
	subject := fmt.Sprintf("Only %s whose `%s`", e.Plural, f.PathString())
	if f.Array != nil {
		subject = fmt.Sprintf("Only %s with an item in `%s` whose `%s`", e.Plural, f.Array.Name, f.Field.Name)
	}
	note := ""
	if f.Field.Format != "" {
		note = " " + formatNotes[f.Field.Format]
	}
	exact := parameter{Name: f.Param, In: "query", Schema: paramSchema(f.Field),
		Description: subject + " equals this value." + note}
	switch f.Match {
	case plinth.MatchPrefix:
		return []any{parameter{Name: f.Param, In: "query", Schema: obj{{"type", "string"}, {"minLength", 1}},
			Description: subject + " starts with this text, ignoring case and accents (`zoe` matches Zoë)."}}
	case plinth.MatchContains:
		return []any{parameter{Name: f.Param, In: "query", Schema: obj{{"type", "string"}, {"minLength", 1}},
			Description: subject + " contains this text, ignoring case and accents (`zoe` matches Zoë)."}}
	case plinth.MatchRange:
		from, to := "at least", "at most"
		if f.Field.Type == plinth.TypeDate || f.Field.Type == plinth.TypeDateTime {
			from, to = "on or after", "on or before"
		}
		return []any{
			exact,
			parameter{Name: f.Param + "_from", In: "query", Schema: paramSchema(f.Field),
				Description: subject + " is " + from + " this value (inclusive)." + note},
			parameter{Name: f.Param + "_to", In: "query", Schema: paramSchema(f.Field),
				Description: subject + " is " + to + " this value (inclusive)." + note},
		}
	}
	return []any{exact}
}

// paramSchema is the schema of a query value compared with a field. Length,
// enum and range limits guard writes only, so they are left out.
func paramSchema(f *plinth.Field) obj {
	s := obj{}
	switch f.Type {
	case plinth.TypeInteger:
		s.set("type", "integer")
		s.set("format", "int64")
	case plinth.TypeNumber:
		s.set("type", "number")
		s.set("format", "double")
	case plinth.TypeBoolean:
		s.set("type", "boolean")
	case plinth.TypeDate:
		s.set("type", "string")
		s.set("format", "date")
	case plinth.TypeDateTime:
		s.set("type", "string")
		s.set("format", "date-time")
	case plinth.TypeUUID:
		s.set("type", "string")
		s.set("format", "uuid")
	default:
		s.set("type", "string")
		if f.Format == plinth.FormatEmail {
			s.set("format", "email")
		}
		s.set("minLength", 1)
	}
	if f.Format != "" {
		s.set("x-plinth-format", string(f.Format))
	}
	return s
}

func keySchema(t plinth.KeyType) obj {
	switch t {
	case plinth.KeyInteger:
		return obj{{"type", "integer"}, {"format", "int64"}}
	case plinth.KeyUUID:
		return obj{{"type", "string"}, {"format", "uuid"}}
	}
	return obj{{"type", "string"}, {"minLength", 1}}
}

// schemaMode says which shape of a record a schema describes.
type schemaMode int

const (
	modeRecord schemaMode = iota // as the API returns it
	modeCreate                   // a create body
	modePatch                    // a merge patch
)

func (g *openAPIGen) recordSchema(e *plinth.Entity) obj {
	props := obj{}
	var required []string
	for i, f := range e.Fields {
		var s obj
		if i == 0 {
			s = fieldSchema(f, modeRecord, false)
			if e.Key.Generated {
				s.set("readOnly", true)
			}
		} else {
			s = fieldSchema(f, modeRecord, true)
		}
		props.set(f.Name, s)
		required = append(required, f.Name)
	}
	props.set("version", obj{{"type", "integer"}, {"format", "int64"}, {"minimum", 1}, {"readOnly", true},
		{"description", "The record's version: 1 when created, one more on each change. The ETag carries it."}})
	props.set("createdAt", obj{{"type", "string"}, {"format", "date-time"}, {"readOnly", true},
		{"description", "When the record was created (RFC 3339, UTC)."}})
	props.set("updatedAt", obj{{"type", "string"}, {"format", "date-time"}, {"readOnly", true},
		{"description", "When the record was last changed (RFC 3339, UTC)."}})
	required = append(required, plinth.SystemFields...)
	desc := sentence(e.Description)
	desc = strings.TrimSpace(desc + " Every field is present; null when it has no value.")
	return obj{
		{"type", "object"},
		{"description", desc},
		{"properties", props},
		{"required", required},
		{"additionalProperties", false},
	}
}

func (g *openAPIGen) createSchema(e *plinth.Entity) obj {
	props := obj{}
	var required []string
	for i, f := range e.Fields {
		if i == 0 {
			if e.Key.Generated {
				continue // assigned by the server; sending it is refused
			}
			props.set(f.Name, fieldSchema(f, modeCreate, false))
			required = append(required, f.Name)
			continue
		}
		props.set(f.Name, fieldSchema(f, modeCreate, !f.Required))
		if f.Required {
			required = append(required, f.Name)
		}
	}
	s := obj{
		{"type", "object"},
		{"description", fmt.Sprintf("A new %s. Fields left out or null have no value; system fields and unknown fields are refused.", humanName(e.Name))},
		{"properties", props},
	}
	if len(required) > 0 {
		s.set("required", required)
	}
	s.set("additionalProperties", false)
	return s
}

func (g *openAPIGen) patchSchema(e *plinth.Entity) obj {
	props := obj{}
	for i, f := range e.Fields {
		s := fieldSchema(f, modePatch, !f.Required && i > 0)
		if i == 0 {
			s = setDescription(s, strings.TrimSpace(sentence(f.Description)+
				" The record's key: it cannot be changed, so give it only with its current value, or leave it out."))
		}
		props.set(f.Name, s)
	}
	return obj{
		{"type", "object"},
		{"description", fmt.Sprintf("A JSON Merge Patch of a %s: every field is optional; null removes a field "+
			"(so a required field cannot be null), nested objects merge and arrays are replaced whole.", humanName(e.Name))},
		{"properties", props},
		{"additionalProperties", false},
	}
}

// setDescription replaces the description of s.
func setDescription(s obj, d string) obj {
	for i, m := range s {
		if m.key == "description" {
			s[i].value = d
			return s
		}
	}
	// Put it after type (and format) for readability.
	at := 0
	for at < len(s) && (s[at].key == "type" || s[at].key == "format") {
		at++
	}
	out := append(obj{}, s[:at]...)
	out = append(out, member{"description", d})
	return append(out, s[at:]...)
}

// formatNotes explain each format in field and parameter descriptions.
var formatNotes = map[plinth.Format]string{
	plinth.FormatEmail:      "Format: an e-mail address such as name@example.org.",
	plinth.FormatPhone:      "Format: a phone number of 7 to 15 digits, optionally with a leading + and spaces, brackets or hyphens, such as 020 7946 0000 or +44 20 7946 0000.",
	plinth.FormatUKPostcode: "Format: a UK postcode such as E8 1DY, stored upper-case with one space.",
	plinth.FormatNHSNumber:  "Format: a 10-digit NHS number with a valid check digit, stored without spaces or hyphens.",
	plinth.FormatNINumber:   "Format: a National Insurance number such as AB123456C, stored upper-case without spaces.",
	plinth.FormatUPRN:       "Format: a Unique Property Reference Number (UPRN) of 1 to 12 digits.",
}

// maxUPRN is the largest Unique Property Reference Number.
const maxUPRN = 999999999999

// fieldSchema is the schema of one field's value. nullable adds null to its
// types, for a field that may have no value.
func fieldSchema(f *plinth.Field, mode schemaMode, nullable bool) obj {
	var types []string
	s := obj{}
	var format string
	uprnString := f.Type == plinth.TypeString && f.Format == plinth.FormatUPRN
	switch f.Type {
	case plinth.TypeString:
		types = []string{"string"}
		if uprnString && mode != modeRecord {
			types = append(types, "integer") // a UPRN may be sent as a number
		}
		if f.Format == plinth.FormatEmail {
			format = "email"
		}
	case plinth.TypeInteger:
		types, format = []string{"integer"}, "int64"
	case plinth.TypeNumber:
		types, format = []string{"number"}, "double"
	case plinth.TypeBoolean:
		types = []string{"boolean"}
	case plinth.TypeDate:
		types, format = []string{"string"}, "date"
	case plinth.TypeDateTime:
		types, format = []string{"string"}, "date-time"
	case plinth.TypeUUID:
		types, format = []string{"string"}, "uuid"
	case plinth.TypeObject:
		types = []string{"object"}
	case plinth.TypeArray:
		types = []string{"array"}
	}
	if nullable {
		types = append(types, "null")
	}
	if len(types) == 1 {
		s.set("type", types[0])
	} else {
		s.set("type", types)
	}
	if format != "" {
		s.set("format", format)
	}

	desc := sentence(f.Description)
	if f.Format != "" {
		note := formatNotes[f.Format]
		if uprnString {
			if mode == modeRecord {
				note += " Returned as a string of digits."
			} else {
				note += " Send it as a string of digits or as a number."
			}
		}
		desc = strings.TrimSpace(desc + " " + note)
	}
	if desc != "" {
		s.set("description", desc)
	}
	if f.Format != "" {
		s.set("x-plinth-format", string(f.Format))
	}
	if f.PII != "" {
		s.set("x-plinth-pii", string(f.PII))
	}

	if f.MaxLength != nil {
		s.set("maxLength", *f.MaxLength)
	}
	if f.Pattern != nil {
		s.set("pattern", f.Pattern.String())
	} else if uprnString {
		s.set("pattern", `^[0-9]{1,12}$`)
	}
	if len(f.Enum) > 0 {
		enum := make([]any, 0, len(f.Enum)+1)
		for _, v := range f.Enum {
			enum = append(enum, v)
		}
		if nullable {
			enum = append(enum, nil)
		}
		s.set("enum", enum)
	}
	min, max := f.Min, f.Max
	if f.Format == plinth.FormatUPRN && (f.Type == plinth.TypeInteger || mode != modeRecord) {
		lo, hi := float64(0), float64(maxUPRN)
		if min == nil || *min < lo {
			min = &lo
		}
		if max == nil || *max > hi {
			max = &hi
		}
	}
	if min != nil {
		s.set("minimum", number(*min))
	}
	if max != nil {
		s.set("maximum", number(*max))
	}

	switch f.Type {
	case plinth.TypeObject:
		props := obj{}
		var required []string
		for _, nf := range f.Fields {
			switch mode {
			case modeRecord:
				props.set(nf.Name, fieldSchema(nf, mode, true))
				required = append(required, nf.Name)
			case modeCreate:
				props.set(nf.Name, fieldSchema(nf, mode, !nf.Required))
				if nf.Required {
					required = append(required, nf.Name)
				}
			case modePatch:
				// Nested objects merge, so any field may be left out.
				props.set(nf.Name, fieldSchema(nf, mode, !nf.Required))
			}
		}
		s.set("properties", props)
		if len(required) > 0 {
			s.set("required", required)
		}
		s.set("additionalProperties", false)
	case plinth.TypeArray:
		if f.Items != nil {
			itemMode := mode
			if mode == modePatch {
				itemMode = modeCreate // arrays are replaced whole
			}
			s.set("items", fieldSchema(f.Items, itemMode, false))
		}
	}
	return s
}

// number encodes a float as an integer when it is whole, so limits read as
// they were written.
func number(x float64) json.Number {
	if math.Abs(x) < 1<<53 && x == math.Trunc(x) {
		return json.Number(strconv.FormatInt(int64(x), 10))
	}
	return json.Number(strconv.FormatFloat(x, 'g', -1, 64))
}

// pascal turns camelCase or kebab-case into PascalCase: "benefit-claims" →
// "BenefitClaims".
func pascal(s string) string {
	var b strings.Builder
	upper := true
	for _, r := range s {
		if r == '-' || r == '_' {
			upper = true
			continue
		}
		if upper {
			b.WriteString(strings.ToUpper(string(r)))
			upper = false
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// humanName turns camelCase or kebab-case into lower-case words:
// "benefitClaim" → "benefit claim".
func humanName(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == '-' || r == '_':
			b.WriteByte(' ')
		case r >= 'A' && r <= 'Z':
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteRune(r + ('a' - 'A'))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
