package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
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

// apiPrefix starts every path of the Platform API.
const apiPrefix = "/api/v1"

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
		// Security overrides the document's: public operations set it to
		// an empty list. Nil inherits the bearer token requirement.
		Security *[]securityRequirement `json:"security,omitempty"`
	}
	parameter struct {
		Name        string `json:"name"`
		In          string `json:"in"`
		Description string `json:"description"`
		Required    bool   `json:"required,omitempty"`
		Schema      obj    `json:"schema"`
		Example     any    `json:"example,omitempty"`
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
		Schema  any `json:"schema"`
		Example any `json:"example,omitempty"`
	}
	header struct {
		Description string `json:"description"`
		Required    bool   `json:"required,omitempty"`
		Schema      obj    `json:"schema"`
		Example     any    `json:"example,omitempty"`
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
func problemContent(example any) obj {
	return obj{{"application/problem+json", mediaType{Schema: schemaRef("Problem"), Example: example}}}
}

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

// public is the security of the operations anyone may call.
var public = &[]securityRequirement{}

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
	"412": "PreconditionFailed", "413": "ContentTooLarge", "415": "UnsupportedMediaType",
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

	if err := g.platform(); err != nil {
		return nil, err
	}
	if err := g.admin(domains); err != nil {
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

// platform adds the components every document has and the routes that are
// not about a domain.
func (g *openAPIGen) platform() error {
	for _, s := range []string{"Problem", "ProblemError", "Ping", "Readiness", "ReadinessCheck"} {
		if err := g.claim("schema", s, "the platform"); err != nil {
			return err
		}
	}
	for _, id := range []string{"ping", "getReadiness", "getOpenApiDocument"} {
		if err := g.claim("operationId", id, "the platform"); err != nil {
			return err
		}
	}
	g.parameters.set("CorrelationId", parameter{
		Name: "x-correlation-id", In: "header",
		Description: "Ties the request to its logs, audit records and change events. " +
			"Up to 128 letters, digits, dots, underscores, colons and hyphens; " +
			"when it is absent or not of that form the API generates one. Every response echoes it.",
		Schema:  obj{{"type", "string"}, {"pattern", `^[A-Za-z0-9._:-]{1,128}$`}},
		Example: "3f2b8c1e-7d4a-4f0e-9b1a-2c6d8e0f1a2b",
	})
	g.parameters.set("Limit", parameter{
		Name: "limit", In: "query",
		Description: fmt.Sprintf("How many records a page holds at most, from 1 to %d.", plinth.MaxLimit),
		Schema: obj{{"type", "integer"}, {"minimum", 1}, {"maximum", plinth.MaxLimit},
			{"default", plinth.DefaultLimit}},
	})
	g.parameters.set("Cursor", parameter{
		Name: "cursor", In: "query",
		Description: "Where the page starts: the opaque `nextCursor` of the previous page. " +
			"Send it with the same filters as the request that returned it; otherwise it is refused with 400.",
		Schema: obj{{"type", "string"}, {"minLength", 1}},
	})
	g.parameters.set("IfMatch", parameter{
		Name: "If-Match", In: "header", Required: true,
		Description: "The ETag of the record as last read, such as `\"3\"`. " +
			"The request is refused with 428 when it is missing and 412 when the record has changed since.",
		Schema:  obj{{"type", "string"}},
		Example: `"3"`,
	})

	g.headers.set("CorrelationId", header{
		Description: "The request's correlation id: the one sent in `x-correlation-id`, or the one generated for it.",
		Required:    true,
		Schema:      obj{{"type", "string"}},
		Example:     "3f2b8c1e-7d4a-4f0e-9b1a-2c6d8e0f1a2b",
	})
	g.headers.set("ETag", header{
		Description: "The record's version as a strong entity tag, such as `\"3\"`. Send it in `If-Match` to update or delete the record.",
		Required:    true,
		Schema:      obj{{"type", "string"}, {"pattern", `^"[0-9]+"$`}},
		Example:     `"3"`,
	})
	g.headers.set("Location", header{
		Description: "The path of the created record.",
		Required:    true,
		Schema:      obj{{"type", "string"}, {"format", "uri-reference"}},
	})
	g.headers.set("WWWAuthenticate", header{
		Description: "The authentication scheme to use: `Bearer realm=\"plinth\"` when no token was sent; " +
			"followed by `error=\"invalid_token\"` and a short `error_description` when a token was sent but is not valid " +
			"(malformed, badly signed, expired, not yet valid, or for another issuer or audience).",
		Required: true,
		Schema:   obj{{"type", "string"}, {"pattern", `^Bearer realm="plinth"`}},
		Example:  `Bearer realm="plinth", error="invalid_token", error_description="token expired"`,
	})
	g.headers.set("CacheControlNoStore", header{
		Description: "`no-store`: the response holds a secret, so it must not be cached.",
		Required:    true,
		Schema:      obj{{"type", "string"}, {"const", "no-store"}},
	})
	g.headers.set("RetryAfter", header{
		Description: "Seconds to wait before trying again.",
		Schema:      obj{{"type", "integer"}, {"minimum", 0}},
		Example:     5,
	})

	g.schemas.set("Problem", obj{
		{"type", "object"},
		{"description", "An RFC 9457 problem details object. Never holds a stack trace."},
		{"properties", obj{
			{"type", obj{{"type", "string"}, {"format", "uri-reference"},
				{"description", "Identifies the kind of problem; `about:blank` when the status code says it all."}}},
			{"title", obj{{"type", "string"}, {"description", "The HTTP status text, such as Unprocessable Entity."}}},
			{"status", obj{{"type", "integer"}, {"minimum", 400}, {"maximum", 599}, {"description", "The HTTP status code."}}},
			{"detail", obj{{"type", "string"}, {"description", "What went wrong with this request, for people."}}},
			{"instance", obj{{"type", "string"}, {"format", "uri-reference"}, {"description", "The path of the request."}}},
			{"correlationId", obj{{"type", "string"}, {"description", "The request's correlation id; quote it when reporting a problem."}}},
			{"errors", obj{{"type", "array"}, {"description", "Each problem with a field of the body or a parameter of the request."},
				{"items", schemaRef("ProblemError")}}},
		}},
		{"required", []string{"type", "title", "status", "correlationId"}},
	})
	g.schemas.set("ProblemError", obj{
		{"type", "object"},
		{"description", "One problem with one field of the body or one parameter of the request."},
		{"properties", obj{
			{"field", obj{{"type", "string"}, {"description", "Path of the field in the body, such as `addresses[0].postCode`."}}},
			{"parameter", obj{{"type", "string"}, {"description", "Name of the query parameter, path parameter or header, such as `limit`."}}},
			{"detail", obj{{"type", "string"}, {"description", "What is wrong with it, such as `must be at most 100 characters long`."}}},
		}},
		{"required", []string{"detail"}},
	})
	g.schemas.set("Ping", obj{
		{"type", "object"},
		{"properties", obj{{"success", obj{{"type", "boolean"}, {"const", true}}}}},
		{"required", []string{"success"}},
	})
	g.schemas.set("Readiness", obj{
		{"type", "object"},
		{"description", "Whether the API can serve requests, with the result of each dependency check."},
		{"properties", obj{
			{"ready", obj{{"type", "boolean"}, {"description", "True when every check passed."}}},
			{"checks", obj{{"type", "object"}, {"description", "Each check by name, such as `store`."},
				{"additionalProperties", schemaRef("ReadinessCheck")}}},
		}},
		{"required", []string{"ready", "checks"}},
	})
	g.schemas.set("ReadinessCheck", obj{
		{"type", "object"},
		{"properties", obj{
			{"ok", obj{{"type", "boolean"}}},
			{"detail", obj{{"type", "string"}, {"description", "Why the check failed."}}},
		}},
		{"required", []string{"ok"}},
	})

	problem := func(status int, detail string, errs ...plinth.FieldError) obj {
		return problemExample(status, apiPrefix+"/residents/42", detail, errs...)
	}
	errResponse := g.errResponse
	errResponse("BadRequest",
		"The request is malformed: the body is not a JSON object, or a query parameter, the limit, the cursor, the id or If-Match is not valid. `errors` names each parameter.",
		problem(400, "The query parameters are not valid; see errors.",
			plinth.FieldError{Parameter: "limit", Detail: fmt.Sprintf("must be an integer from 1 to %d", plinth.MaxLimit)}))
	errResponse("Unauthorized",
		"The request has no bearer token, or its token is not valid: malformed, badly signed, expired or not yet valid, "+
			"for another issuer or audience, signed with an unknown key or algorithm, or a service token whose grant does not exist. "+
			"`WWW-Authenticate` names the scheme, with `error=\"invalid_token\"` when a token was sent. "+
			"The detail says whether the token was missing or invalid, never more about a failed signature than that it is not valid.",
		problem(401, "Authentication required: token expired."),
		member{"WWW-Authenticate", headerRef("WWWAuthenticate")})
	errResponse("Forbidden",
		"The token is valid but does not allow this request: the user is in none of the groups the access policy of the domain "+
			"and environment gives this operation (reading and writing are granted separately), or the domain has no access policy in this environment; "+
			"the service token has been revoked, its grant has expired, or it is for another API, endpoint, method or environment; "+
			"or the route is an admin route and the token is not a user token in an admin group.",
		problem(403, "Permission denied: the token's groups may not read residents."))
	errResponse("NotFound", "No record has this id.", problem(404, "No record has this id."))
	errResponse("Conflict", "A record with this key already exists.", problem(409, "A record with this key already exists."))
	errResponse("PreconditionFailed",
		"The record has changed since the version given in If-Match; read it again and retry with its new ETag.",
		problem(412, "The record has changed since the version given in If-Match; fetch it again and retry with its new ETag."))
	errResponse("ContentTooLarge", "The body is larger than the server's limit (1 MiB unless configured otherwise).",
		problem(413, "The body is larger than the limit of 1048576 bytes."))
	errResponse("UnsupportedMediaType", "The body is not sent with a content type this operation accepts.",
		problem(415, "Send the body as application/json.",
			plinth.FieldError{Parameter: "Content-Type", Detail: "must be application/json"}))
	errResponse("UnprocessableContent",
		"The body is not a valid record: nothing was written. `errors` lists every problem, each with the path of its field.",
		problem(422, "The request body is not a valid record; see errors.",
			plinth.FieldError{Field: "lastName", Detail: "is required"},
			plinth.FieldError{Field: "addresses[0].postCode", Detail: "must be a UK postcode such as E8 1DY"}))
	errResponse("PreconditionRequired", "If-Match is missing; send the ETag of the record as last read.",
		problem(428, "Send If-Match with the ETag of the record you read, such as If-Match: \"3\".",
			plinth.FieldError{Parameter: "If-Match", Detail: "is required"}))
	errResponse("InternalServerError", "An unexpected error; quote the correlation id when reporting it.",
		problem(500, "An unexpected error occurred; quote correlation id 3f2b8c1e-7d4a-4f0e-9b1a-2c6d8e0f1a2b when reporting it."))
	errResponse("ServiceUnavailable",
		"The data store, or something the authorizer needs to decide (such as the JWKS or the grants), is unavailable. "+
			"The authorizer fails closed: the request is refused, never let through. Try again after the time in Retry-After.",
		problem(503, "The data store is unavailable; try again shortly."),
		member{"Retry-After", headerRef("RetryAfter")})
	g.responses.set("ClientError", response{
		Description: "A client error. This operation takes no parameters or body and answers every request routed to it; " +
			"requests for a route or method the API does not serve get 404 or 405.",
		Headers: obj{{"x-correlation-id", headerRef("CorrelationId")}},
		Content: problemContent(nil),
	})

	correlation := obj{{"x-correlation-id", headerRef("CorrelationId")}}
	platformOp := func(id, summary, description string, responses obj) obj {
		responses.set("4XX", g.responseRef("ClientError"))
		responses.set("500", g.responseRef("InternalServerError"))
		return obj{{"get", operation{
			Tags: []string{platformTag}, Summary: summary, Description: description + " No token is needed.", OperationID: id,
			Parameters: []any{paramRef("CorrelationId")},
			Responses:  responses,
			Security:   public,
		}}}
	}
	g.paths.set(apiPrefix+"/healthcheck/ping", platformOp("ping", "Check the API is running",
		"Answers as soon as the process serves HTTP, without touching any dependency. Use it for liveness probes.",
		obj{{"200", response{Description: "The API is running.", Headers: correlation,
			Content: obj{{mediaJSON, mediaType{Schema: schemaRef("Ping"), Example: obj{{"success", true}}}}}}}}))
	readyExample := obj{{"ready", true}, {"checks", obj{{"store", obj{{"ok", true}}}}}}
	notReadyExample := obj{{"ready", false}, {"checks", obj{{"store", obj{{"ok", false}, {"detail", "storage unavailable: connection refused"}}}}}}
	g.paths.set(apiPrefix+"/healthcheck/ready", platformOp("getReadiness", "Check the API can serve requests",
		"Runs every dependency check (the data store, and any others configured) with a short deadline and reports each. Use it for readiness probes.",
		obj{
			{"200", response{Description: "Every check passed.", Headers: correlation,
				Content: obj{{mediaJSON, mediaType{Schema: schemaRef("Readiness"), Example: readyExample}}}}},
			{"503", response{Description: "At least one check failed; `checks` says which.", Headers: correlation,
				Content: obj{{mediaJSON, mediaType{Schema: schemaRef("Readiness"), Example: notReadyExample}}}}},
		}))
	g.paths.set(apiPrefix+"/openapi.json", platformOp("getOpenApiDocument", "Get this API description",
		"Returns this OpenAPI 3.1 document, generated from the domain specs the API serves.",
		obj{{"200", response{Description: "The OpenAPI document.", Headers: correlation,
			Content: jsonContent(obj{{"type", "object"}, {"description", "An OpenAPI 3.1 document."}})}}}))
	return nil
}

// problemExample is an example of a problem details object.
func problemExample(status int, instance, detail string, errs ...plinth.FieldError) obj {
	p := obj{{"type", "about:blank"}, {"title", statusText[status]}, {"status", status}, {"detail", detail},
		{"instance", instance}, {"correlationId", "3f2b8c1e-7d4a-4f0e-9b1a-2c6d8e0f1a2b"}}
	if len(errs) > 0 {
		p.set("errors", errs)
	}
	return p
}

// errResponse adds a shared problem+json response that echoes the
// correlation id.
func (g *openAPIGen) errResponse(name, description string, example obj, extra ...member) {
	headers := obj{{"x-correlation-id", headerRef("CorrelationId")}}
	headers = append(headers, extra...)
	g.responses.set(name, response{Description: description, Headers: headers, Content: problemContent(example)})
}

var statusText = map[int]string{
	400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 412: "Precondition Failed",
	413: "Request Entity Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Entity",
	428: "Precondition Required", 500: "Internal Server Error", 503: "Service Unavailable",
}

// adminPrefix starts every path of the admin API.
const adminPrefix = "/admin/v1"

// Methods a service token may be granted.
var grantMethods = []string{"GET", "POST", "PATCH", "DELETE"}

var environments = []string{plinth.EnvDevelopment, plinth.EnvStaging, plinth.EnvProduction}

// kebabPattern is the form of domain names and entity plurals.
const kebabPattern = `^[a-z][a-z0-9]*(-[a-z0-9]+)*$`

// admin adds the admin API: service tokens and access policies. Its paths
// go to g.adminPaths, to follow the domains' paths.
func (g *openAPIGen) admin(domains []*plinth.Domain) error {
	schemas := []string{"Grant", "TokenRequest", "IssuedToken", "TokenList", "TokenUpdate",
		"AccessPolicy", "AccessPolicyInput", "EntityPolicy", "EntityPolicyInput", "AccessPolicyList",
		"AuditRecord", "AuditPrincipal", "AuditRecordList"}
	for _, s := range schemas {
		if err := g.claim("schema", s, "the admin API"); err != nil {
			return err
		}
	}
	for _, id := range []string{"issueToken", "listTokens", "getToken", "updateToken",
		"listAccessPolicies", "putAccessPolicy", "deleteAccessPolicy", "searchAudit"} {
		if err := g.claim("operationId", id, "the admin API"); err != nil {
			return err
		}
	}

	// Examples name a domain and an entity this API serves, when it has any.
	exampleAPI, exampleEndpoint, examplePlural := "residents", apiPrefix+"/residents/{id}", "residents"
	var domainNames []string
	for _, d := range domains {
		if d == nil {
			continue
		}
		domainNames = append(domainNames, d.Name)
	}
	if len(domains) > 0 && domains[0] != nil && len(domains[0].Entities) > 0 && domains[0].Entities[0] != nil {
		d, e := domains[0], domains[0].Entities[0]
		exampleAPI, exampleEndpoint, examplePlural = d.Name, apiPrefix+"/"+e.Plural+"/{id}", e.Plural
	}
	served := ", such as `" + exampleAPI + "`."
	switch n := len(domainNames); {
	case n == 1:
		served = ": `" + domainNames[0] + "`, the one this API serves."
	case n > 1:
		served += " This API serves `" + strings.Join(domainNames[:n-1], "`, `") + "` and `" + domainNames[n-1] + "`."
	}

	str := func(desc string, extra ...member) obj {
		return append(obj{{"type", "string"}, {"description", desc}, {"minLength", 1}}, extra...)
	}
	dateTime := func(desc string) obj {
		return obj{{"type", "string"}, {"format", "date-time"}, {"description", desc}}
	}
	environment := func(desc string) obj {
		return obj{{"type", "string"}, {"enum", environments}, {"description", desc}}
	}
	methods := obj{{"type", "array"}, {"minItems", 1}, {"uniqueItems", true},
		{"description", "The HTTP methods the token may use on the endpoint."},
		{"items", obj{{"type", "string"}, {"enum", grantMethods}}}}
	groups := func(desc string) obj {
		return obj{{"type", "array"}, {"description", desc}, {"items", obj{{"type", "string"}, {"minLength", 1}}}}
	}
	grantProps := obj{
		{"id", obj{{"type", "string"}, {"format", "uuid"}, {"description", "The grant's id, which its token carries."}}},
		{"consumer", str("Who holds the token, such as `housing-benefits-listener`.")},
		{"consumerType", str("What kind of consumer holds it, such as `service`, `listener` or `frontend`.")},
		{"api", str("The domain whose API the token may call"+served, member{"pattern", kebabPattern})},
		{"endpoint", str("The route template the token may call, exactly as the API serves it, such as `"+exampleEndpoint+"`. "+
			"It is matched exactly, not as a prefix: a token for one record's route cannot list the collection.",
			member{"pattern", `^/[^?#\s]*$`})},
		{"methods", methods},
		{"environment", environment("The environment the token may be used in.")},
		{"expiresAt", dateTime("When the grant expires (RFC 3339, UTC). The token is refused after it, whatever the `exp` of the JWT says.")},
		{"requestedBy", str("Who asked for the token, such as their e-mail address.")},
		{"authorisedBy", str("Who authorised the token, such as the e-mail address of the domain's product owner.")},
	}
	exampleGrant := obj{
		{"id", "0b6f3e2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b"}, {"consumer", "housing-benefits-listener"},
		{"consumerType", "listener"}, {"api", exampleAPI}, {"endpoint", exampleEndpoint},
		{"methods", []string{"GET"}}, {"environment", plinth.EnvProduction},
		{"expiresAt", "2026-12-31T23:59:59Z"},
		{"requestedBy", "ann.lee@example.gov.uk"}, {"authorisedBy", "data-owner@example.gov.uk"},
	}
	exampleRequest := append(obj{}, exampleGrant[1:]...)
	exampleGrant = append(exampleGrant, obj{
		{"enabled", true}, {"createdAt", "2025-06-02T09:30:00Z"}, {"updatedAt", "2025-06-02T09:30:00Z"},
	}...)

	g.schemas.set("Grant", obj{
		{"type", "object"},
		{"description", "The grant behind a service token: what one consumer may call. " +
			"The grant is checked on every call the token makes; the token itself is never stored."},
		{"properties", append(append(obj{}, grantProps...), obj{
			{"enabled", obj{{"type", "boolean"}, {"description", "False once revoked: the token is then refused within 5 seconds."}}},
			{"createdAt", dateTime("When the grant was issued (RFC 3339, UTC).")},
			{"updatedAt", dateTime("When the grant was last changed (RFC 3339, UTC).")},
		}...)},
		{"required", []string{"id", "consumer", "consumerType", "api", "endpoint", "methods", "environment",
			"expiresAt", "requestedBy", "authorisedBy", "enabled", "createdAt", "updatedAt"}},
		{"additionalProperties", false},
	})
	requestProps := append(obj{}, grantProps[1:]...)
	for i, m := range requestProps {
		if m.key == "expiresAt" {
			requestProps[i].value = dateTime("When the token expires (RFC 3339). Required: it must be in the future " +
				"and at most the configured maximum token lifetime ahead.")
		}
	}
	g.schemas.set("TokenRequest", obj{
		{"type", "object"},
		{"description", "What a new service token may call, and who asked for and authorised it. Every field is required; unknown fields are refused."},
		{"properties", requestProps},
		{"required", []string{"consumer", "consumerType", "api", "endpoint", "methods", "environment",
			"expiresAt", "requestedBy", "authorisedBy"}},
		{"additionalProperties", false},
	})
	g.schemas.set("IssuedToken", obj{
		{"type", "object"},
		{"description", "A new service token and its grant."},
		{"properties", obj{
			{"token", obj{{"type", "string"}, {"pattern", `^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`},
				{"description", "The signed JWT to send as `Authorization: Bearer <token>`. " +
					"It is shown only in this response and never stored: keep it secret, and issue a new one if it is lost."}}},
			{"grant", schemaRef("Grant")},
		}},
		{"required", []string{"token", "grant"}},
		{"additionalProperties", false},
	})
	g.schemas.set("TokenList", obj{
		{"type", "object"},
		{"description", "One page of grants, in order of id. Tokens are never listed: they are not stored."},
		{"properties", obj{
			{"tokens", obj{{"type", "array"}, {"items", schemaRef("Grant")}}},
			{"nextCursor", obj{{"type", []string{"string", "null"}},
				{"description", "Send as `cursor` for the next page; null on the last page."}}},
		}},
		{"required", []string{"tokens", "nextCursor"}},
	})
	g.schemas.set("TokenUpdate", obj{
		{"type", "object"},
		{"description", "A change to a grant: `false` revokes its token, `true` restores it."},
		{"properties", obj{{"enabled", obj{{"type", "boolean"}, {"description", "Whether the token may be used."}}}}},
		{"required", []string{"enabled"}},
		{"additionalProperties", false},
	})

	policyProps := func(entityPolicy string) obj {
		return obj{
			{"readGroups", groups("User groups that may list and view every entity of the domain.")},
			{"writeGroups", groups("User groups that may create, update and delete. Writing does not imply reading unless `writeImpliesRead` is true.")},
			{"writeImpliesRead", obj{{"type", "boolean"}, {"description", "Whether the write groups may read too."}}},
			{"reportingGroups", groups("User groups that may use the Reporting API of the domain.")},
			{"entities", obj{{"type", "object"},
				{"description", "Overrides of the read and write groups for single entities, by plural, such as `" + examplePlural + "`. " +
					"Each must be an entity of the domain."},
				{"propertyNames", obj{{"pattern", kebabPattern}}},
				{"additionalProperties", schemaRef(entityPolicy)}}},
		}
	}
	entityGroups := func(what string) obj {
		return obj{{"type", []string{"array", "null"}},
			{"description", "User groups that may " + what + " this entity. Null keeps the domain's groups; an empty list lets no group in."},
			{"items", obj{{"type", "string"}, {"minLength", 1}}}}
	}
	g.schemas.set("EntityPolicy", obj{
		{"type", "object"},
		{"description", "The groups of one entity, overriding the domain's where a list is not null."},
		{"properties", obj{
			{"readGroups", entityGroups("list and view")},
			{"writeGroups", entityGroups("create, update and delete")},
		}},
		{"required", []string{"readGroups", "writeGroups"}},
		{"additionalProperties", false},
	})
	g.schemas.set("EntityPolicyInput", obj{
		{"type", "object"},
		{"description", "The groups of one entity, overriding the domain's. A list left out or null keeps the domain's groups; an empty list lets no group in."},
		{"properties", obj{
			{"readGroups", entityGroups("list and view")},
			{"writeGroups", entityGroups("create, update and delete")},
		}},
		{"additionalProperties", false},
	})
	g.schemas.set("AccessPolicy", obj{
		{"type", "object"},
		{"description", "Which user groups may use one domain's API in one environment. Service tokens are governed by their grants instead."},
		{"properties", append(append(obj{
			{"domain", str("The domain"+served, member{"pattern", kebabPattern})},
			{"environment", environment("The environment the policy applies in.")},
		}, policyProps("EntityPolicy")...), member{"updatedAt", dateTime("When the policy was last put (RFC 3339, UTC).")})},
		{"required", []string{"domain", "environment", "readGroups", "writeGroups", "writeImpliesRead", "reportingGroups", "updatedAt"}},
		{"additionalProperties", false},
	})
	g.schemas.set("AccessPolicyInput", obj{
		{"type", "object"},
		{"description", "The access policy of a domain in an environment, which the path names. It replaces the policy there whole; unknown fields are refused."},
		{"properties", append(obj{
			{"domain", str("Optional: the domain, which must equal the one in the path.", member{"pattern", kebabPattern})},
			{"environment", environment("Optional: the environment, which must equal the one in the path.")},
		}, policyProps("EntityPolicyInput")...)},
		{"required", []string{"readGroups", "writeGroups", "writeImpliesRead", "reportingGroups"}},
		{"additionalProperties", false},
	})
	g.schemas.set("AccessPolicyList", obj{
		{"type", "object"},
		{"description", "The access policies of an environment, in order of domain."},
		{"properties", obj{{"policies", obj{{"type", "array"}, {"items", schemaRef("AccessPolicy")}}}}},
		{"required", []string{"policies"}},
	})

	// The admin API's own errors.
	problem := func(instance string, status int, detail string, errs ...plinth.FieldError) obj {
		return problemExample(status, adminPrefix+instance, detail, errs...)
	}
	tokenPath := "/tokens/0b6f3e2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
	policyPath := "/access/" + exampleAPI + "/production"
	g.errResponse("TokenNotFound", "No grant has this id.", problem(tokenPath, 404, "No record has this id."))
	g.errResponse("InvalidTokenRequest",
		"The token request is not valid: no token was issued. `errors` lists every problem, each with the path of its field.",
		problem("/tokens", 422, "The token request is not valid; see errors.",
			plinth.FieldError{Field: "endpoint", Detail: "is not a route of the " + exampleAPI + " API"},
			plinth.FieldError{Field: "expiresAt", Detail: "must be at most the maximum token lifetime ahead"}))
	g.errResponse("InvalidTokenUpdate", "The body is not a valid change to a grant: `enabled` is missing or not a boolean, or another field is given.",
		problem(tokenPath, 422, "The request body is not valid; see errors.",
			plinth.FieldError{Field: "enabled", Detail: "is required"}))
	g.errResponse("UnknownDomain", "This API serves no domain of that name, or the environment is not development, staging or production.",
		problem("/access/unknown/production", 404, "No domain is called unknown.",
			plinth.FieldError{Parameter: "domain", Detail: "is not a loaded domain"}))
	g.errResponse("AccessPolicyNotFound", "The domain has no access policy in that environment, this API serves no domain of that name, "+
		"or the environment is not development, staging or production.",
		problem(policyPath, 404, "No record has this id."))
	g.errResponse("InvalidAccessPolicy",
		"The access policy is not valid: nothing was changed. `errors` lists every problem, each with the path of its field.",
		problem(policyPath, 422, "The access policy is not valid; see errors.",
			plinth.FieldError{Field: "entities.unknown", Detail: "is not an entity of the domain"}))

	tags := []string{adminTag}
	correlation := paramRef("CorrelationId")
	echo := obj{{"x-correlation-id", headerRef("CorrelationId")}}
	tokenID := parameter{Name: "id", In: "path", Required: true,
		Description: "The id of the grant, as returned when its token was issued.",
		Schema:      obj{{"type", "string"}, {"format", "uuid"}}}
	domainParam := parameter{Name: "domain", In: "path", Required: true,
		Description: "The domain" + served, Schema: obj{{"type", "string"}, {"pattern", kebabPattern}}, Example: exampleAPI}
	environmentParam := parameter{Name: "environment", In: "path", Required: true,
		Description: "The environment the policy applies in.", Schema: obj{{"type", "string"}, {"enum", environments}}}
	ok := func(code, desc string, schema any, example any, extra ...member) obj {
		r := response{Description: desc, Headers: append(append(obj{}, echo...), extra...)}
		if schema != nil {
			r.Content = obj{{mediaJSON, mediaType{Schema: schema, Example: example}}}
		}
		return obj{{code, r}}
	}
	grantBody := func(schema string) obj {
		s := schemaRef(schema)
		return obj{{mediaMergePatch, mediaType{Schema: s}}, {mediaJSON, mediaType{Schema: s}}}
	}

	g.adminPaths.set(adminPrefix+"/tokens", obj{
		{"get", operation{
			Tags: tags, OperationID: "listTokens", Summary: "List service tokens",
			Description: "Lists the grants of the service tokens issued, in order of id, a page at a time: follow `nextCursor` until it is null. " +
				"The tokens themselves are never stored, so never listed. " + adminNote,
			Parameters: []any{correlation, paramRef("Limit"), paramRef("Cursor")},
			Responses: append(ok("200", "A page of grants.", schemaRef("TokenList"), nil),
				g.errs("400", "401", "403", "500", "503")...),
		}},
		{"post", operation{
			Tags: tags, OperationID: "issueToken", Summary: "Issue a service token",
			Description: "Issues a service token for one consumer, scoped to one API, one endpoint template (matched exactly), " +
				"the methods given and one environment, until `expiresAt`, which is required and at most the configured maximum lifetime ahead. " +
				"Returns the signed token with its grant. The token is shown only in this response and never stored; " +
				"the grant is checked on every call the token makes. " + adminNote,
			Parameters: []any{correlation},
			RequestBody: &requestBody{
				Description: "What the token may call, and who asked for and authorised it.",
				Required:    true,
				Content:     obj{{mediaJSON, mediaType{Schema: schemaRef("TokenRequest"), Example: exampleRequest}}},
			},
			Responses: append(ok("201", "The token was issued. Keep it secret: it is not shown again.", schemaRef("IssuedToken"),
				obj{{"token", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJqdGkiOiIwYjZmM2UyYSJ9.c2lnbmF0dXJl"}, {"grant", exampleGrant}},
				member{"Location", headerRef("Location")}, member{"Cache-Control", headerRef("CacheControlNoStore")}),
				g.errs("400", "401", "403", "413", "415", "422=InvalidTokenRequest", "500", "503")...),
		}},
	})
	g.adminPaths.set(adminPrefix+"/tokens/{id}", obj{
		{"get", operation{
			Tags: tags, OperationID: "getToken", Summary: "Get a service token's grant",
			Description: "Returns the grant of one service token: what it may call, until when, and whether it is enabled. " +
				"The token itself is not stored, so not returned. " + adminNote,
			Parameters: []any{tokenID, correlation},
			Responses: append(ok("200", "The grant.", schemaRef("Grant"), nil),
				g.errs("401", "403", "404=TokenNotFound", "500", "503")...),
		}},
		{"patch", operation{
			Tags: tags, OperationID: "updateToken", Summary: "Revoke or restore a service token",
			Description: "Enables or disables the grant of a service token. Disabling it revokes the token: " +
				"every server refuses the token within 5 seconds. Enabling it again restores the token, unless its grant has expired. " +
				adminNote,
			Parameters: []any{tokenID, correlation},
			RequestBody: &requestBody{
				Description: "The change, such as `{\"enabled\": false}`, as a JSON Merge Patch. `application/json` is accepted too.",
				Required:    true,
				Content:     grantBody("TokenUpdate"),
			},
			Responses: append(ok("200", "The grant after the change.", schemaRef("Grant"), nil),
				g.errs("400", "401", "403", "404=TokenNotFound", "413", "415", "422=InvalidTokenUpdate", "500", "503")...),
		}},
	})
	g.adminPaths.set(adminPrefix+"/access", obj{
		{"get", operation{
			Tags: tags, OperationID: "listAccessPolicies", Summary: "List access policies",
			Description: "Lists the access policies of one environment, in order of domain: which user groups may read, write and report on each domain. " +
				adminNote,
			Parameters: []any{correlation, parameter{Name: "environment", In: "query",
				Description: "The environment whose policies to list; the server's own environment when left out.",
				Schema:      obj{{"type", "string"}, {"enum", environments}}}},
			Responses: append(ok("200", "The access policies of the environment.", schemaRef("AccessPolicyList"), nil),
				g.errs("400", "401", "403", "500", "503")...),
		}},
	})
	g.adminPaths.set(adminPrefix+"/access/{domain}/{environment}", obj{
		{"put", operation{
			Tags: tags, OperationID: "putAccessPolicy", Summary: "Put an access policy",
			Description: "Creates or replaces the access policy of a domain in an environment: the user groups that may read, write " +
				"(which does not imply reading unless `writeImpliesRead` is true) and use the Reporting API, with optional overrides per entity. " +
				"Every server applies the change within 5 seconds. " + adminNote,
			Parameters: []any{domainParam, environmentParam, correlation},
			RequestBody: &requestBody{
				Description: "The policy, which replaces any there is.",
				Required:    true,
				Content: obj{{mediaJSON, mediaType{Schema: schemaRef("AccessPolicyInput"), Example: obj{
					{"readGroups", []string{exampleAPI + "-readers"}}, {"writeGroups", []string{exampleAPI + "-writers"}},
					{"writeImpliesRead", true}, {"reportingGroups", []string{"data-and-insight"}},
				}}}},
			},
			Responses: append(ok("200", "The policy as stored.", schemaRef("AccessPolicy"), nil),
				g.errs("400", "401", "403", "404=UnknownDomain", "413", "415", "422=InvalidAccessPolicy", "500", "503")...),
		}},
		{"delete", operation{
			Tags: tags, OperationID: "deleteAccessPolicy", Summary: "Delete an access policy",
			Description: "Removes the access policy of a domain in an environment; within 5 seconds users get 403 from its API there, until a policy is put again. " +
				"Service tokens are governed by their grants and are not affected. " + adminNote,
			Parameters: []any{domainParam, environmentParam, correlation},
			Responses: append(ok("204", "The policy was deleted.", nil, nil),
				g.errs("401", "403", "404=AccessPolicyNotFound", "500", "503")...),
		}},
	})
	g.auditSearch(exampleAPI, examplePlural, served)
	return nil
}

// auditorNote ends the description of the audit search.
const auditorNote = "Requires a user token in one of the configured admin groups or auditor groups; any other valid token gets 403."

// hexHash is the form of an audit record's hash: lowercase hex SHA-256.
const hexHash = `^[0-9a-f]{64}$`

// auditSearch adds GET /admin/v1/audit and the schemas of audit records.
func (g *openAPIGen) auditSearch(exampleAPI, examplePlural, served string) {
	str := func(desc string) obj { return obj{{"type", "string"}, {"description", desc}} }
	g.schemas.set("AuditPrincipal", obj{
		{"type", "object"},
		{"description", "Who a request acted for: an end user from the organisation's single sign-on, or a service holding a Plinth service token. " +
			"The subject is empty when the request had no valid token."},
		{"properties", obj{
			{"subject", str("The `sub` of the user token, or the service token's subject; empty when no valid token was sent.")},
			{"email", str("The user's e-mail address.")},
			{"name", str("The user's name.")},
			{"groups", obj{{"type", "array"}, {"description", "The user's groups, from the token."}, {"items", obj{{"type", "string"}}}}},
			{"tokenId", str("For a service token: the id of its grant.")},
			{"consumer", str("For a service token: the consumer that holds it.")},
		}},
		{"required", []string{"subject"}},
		{"additionalProperties", false},
	})
	g.schemas.set("AuditRecord", obj{
		{"type", "object"},
		{"description", "One entry of the audit trail: one request that touched data or access, allowed or denied. " +
			"Records form a hash chain: each carries the hash of the one before, so an edited, deleted, inserted or reordered record " +
			"is detected by `plinth audit verify`. Filter values may hold personal data."},
		{"properties", obj{
			{"sequence", obj{{"type", "integer"}, {"minimum", 1}, {"description", "Position in the chain: 1, 2, 3 … with no gaps."}}},
			{"time", obj{{"type", "string"}, {"format", "date-time"}, {"description", "When the request was served (RFC 3339, UTC)."}}},
			{"correlationId", str("The request's correlation id, which its logs and change events carry too.")},
			{"environment", obj{{"type", "string"}, {"enum", environments}, {"description", "The environment that served the request."}}},
			{"domain", str("The domain the request was for" + served)},
			{"entity", str("The entity, by plural, such as `" + examplePlural + "`.")},
			{"operation", str("What the request did: `list`, `view`, `create`, `update`, `delete`, `report`, `admin` or `support`.")},
			{"method", str("The HTTP method.")},
			{"route", str("The route template, such as `" + apiPrefix + "/" + examplePlural + "/{id}`.")},
			{"filters", obj{{"type", "object"}, {"description", "The query parameters of the request, by name. They may hold personal data."},
				{"additionalProperties", obj{{"type", "string"}}}}},
			{"principal", schemaRef("AuditPrincipal")},
			{"decision", obj{{"type", "string"}, {"enum", []string{plinth.DecisionAllow, plinth.DecisionDeny}},
				{"description", "Whether the request was allowed."}}},
			{"reason", str("Why it was denied, or what an admin action did.")},
			{"status", obj{{"type", "integer"}, {"minimum", 100}, {"maximum", 599}, {"description", "The HTTP status of the response."}}},
			{"recordIds", obj{{"type", "array"}, {"description", "The ids of the records the request returned or changed."},
				{"items", obj{{"type", "string"}}}}},
			{"count", obj{{"type", "integer"}, {"minimum", 0},
				{"description", "How many records the request returned or changed; for reports, the only measure."}}},
			{"durationMs", obj{{"type", "number"}, {"minimum", 0}, {"description", "How long the request took, in milliseconds."}}},
			{"clientAddress", str("The address of the client.")},
			{"userAgent", str("The client's User-Agent.")},
			{"prevHash", obj{{"type", "string"}, {"pattern", `^([0-9a-f]{64})?$`},
				{"description", "The hash of the previous record (hex SHA-256); empty for the first."}}},
			{"hash", obj{{"type", "string"}, {"pattern", hexHash},
				{"description", "The hash of this record (hex SHA-256 over its canonical encoding, `prevHash` included)."}}},
		}},
		{"required", []string{"sequence", "time", "correlationId", "environment", "operation", "principal", "decision",
			"status", "count", "durationMs", "prevHash", "hash"}},
		{"additionalProperties", false},
	})
	g.schemas.set("AuditRecordList", obj{
		{"type", "object"},
		{"description", "One page of audit records, oldest first."},
		{"properties", obj{
			{"auditRecords", obj{{"type", "array"}, {"items", schemaRef("AuditRecord")}}},
			{"nextCursor", obj{{"type", []string{"string", "null"}},
				{"description", "Send as `cursor`, with the same filters, for the next page; null on the last page."}}},
		}},
		{"required", []string{"auditRecords", "nextCursor"}},
	})
	g.errResponse("InvalidAuditQuery",
		"A query parameter is not valid: an unknown parameter, a time that is not RFC 3339, `until` not after `since`, "+
			"a limit out of range or a cursor this API did not return. `errors` names each parameter.",
		problemExample(400, adminPrefix+"/audit", "The query parameters are not valid; see errors.",
			plinth.FieldError{Parameter: "since", Detail: "must be a date and time in RFC 3339 format such as 2026-11-01T00:00:00Z"}))

	example := obj{
		{"sequence", 1042}, {"time", "2026-11-03T10:15:02.123456Z"}, {"correlationId", "3f2b8c1e-7d4a-4f0e-9b1a-2c6d8e0f1a2b"},
		{"environment", plinth.EnvProduction}, {"domain", exampleAPI}, {"entity", examplePlural}, {"operation", "view"},
		{"method", "GET"}, {"route", apiPrefix + "/" + examplePlural + "/{id}"},
		{"principal", obj{{"subject", "8d0c6a52-54f5-4a4e-9d0b-6c1f3e2a7b90"}, {"email", "ann.lee@example.gov.uk"},
			{"name", "Ann Lee"}, {"groups", []string{exampleAPI + "-readers"}}}},
		{"decision", plinth.DecisionAllow}, {"status", 200}, {"recordIds", []string{"12345"}}, {"count", 1},
		{"durationMs", 3.2}, {"clientAddress", "10.0.4.17"}, {"userAgent", "case-management/2.3"},
		{"prevHash", "9b1d5e0c1f3a8e4d7c2b6a5f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d"},
		{"hash", "4e07408562bedb8b60ce05c1decfe3ad16b72230967de01f640b7e4729b49fce"},
	}
	query := func(name, desc string, schema obj, ex any) parameter {
		return parameter{Name: name, In: "query", Description: desc, Schema: schema, Example: ex}
	}
	g.adminPaths.set(adminPrefix+"/audit", obj{
		{"get", operation{
			Tags: []string{adminTag}, OperationID: "searchAudit", Summary: "Search the audit trail",
			Description: "Returns the audit records that match every filter given, oldest first, a page at a time: follow `nextCursor` until it is null. " +
				"Answers questions such as who looked at one record this month: `?entity_id=12345&since=2026-11-01T00:00:00Z`. " +
				"The records hold the filter values of each request, which may be personal data. " +
				"The search is itself recorded in the audit trail. " + auditorNote,
			Parameters: []any{paramRef("CorrelationId"),
				query("user", "Only requests by this user or service: the subject or e-mail address of a user token, or the consumer of a service token.",
					obj{{"type", "string"}, {"minLength", 1}}, "ann.lee@example.gov.uk"),
				query("entity_id", "Only requests that returned or changed the record with this id.",
					obj{{"type", "string"}, {"minLength", 1}}, "12345"),
				query("domain", "Only requests for this domain"+served, obj{{"type", "string"}, {"pattern", kebabPattern}}, exampleAPI),
				query("since", "Only requests served at or after this time (RFC 3339).",
					obj{{"type", "string"}, {"format", "date-time"}}, "2026-11-01T00:00:00Z"),
				query("until", "Only requests served before this time (RFC 3339); it must be after `since`.",
					obj{{"type", "string"}, {"format", "date-time"}}, "2026-12-01T00:00:00Z"),
				paramRef("Limit"),
				query("cursor", "Where the page starts: the opaque `nextCursor` of the previous page, sent with the same filters.",
					obj{{"type", "string"}, {"minLength", 1}}, nil),
			},
			Responses: append(obj{{"200", response{
				Description: "A page of matching audit records.",
				Headers:     obj{{"x-correlation-id", headerRef("CorrelationId")}},
				Content: obj{{mediaJSON, mediaType{Schema: schemaRef("AuditRecordList"),
					Example: obj{{"auditRecords", []any{example}}, {"nextCursor", nil}}}}},
			}}}, g.errs("400=InvalidAuditQuery", "401", "403", "500", "503")...),
		}},
	})
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

	g.paths.set(apiPrefix+"/"+e.Plural, obj{
		{"get", operation{
			Tags: tags, OperationID: "list" + plural,
			Summary:     fmt.Sprintf("List %s", humanName(e.Plural)),
			Description: listDescription(e),
			Parameters:  listParams,
			Responses:   listResponses,
		}},
		{"post", operation{
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
		}},
	})

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

	g.paths.set(apiPrefix+"/"+e.Plural+"/{id}", obj{
		{"get", operation{
			Tags: tags, OperationID: "get" + name,
			Summary: fmt.Sprintf("Get a %s", noun),
			Description: fmt.Sprintf("Returns the %s with every field, null where it has no value. "+
				"The ETag header carries its version, for a later update or delete.", noun),
			Parameters: []any{idParam, correlation},
			Responses:  getResponses,
		}},
		{"patch", operation{
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
		}},
		{"delete", operation{
			Tags: tags, OperationID: "delete" + name,
			Summary: fmt.Sprintf("Delete a %s", noun),
			Description: fmt.Sprintf("Deletes a %s. Send the ETag from the last read in If-Match: "+
				"428 when it is missing, 412 when the %s has changed since.", noun, noun),
			Parameters: []any{idParam, paramRef("IfMatch"), correlation},
			Responses:  deleteResponses,
		}},
	})
	return nil
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
