package spec_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/spec"
)

var openAPITestInfo = spec.OpenAPIInfo{
	Title: "Plinth Platform APIs", Version: "1.2.3",
	ServerURL: "https://api.example.gov.uk/", Environment: "development",
}

// openAPIExtraSpec exercises what the shipped domains do not: a natural
// string key, numbers with limits, a nested object, a pattern, an integer
// UPRN and range filters on integers and date-times.
const openAPIExtraSpec = `domain: benefits
description: Benefit claims and their payments.
owner:
  serviceArea: Revenues and Benefits
  productOwner: benefits-data@example.gov.uk
sourceSystem: Academy
entities:
  - name: benefitClaim
    plural: benefit-claims
    description: One claim for a benefit
    key:
      name: reference
      type: string
      pii: none
      description: The claim reference.
    fields:
      - name: code
        type: string
        required: true
        pattern: "^[A-Z]{3}[0-9]*$"
        pii: none
      - name: amount
        type: number
        min: 0
        max: 10000.5
        pii: none
      - name: weeks
        type: integer
        min: 1
        max: 52
        pii: none
      - name: submittedAt
        type: datetime
        pii: none
      - name: propertyUprn
        type: integer
        format: uprn
        pii: personal
      - name: claimant
        type: object
        pii: personal
        fields:
          - name: fullName
            type: string
            required: true
            maxLength: 200
          - name: niNumber
            type: string
            format: niNumber
          - name: health
            type: string
            pii: special
      - name: tags
        type: array
        pii: none
        items:
          type: string
          maxLength: 20
    filters:
      - param: weeks
        field: weeks
        match: range
      - param: submitted_at
        field: submittedAt
        match: range
      - param: code
        field: code
        match: exact
  - name: payment
    plural: payments
    key:
      name: paymentId
      type: uuid
      pii: none
    fields:
      - name: paidOn
        type: date
        required: true
        pii: none
`

func openAPIShipped(t *testing.T) []*plinth.Domain {
	t.Helper()
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func openAPIAll(t *testing.T) []*plinth.Domain {
	t.Helper()
	extra, err := spec.Parse("benefits.yaml", []byte(openAPIExtraSpec))
	if err != nil {
		t.Fatal(err)
	}
	return append(openAPIShipped(t), extra)
}

// openAPIDoc generates and decodes the document of ds.
func openAPIDoc(t *testing.T, ds []*plinth.Domain) (raw []byte, doc map[string]any) {
	t.Helper()
	raw, err := spec.OpenAPI(ds, openAPITestInfo)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	return raw, doc
}

// dig follows keys through nested JSON objects; nil when one is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func digMap(v any, keys ...string) map[string]any {
	m, _ := dig(v, keys...).(map[string]any)
	return m
}

// resolve follows a local $ref.
func resolve(doc map[string]any, v any) map[string]any {
	m, _ := v.(map[string]any)
	for m != nil {
		r, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		parts := strings.Split(strings.TrimPrefix(r, "#/"), "/")
		m = digMap(doc, parts...)
	}
	return nil
}

func pascalCase(s string) string {
	var b strings.Builder
	for _, part := range strings.Split(s, "-") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// opParams returns the operation's parameters, resolved, by name.
func opParams(t *testing.T, doc, op map[string]any) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	list, _ := op["parameters"].([]any)
	for _, p := range list {
		pm := resolve(doc, p)
		name, _ := pm["name"].(string)
		if _, dup := out[name]; dup {
			t.Errorf("parameter %q is listed twice", name)
		}
		out[name] = pm
	}
	return out
}

func TestOpenAPIDeterministic(t *testing.T) {
	a, _ := openAPIDoc(t, openAPIAll(t))
	for i := 0; i < 5; i++ {
		b, _ := openAPIDoc(t, openAPIAll(t)) // freshly loaded each time
		if !bytes.Equal(a, b) {
			t.Fatalf("run %d gave a different document", i)
		}
	}
	if !json.Valid(a) || !bytes.HasPrefix(a, []byte("{\n  \"openapi\": \"3.1.0\",")) {
		t.Fatalf("not an indented OpenAPI 3.1 document: %.80s", a)
	}
}

func TestOpenAPIInfo(t *testing.T) {
	_, doc := openAPIDoc(t, openAPIShipped(t))
	if v := dig(doc, "info", "title"); v != openAPITestInfo.Title {
		t.Errorf("title %v", v)
	}
	if v := dig(doc, "info", "version"); v != openAPITestInfo.Version {
		t.Errorf("version %v", v)
	}
	if v := dig(doc, "info", "license", "name"); v != "Open Government Licence v3.0" {
		t.Errorf("license %v", v)
	}
	desc, _ := dig(doc, "info", "description").(string)
	for _, d := range openAPIShipped(t) {
		for _, want := range []string{d.Name, d.Owner.ServiceArea, d.Owner.ProductOwner} {
			if !strings.Contains(desc, want) {
				t.Errorf("info.description does not mention %q", want)
			}
		}
	}
	servers, _ := doc["servers"].([]any)
	if len(servers) != 1 || dig(servers[0], "url") != "https://api.example.gov.uk" {
		t.Errorf("servers %v", servers)
	}
	var tags []string
	for _, tg := range doc["tags"].([]any) {
		tags = append(tags, dig(tg, "name").(string))
		if s, _ := dig(tg, "description").(string); s == "" {
			t.Errorf("tag %v has no description", tg)
		}
	}
	if !slices.Equal(tags, []string{"contacts", "residents", "reports", "platform", "admin"}) {
		t.Errorf("tags %v", tags)
	}
	for _, p := range []string{"/api/v1/healthcheck/ping", "/api/v1/healthcheck/ready", "/api/v1/openapi.json"} {
		if digMap(doc, "paths", p, "get") == nil {
			t.Errorf("no GET %s", p)
		}
	}
	if digMap(doc, "paths", "/metrics") != nil {
		t.Error("/metrics is not part of the API")
	}
}

func TestOpenAPIOperations(t *testing.T) {
	ds := openAPIAll(t)
	_, doc := openAPIDoc(t, ds)
	paths := digMap(doc, "paths")

	// Every operation is documented and names its correlation id.
	ids := map[string]bool{}
	for path, item := range paths {
		for method, v := range item.(map[string]any) {
			op := v.(map[string]any)
			where := strings.ToUpper(method) + " " + path
			for _, k := range []string{"summary", "description", "operationId"} {
				if s, _ := op[k].(string); s == "" {
					t.Errorf("%s: no %s", where, k)
				}
			}
			id := op["operationId"].(string)
			if ids[id] {
				t.Errorf("%s: operationId %s is used twice", where, id)
			}
			ids[id] = true
			if tags, _ := op["tags"].([]any); len(tags) != 1 {
				t.Errorf("%s: tags %v", where, op["tags"])
			}
			if opParams(t, doc, op)["x-correlation-id"] == nil {
				t.Errorf("%s: no x-correlation-id parameter", where)
			}
			has4xx := false
			for code, r := range digMap(op, "responses") {
				has4xx = has4xx || strings.HasPrefix(code, "4")
				if dig(resolve(doc, r), "headers", "x-correlation-id") == nil {
					t.Errorf("%s: response %s does not echo x-correlation-id", where, code)
				}
			}
			if !has4xx {
				t.Errorf("%s: no 4xx response", where)
			}
		}
	}

	for _, d := range ds {
		for _, e := range d.Entities {
			t.Run(e.Name, func(t *testing.T) {
				name := strings.ToUpper(e.Name[:1]) + e.Name[1:]
				coll := "/api/v1/" + e.Plural
				one := coll + "/{id}"
				want := []struct{ path, method, id, success string }{
					{coll, "get", "list" + pascalCase(e.Plural), "200"},
					{coll, "post", "create" + name, "201"},
					{one, "get", "get" + name, "200"},
					{one, "patch", "update" + name, "200"},
					{one, "delete", "delete" + name, "204"},
				}
				for _, w := range want {
					op := digMap(paths, w.path, w.method)
					if op == nil {
						t.Errorf("no %s %s", w.method, w.path)
						continue
					}
					if op["operationId"] != w.id {
						t.Errorf("%s %s: operationId %v, want %s", w.method, w.path, op["operationId"], w.id)
					}
					if tags := op["tags"].([]any); tags[0] != d.Name {
						t.Errorf("%s %s: tag %v, want %s", w.method, w.path, tags[0], d.Name)
					}
					if digMap(op, "responses", w.success) == nil {
						t.Errorf("%s %s: no %s response", w.method, w.path, w.success)
					}
					if w.path == one {
						id := opParams(t, doc, op)["id"]
						if id == nil || id["in"] != "path" || id["required"] != true {
							t.Errorf("%s %s: id parameter %v", w.method, w.path, id)
						}
						want := map[plinth.KeyType][2]any{
							plinth.KeyInteger: {"integer", "int64"},
							plinth.KeyUUID:    {"string", "uuid"},
							plinth.KeyText:    {"string", nil},
						}[e.Key.Type]
						if dig(id, "schema", "type") != want[0] || dig(id, "schema", "format") != want[1] {
							t.Errorf("%s %s: id schema %v for a %s key", w.method, w.path, id["schema"], e.Key.Type)
						}
					}
				}

				codes := func(path, method string) []string {
					var cs []string
					for c := range digMap(paths, path, method, "responses") {
						cs = append(cs, c)
					}
					slices.Sort(cs)
					return cs
				}
				createCodes := []string{"201", "400", "401", "403", "413", "415", "422", "500", "503"}
				if !e.Key.Generated {
					createCodes = []string{"201", "400", "401", "403", "409", "413", "415", "422", "500", "503"}
				}
				for _, c := range []struct {
					method, path string
					want         []string
				}{
					{"get", coll, []string{"200", "400", "401", "403", "500", "503"}},
					{"post", coll, createCodes},
					{"get", one, []string{"200", "400", "401", "403", "404", "500", "503"}},
					{"patch", one, []string{"200", "400", "401", "403", "404", "412", "413", "415", "422", "428", "500", "503"}},
					{"delete", one, []string{"204", "400", "401", "403", "404", "412", "428", "500", "503"}},
				} {
					if got := codes(c.path, c.method); !slices.Equal(got, c.want) {
						t.Errorf("%s %s: responses %v, want %v", c.method, c.path, got, c.want)
					}
				}

				// Records carry an ETag; create also a Location.
				for _, c := range []struct{ method, path, code string }{
					{"post", coll, "201"}, {"get", one, "200"}, {"patch", one, "200"},
				} {
					r := digMap(paths, c.path, c.method, "responses", c.code)
					if dig(r, "headers", "ETag") == nil {
						t.Errorf("%s %s %s: no ETag header", c.method, c.path, c.code)
					}
					if dig(r, "content", "application/json", "schema", "$ref") != "#/components/schemas/"+name {
						t.Errorf("%s %s %s: body is not a %s", c.method, c.path, c.code, name)
					}
				}
				if dig(paths, coll, "post", "responses", "201", "headers", "Location") == nil {
					t.Error("create: no Location header")
				}
				for _, m := range []string{"patch", "delete"} {
					im := opParams(t, doc, digMap(paths, one, m))["If-Match"]
					if im == nil || im["in"] != "header" || im["required"] != true {
						t.Errorf("%s: If-Match %v", m, im)
					}
				}
				patchBody := digMap(paths, one, "patch", "requestBody", "content")
				for _, ct := range []string{"application/merge-patch+json", "application/json"} {
					if dig(patchBody, ct, "schema", "$ref") != "#/components/schemas/"+name+"Patch" {
						t.Errorf("patch: %s body %v", ct, patchBody[ct])
					}
				}
				if dig(paths, coll, "post", "requestBody", "content", "application/json", "schema", "$ref") != "#/components/schemas/"+name+"Create" {
					t.Error("create: body is not the Create schema")
				}
				problem := dig(resolve(doc, dig(paths, one, "patch", "responses", "422")), "content", "application/problem+json", "schema", "$ref")
				if problem != "#/components/schemas/Problem" {
					t.Errorf("422 is not problem+json: %v", problem)
				}
			})
		}
	}
}

func TestOpenAPIListParameters(t *testing.T) {
	ds := openAPIAll(t)
	_, doc := openAPIDoc(t, ds)
	for _, d := range ds {
		for _, e := range d.Entities {
			t.Run(e.Name, func(t *testing.T) {
				params := opParams(t, doc, digMap(doc, "paths", "/api/v1/"+e.Plural, "get"))
				want := []string{"x-correlation-id", "limit", "cursor"}
				for _, f := range e.Filters {
					want = append(want, f.Param)
					p := params[f.Param]
					if p == nil {
						t.Errorf("filter %s: no query parameter", f.Param)
						continue
					}
					if p["in"] != "query" || p["required"] == true {
						t.Errorf("filter %s: %v", f.Param, p)
					}
					typ := dig(p, "schema", "type")
					switch {
					case f.Folded():
						desc, _ := p["description"].(string)
						if typ != "string" || !strings.Contains(desc, "ignoring case and accents") {
							t.Errorf("filter %s (%s): %v", f.Param, f.Match, p)
						}
					case f.Field.Type == plinth.TypeInteger && typ != "integer",
						f.Field.Type == plinth.TypeNumber && typ != "number",
						f.Field.Type == plinth.TypeBoolean && typ != "boolean",
						f.Field.Type == plinth.TypeDate && dig(p, "schema", "format") != "date",
						f.Field.Type == plinth.TypeDateTime && dig(p, "schema", "format") != "date-time",
						f.Field.Type == plinth.TypeUUID && dig(p, "schema", "format") != "uuid":
						t.Errorf("filter %s on a %s: schema %v", f.Param, f.Field.Type, p["schema"])
					}
					for _, suffix := range []string{"_from", "_to"} {
						rp := params[f.Param+suffix]
						if f.Match != plinth.MatchRange {
							if rp != nil {
								t.Errorf("%s%s is documented for a %s filter", f.Param, suffix, f.Match)
							}
							continue
						}
						want = append(want, f.Param+suffix)
						if rp == nil {
							t.Errorf("range filter %s: no %s%s", f.Param, f.Param, suffix)
							continue
						}
						if fmt.Sprint(rp["schema"]) != fmt.Sprint(p["schema"]) || !strings.Contains(rp["description"].(string), "inclusive") {
							t.Errorf("%s%s: %v", f.Param, suffix, rp)
						}
					}
				}
				var got []string
				for name := range params {
					got = append(got, name)
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("list parameters %v, want %v", got, want)
				}
				limit := params["limit"]["schema"]
				if dig(limit, "minimum") != json.Number("1") || dig(limit, "maximum") != json.Number(strconv.Itoa(plinth.MaxLimit)) ||
					dig(limit, "default") != json.Number(strconv.Itoa(plinth.DefaultLimit)) {
					t.Errorf("limit schema %v", limit)
				}
				list := digMap(doc, "components", "schemas", strings.ToUpper(e.Name[:1])+e.Name[1:]+"List")
				if got := fmt.Sprint(list["required"]); got != fmt.Sprintf("[%s nextCursor]", e.Plural) {
					t.Errorf("list response requires %s", got)
				}
			})
		}
	}
}

// TestOpenAPIRecordsConform checks records, as the API writes them, against
// the record schema, and request bodies against the input schemas.
func TestOpenAPIRecordsConform(t *testing.T) {
	ds := openAPIAll(t)
	_, doc := openAPIDoc(t, ds)
	entities := map[string]*plinth.Entity{}
	for _, d := range ds {
		for _, e := range d.Entities {
			entities[e.Plural] = e
		}
	}
	full := map[string]string{
		"residents": `{"title":"Ms","firstName":"Zoë","lastName":"Okafor",
			"otherNames":[{"firstName":"Zoe"}],"dateOfBirth":"1990-04-23","gender":"F",
			"nhsNumber":"943 476 5919","restricted":false,"ethnicity":"Black British","emailAddress":"zoe@example.org",
			"preferredMethodOfContact":"email","uprn":"100023336956",
			"phoneNumbers":[{"number":"020 7946 0000","type":"home"}],
			"addresses":[{"addressLine1":"1 Hill Street","postCode":"e81dy","uprn":"10008","isContactAddress":true,"startDate":"2020-01-01"}]}`,
		"contacts": `{"residentId":1042,"firstName":"Ann","lastName":"Lee",
			"contactInformation":[{"type":"email","value":"ann@example.org","isDefault":true,"dateAdded":"2024-05-01T10:30:00+01:00"}]}`,
		"benefit-claims": `{"reference":"BC-1","code":"HBX12","amount":12.5,"weeks":4,"submittedAt":"2024-05-01T09:30:00Z",
			"propertyUprn":42,"claimant":{"fullName":"Ann Lee","niNumber":"ab 12 34 56 c"},"tags":["urgent"]}`,
		"payments": `{"paymentId":"3F2B8C1E-7D4A-4F0E-9B1A-2C6D8E0F1A2B","paidOn":"2024-05-01"}`,
	}
	minimal := map[string]string{
		"residents":      `{"firstName":"A","lastName":"B"}`,
		"contacts":       `{"firstName":"A","lastName":"B"}`,
		"benefit-claims": `{"reference":"BC-2","code":"ABC"}`,
		"payments":       `{"paymentId":"3f2b8c1e-7d4a-4f0e-9b1a-2c6d8e0f1a2c","paidOn":"2024-05-01"}`,
	}
	if len(full) != len(entities) {
		t.Fatalf("samples for %d entities, %d entities", len(full), len(entities))
	}
	at := time.Date(2024, 5, 1, 9, 30, 0, 123000000, time.UTC)
	for plural, e := range entities {
		name := strings.ToUpper(e.Name[:1]) + e.Name[1:]
		for kind, body := range map[string]string{"full": full[plural], "minimal": minimal[plural]} {
			t.Run(plural+"/"+kind, func(t *testing.T) {
				in := decodeNumbers(t, body)
				if errs := conform(doc, schemaRefTo(name+"Create"), in, ""); len(errs) > 0 {
					t.Errorf("create body does not match %sCreate:\n%s", name, strings.Join(errs, "\n"))
				}
				if errs := conform(doc, schemaRefTo(name+"Patch"), in, ""); len(errs) > 0 {
					t.Errorf("body does not match %sPatch:\n%s", name, strings.Join(errs, "\n"))
				}
				data, err := e.Validate(in, true)
				if err != nil {
					t.Fatal(err)
				}
				if e.Key.Generated {
					switch e.Key.Type {
					case plinth.KeyInteger:
						data[e.Key.Name] = int64(42)
					case plinth.KeyUUID:
						data[e.Key.Name] = "0b6f3e2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
					}
				}
				rec := plinth.Record{Data: data, Version: 3, CreatedAt: at, UpdatedAt: at.Add(time.Hour)}
				out := decodeNumbers(t, string(e.MarshalRecord(rec)))
				if errs := conform(doc, schemaRefTo(name), out, ""); len(errs) > 0 {
					t.Errorf("record does not match %s:\n%s", name, strings.Join(errs, "\n"))
				}
				// Every property is present and required; nothing else is.
				record := resolve(doc, schemaRefTo(name))
				var props []string
				for _, f := range e.Fields {
					props = append(props, f.Name)
				}
				props = append(props, plinth.SystemFields...)
				if got := fmt.Sprint(record["required"]); got != fmt.Sprint(props) {
					t.Errorf("%s requires %s, want %v", name, got, props)
				}
				if got := len(digMap(record, "properties")); got != len(props) {
					t.Errorf("%s has %d properties, want %d", name, got, len(props))
				}
				list := decodeNumbers(t, fmt.Sprintf(`{%q:[%s],"nextCursor":null}`, e.Plural, e.MarshalRecord(rec)))
				if errs := conform(doc, schemaRefTo(name+"List"), list, ""); len(errs) > 0 {
					t.Errorf("list does not match %sList:\n%s", name, strings.Join(errs, "\n"))
				}
			})
		}
	}

	// The input schemas refuse what Validate refuses.
	create := resolve(doc, schemaRefTo("ResidentCreate"))
	if _, ok := digMap(create, "properties")["mosaicId"]; ok {
		t.Error("ResidentCreate offers the generated key")
	}
	if got := fmt.Sprint(create["required"]); got != "[firstName lastName]" {
		t.Errorf("ResidentCreate requires %s", got)
	}
	if got := fmt.Sprint(dig(doc, "components", "schemas", "BenefitClaimCreate", "required")); got != "[reference code]" {
		t.Errorf("BenefitClaimCreate requires %s", got)
	}
	for _, c := range []struct{ schema, body string }{
		{"ResidentCreate", `{"firstName":"A"}`},
		{"ResidentCreate", `{"firstName":"A","lastName":"B","mosaicId":1}`},
		{"ResidentCreate", `{"firstName":"A","lastName":"B","version":1}`},
		{"ResidentCreate", `{"firstName":"A","lastName":"B","gender":"X"}`},
		{"ResidentCreate", `{"firstName":"A","lastName":null}`},
		{"ResidentCreate", `{"firstName":"A","lastName":"B","addresses":[{"postCode":"E8 1DY"}]}`},
		{"ResidentPatch", `{"lastName":null}`},
		{"ResidentPatch", `{"mosaicId":null}`},
		{"ResidentPatch", `{"nickname":"Zo"}`},
		{"BenefitClaimCreate", `{"reference":"R","code":"ABC","weeks":53}`},
		{"BenefitClaimCreate", `{"reference":"R","code":"abc"}`},
		{"BenefitClaimCreate", `{"code":"ABC"}`},
	} {
		if errs := conform(doc, schemaRefTo(c.schema), decodeNumbers(t, c.body), ""); len(errs) == 0 {
			t.Errorf("%s accepts %s", c.schema, c.body)
		}
	}
	for _, c := range []struct{ schema, body string }{
		{"ResidentPatch", `{"title":null,"addresses":[{"addressLine1":"1 Hill Street"}],"mosaicId":42}`},
		{"ContactPatch", `{"residentId":null,"contactInformation":null}`},
		{"BenefitClaimPatch", `{"claimant":{"niNumber":null}}`},
	} {
		if errs := conform(doc, schemaRefTo(c.schema), decodeNumbers(t, c.body), ""); len(errs) > 0 {
			t.Errorf("%s refuses %s:\n%s", c.schema, c.body, strings.Join(errs, "\n"))
		}
	}
}

func schemaRefTo(name string) map[string]any {
	return map[string]any{"$ref": "#/components/schemas/" + name}
}

func decodeNumbers(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
	return m
}

// conform checks v against the JSON Schema keywords the generator uses and
// returns every mismatch.
func conform(doc map[string]any, schema map[string]any, v any, path string) []string {
	s := resolve(doc, schema)
	if s == nil {
		return []string{path + ": unresolvable schema " + fmt.Sprint(schema)}
	}
	var errs []string
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s: %s", strings.TrimPrefix(path, "."), fmt.Sprintf(format, args...)))
	}
	if t, ok := s["type"]; ok {
		var types []string
		switch tt := t.(type) {
		case string:
			types = []string{tt}
		case []any:
			for _, x := range tt {
				types = append(types, x.(string))
			}
		}
		if !slices.ContainsFunc(types, func(typ string) bool { return jsonTypeIs(v, typ) }) {
			bad("%v is not of type %v", v, types)
			return errs
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(x any) bool { return x == v }) {
		bad("%v is not one of %v", v, enum)
	}
	if c, ok := s["const"]; ok && c != v {
		bad("%v is not %v", v, c)
	}
	switch x := v.(type) {
	case string:
		if n, ok := s["maxLength"].(json.Number); ok {
			if max, _ := n.Int64(); int64(len([]rune(x))) > max {
				bad("longer than %d", max)
			}
		}
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(x) {
			bad("%q does not match %s", x, p)
		}
		formats := map[string]string{
			"date":      `^\d{4}-\d{2}-\d{2}$`,
			"date-time": `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$`,
			"uuid":      `^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`,
			"email":     `^[^@\s]+@[^@\s]+$`,
		}
		if f, ok := s["format"].(string); ok && formats[f] != "" && !regexp.MustCompile(formats[f]).MatchString(x) {
			bad("%q is not a %s", x, f)
		}
	case json.Number:
		n, _ := x.Float64()
		if m, ok := s["minimum"].(json.Number); ok {
			if lo, _ := m.Float64(); n < lo {
				bad("%v is below %v", x, m)
			}
		}
		if m, ok := s["maximum"].(json.Number); ok {
			if hi, _ := m.Float64(); n > hi {
				bad("%v is above %v", x, m)
			}
		}
	case map[string]any:
		props := digMap(s, "properties")
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if _, ok := x[r.(string)]; !ok {
					bad("%s is required", r)
				}
			}
		}
		for k, pv := range x {
			ps, ok := props[k].(map[string]any)
			switch {
			case ok:
				errs = append(errs, conform(doc, ps, pv, path+"."+k)...)
			case s["additionalProperties"] == false:
				bad("%s is not allowed", k)
			default:
				if ap, ok := s["additionalProperties"].(map[string]any); ok {
					errs = append(errs, conform(doc, ap, pv, path+"."+k)...)
				}
			}
		}
	case []any:
		if n, ok := s["minItems"].(json.Number); ok {
			if min, _ := n.Int64(); int64(len(x)) < min {
				bad("fewer than %d items", min)
			}
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, item := range x {
				errs = append(errs, conform(doc, items, item, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	}
	return errs
}

func jsonTypeIs(v any, typ string) bool {
	switch x := v.(type) {
	case nil:
		return typ == "null"
	case bool:
		return typ == "boolean"
	case string:
		return typ == "string"
	case json.Number:
		if typ == "number" {
			return true
		}
		f, err := x.Float64()
		return typ == "integer" && err == nil && f == math.Trunc(f)
	case map[string]any:
		return typ == "object"
	case []any:
		return typ == "array"
	}
	return false
}

func TestOpenAPINameClash(t *testing.T) {
	twin, err := spec.Parse("twin.yaml", []byte(strings.NewReplacer(
		"domain: benefits", "domain: benefits-copy",
		"plural: benefit-claims", "plural: claims-of-benefit",
		"plural: payments", "plural: payments-made",
	).Replace(openAPIExtraSpec)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = spec.OpenAPI(append(openAPIAll(t), twin), openAPITestInfo)
	if err == nil || !strings.Contains(err.Error(), `"BenefitClaim"`) {
		t.Fatalf("two entities named benefitClaim: %v", err)
	}
}

// publicOperations may be called without a token.
var publicOperations = map[string]bool{
	"get /api/v1/healthcheck/ping":  true,
	"get /api/v1/healthcheck/ready": true,
	"get /api/v1/openapi.json":      true,
}

func TestOpenAPISecurity(t *testing.T) {
	_, doc := openAPIDoc(t, openAPIAll(t))

	scheme := digMap(doc, "components", "securitySchemes", "bearerAuth")
	if scheme["type"] != "http" || scheme["scheme"] != "bearer" || scheme["bearerFormat"] != "JWT" {
		t.Errorf("bearerAuth %v", scheme)
	}
	desc, _ := scheme["description"].(string)
	for _, want := range []string{"`sub`", "`email`", "`name`", "`groups`", "HS256", "RS256", "ES256", "JWKS",
		"POST /admin/v1/tokens", "endpoint template", "methods", "environment"} {
		if !strings.Contains(desc, want) {
			t.Errorf("bearerAuth description does not mention %s", want)
		}
	}
	if got := fmt.Sprint(doc["security"]); got != "[map[bearerAuth:[]]]" {
		t.Errorf("document security %s, want [{bearerAuth: []}]", got)
	}
	if got := len(digMap(doc, "components", "securitySchemes")); got != 1 {
		t.Errorf("%d security schemes, want 1", got)
	}

	wwwAuth := resolve(doc, dig(doc, "components", "responses", "Unauthorized", "headers", "WWW-Authenticate"))
	if ex, _ := wwwAuth["example"].(string); !strings.HasPrefix(ex, `Bearer realm="plinth"`) || !strings.Contains(ex, `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate example %q", ex)
	}
	if d, _ := wwwAuth["description"].(string); !strings.Contains(d, `Bearer realm=\"plinth\"`) && !strings.Contains(d, `Bearer realm="plinth"`) {
		t.Errorf("WWW-Authenticate description %q", d)
	}
	if wwwAuth["required"] != true {
		t.Error("WWW-Authenticate is not required on 401")
	}

	public, protected := 0, 0
	for path, item := range digMap(doc, "paths") {
		for method, v := range item.(map[string]any) {
			op := v.(map[string]any)
			where := method + " " + path
			responses := digMap(op, "responses")
			if publicOperations[where] {
				public++
				sec, ok := op["security"].([]any)
				if !ok || len(sec) != 0 {
					t.Errorf("%s: security %v, want []", where, op["security"])
				}
				for _, c := range []string{"401", "403"} {
					if responses[c] != nil {
						t.Errorf("%s: public, yet documents %s", where, c)
					}
				}
				continue
			}
			protected++
			if _, ok := op["security"]; ok {
				t.Errorf("%s: overrides security with %v; it should inherit bearerAuth", where, op["security"])
			}
			for code, name := range map[string]string{"401": "Unauthorized", "403": "Forbidden", "503": "ServiceUnavailable"} {
				if code == "403" && path == "/api/v1/reports" {
					continue // any valid token may list the reports it may use
				}
				if dig(responses, code, "$ref") != "#/components/responses/"+name {
					t.Errorf("%s: %s is %v, want the %s response", where, code, responses[code], name)
				}
			}
		}
	}
	// Four entities with five routes and three reports each, the report
	// index, and the admin API.
	if public != len(publicOperations) || protected != 4*5+4*3+1+8 {
		t.Errorf("%d public and %d protected operations", public, protected)
	}

	for code, name := range map[string]string{"401": "Unauthorized", "403": "Forbidden", "503": "ServiceUnavailable"} {
		r := digMap(doc, "components", "responses", name)
		if dig(r, "content", "application/problem+json", "schema", "$ref") != "#/components/schemas/Problem" {
			t.Errorf("%s is not problem+json: %v", name, r["content"])
		}
		if got := fmt.Sprint(dig(r, "content", "application/problem+json", "example", "status")); got != code {
			t.Errorf("%s example has status %s", name, got)
		}
		if dig(r, "headers", "x-correlation-id") == nil {
			t.Errorf("%s does not echo x-correlation-id", name)
		}
	}
	if d, _ := dig(doc, "components", "responses", "ServiceUnavailable", "description").(string); !strings.Contains(d, "fails closed") {
		t.Errorf("503 does not say the authorizer fails closed: %q", d)
	}
	if d, _ := dig(doc, "info", "description").(string); !strings.Contains(d, "**Authentication**") {
		t.Error("info.description does not explain authentication")
	}
}

// jsonProperties returns the JSON property names of a struct type and
// those that are always present (no omitempty).
func jsonProperties(v any) (all, always []string) {
	typ := reflect.TypeOf(v)
	for i := 0; i < typ.NumField(); i++ {
		name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		all = append(all, name)
		if !strings.Contains(opts, "omitempty") {
			always = append(always, name)
		}
	}
	return all, always
}

func keysOf(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func stringsOf(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func TestOpenAPIAdmin(t *testing.T) {
	_, doc := openAPIDoc(t, openAPIAll(t))
	paths := digMap(doc, "paths")

	for _, w := range []struct {
		path, method, id, success, schema, body string
		codes                                   []string
		params                                  []string
	}{
		{"/admin/v1/tokens", "post", "issueToken", "201", "IssuedToken", "TokenRequest",
			[]string{"201", "400", "401", "403", "413", "415", "422", "500", "503"}, []string{"x-correlation-id"}},
		{"/admin/v1/tokens", "get", "listTokens", "200", "TokenList", "",
			[]string{"200", "400", "401", "403", "500", "503"}, []string{"x-correlation-id", "limit", "cursor"}},
		{"/admin/v1/tokens/{id}", "get", "getToken", "200", "Grant", "",
			[]string{"200", "401", "403", "404", "500", "503"}, []string{"id", "x-correlation-id"}},
		{"/admin/v1/tokens/{id}", "patch", "updateToken", "200", "Grant", "TokenUpdate",
			[]string{"200", "400", "401", "403", "404", "413", "415", "422", "500", "503"}, []string{"id", "x-correlation-id"}},
		{"/admin/v1/access", "get", "listAccessPolicies", "200", "AccessPolicyList", "",
			[]string{"200", "400", "401", "403", "500", "503"}, []string{"x-correlation-id", "environment"}},
		{"/admin/v1/access/{domain}/{environment}", "put", "putAccessPolicy", "200", "AccessPolicy", "AccessPolicyInput",
			[]string{"200", "400", "401", "403", "404", "413", "415", "422", "500", "503"}, []string{"domain", "environment", "x-correlation-id"}},
		{"/admin/v1/access/{domain}/{environment}", "delete", "deleteAccessPolicy", "204", "", "",
			[]string{"204", "401", "403", "404", "500", "503"}, []string{"domain", "environment", "x-correlation-id"}},
		{"/admin/v1/audit", "get", "searchAudit", "200", "AuditRecordList", "",
			[]string{"200", "400", "401", "403", "500", "503"},
			[]string{"x-correlation-id", "user", "entity_id", "domain", "since", "until", "limit", "cursor"}},
	} {
		where := w.method + " " + w.path
		op := digMap(paths, w.path, w.method)
		if op == nil {
			t.Errorf("no %s", where)
			continue
		}
		if op["operationId"] != w.id {
			t.Errorf("%s: operationId %v, want %s", where, op["operationId"], w.id)
		}
		if got := fmt.Sprint(op["tags"]); got != "[admin]" {
			t.Errorf("%s: tags %s", where, got)
		}
		if d, _ := op["description"].(string); !strings.Contains(d, "admin group") {
			t.Errorf("%s: the description does not say an admin group is required", where)
		}
		codes := keysOf(digMap(op, "responses"))
		if !slices.Equal(codes, w.codes) {
			t.Errorf("%s: responses %v, want %v", where, codes, w.codes)
		}
		for _, c := range codes {
			r := resolve(doc, dig(op, "responses", c))
			if c[0] == '4' || c[0] == '5' {
				if dig(r, "content", "application/problem+json", "schema", "$ref") != "#/components/schemas/Problem" {
					t.Errorf("%s %s: not problem+json", where, c)
				}
			}
		}
		success := digMap(op, "responses", w.success)
		if w.schema == "" {
			if success["content"] != nil {
				t.Errorf("%s %s: has a body", where, w.success)
			}
		} else if got := dig(success, "content", "application/json", "schema", "$ref"); got != "#/components/schemas/"+w.schema {
			t.Errorf("%s %s: body %v, want %s", where, w.success, got, w.schema)
		}
		if w.body != "" {
			if op["requestBody"] == nil || dig(op, "requestBody", "required") != true {
				t.Errorf("%s: request body %v", where, op["requestBody"])
			}
			types := []string{"application/json"}
			if w.method == "patch" {
				types = []string{"application/json", "application/merge-patch+json"}
			}
			content := digMap(op, "requestBody", "content")
			if got := keysOf(content); !slices.Equal(got, types) {
				t.Errorf("%s: request content types %v, want %v", where, got, types)
			}
			for _, ct := range types {
				if dig(content, ct, "schema", "$ref") != "#/components/schemas/"+w.body {
					t.Errorf("%s: %s body %v, want %s", where, ct, content[ct], w.body)
				}
				if ex := dig(content, ct, "example"); ex != nil {
					if errs := conform(doc, schemaRefTo(w.body), ex, ""); len(errs) > 0 {
						t.Errorf("%s: the example does not match %s:\n%s", where, w.body, strings.Join(errs, "\n"))
					}
				}
			}
		} else if op["requestBody"] != nil {
			t.Errorf("%s: has a request body", where)
		}
		params := opParams(t, doc, op)
		if got := slices.Sorted(maps.Keys(params)); !slices.Equal(got, slices.Sorted(slices.Values(w.params))) {
			t.Errorf("%s: parameters %v, want %v", where, got, w.params)
		}
		for name, p := range params {
			if strings.Contains(w.path, "{"+name+"}") && (p["in"] != "path" || p["required"] != true) {
				t.Errorf("%s: path parameter %s: %v", where, name, p)
			}
		}
	}

	// The 201 of issueToken says where the grant is; its example conforms.
	issued := digMap(paths, "/admin/v1/tokens", "post", "responses", "201")
	if dig(issued, "headers", "Location") == nil {
		t.Error("issueToken: no Location header")
	}
	if dig(resolve(doc, dig(issued, "headers", "Cache-Control")), "schema", "const") != "no-store" {
		t.Errorf("issueToken: Cache-Control %v", dig(issued, "headers", "Cache-Control"))
	}
	if errs := conform(doc, schemaRefTo("IssuedToken"), dig(issued, "content", "application/json", "example"), ""); len(errs) > 0 {
		t.Errorf("the issued token example does not match IssuedToken:\n%s", strings.Join(errs, "\n"))
	}
	if d, _ := dig(paths, "/admin/v1/tokens/{id}", "patch", "description").(string); !strings.Contains(d, "within 5 seconds") {
		t.Errorf("updateToken does not state the revocation bound: %q", d)
	}
	if got := dig(paths, "/admin/v1/tokens/{id}", "get", "parameters"); !strings.Contains(fmt.Sprint(got), "format:uuid") {
		t.Errorf("getToken id parameter %v", got)
	}
	env := opParams(t, doc, digMap(paths, "/admin/v1/access", "get"))["environment"]
	if env["in"] != "query" || env["required"] == true || fmt.Sprint(dig(env, "schema", "enum")) != "[development staging production]" {
		t.Errorf("listAccessPolicies environment %v", env)
	}
	limit := opParams(t, doc, digMap(paths, "/admin/v1/tokens", "get"))["limit"]
	if dig(limit, "schema", "minimum") != json.Number("1") || dig(limit, "schema", "maximum") != json.Number("100") ||
		dig(limit, "schema", "default") != json.Number("20") {
		t.Errorf("listTokens limit %v", limit)
	}

	// The schemas carry exactly the JSON properties of the Go types.
	for _, c := range []struct {
		schema   string
		v        any
		required []string // nil: those without omitempty
	}{
		{"Grant", plinth.Grant{}, nil},
		{"AccessPolicy", plinth.AccessPolicy{}, nil},
		{"EntityPolicy", plinth.EntityPolicy{}, nil},
		{"AuditRecord", plinth.AuditRecord{}, nil},
		{"AuditPrincipal", plinth.Principal{}, nil},
	} {
		s := digMap(doc, "components", "schemas", c.schema)
		all, always := jsonProperties(c.v)
		if got := keysOf(digMap(s, "properties")); !slices.Equal(got, slices.Sorted(slices.Values(all))) {
			t.Errorf("%s properties %v, want %v", c.schema, got, all)
		}
		if got := stringsOf(s["required"]); !slices.Equal(got, always) {
			t.Errorf("%s requires %v, want %v", c.schema, got, always)
		}
		if s["additionalProperties"] != false {
			t.Errorf("%s allows additional properties", c.schema)
		}
	}
	request := digMap(doc, "components", "schemas", "TokenRequest")
	wantRequest := []string{"consumer", "consumerType", "api", "endpoint", "methods", "environment",
		"expiresAt", "requestedBy", "authorisedBy"}
	if got := stringsOf(request["required"]); !slices.Equal(got, wantRequest) {
		t.Errorf("TokenRequest requires %v", got)
	}
	if got := keysOf(digMap(request, "properties")); !slices.Equal(got, slices.Sorted(slices.Values(wantRequest))) {
		t.Errorf("TokenRequest properties %v", got)
	}
	methods := digMap(request, "properties", "methods")
	if methods["minItems"] != json.Number("1") || fmt.Sprint(dig(methods, "items", "enum")) != "[GET POST PATCH DELETE]" {
		t.Errorf("TokenRequest methods %v", methods)
	}
	if dig(request, "properties", "expiresAt", "format") != "date-time" {
		t.Error("TokenRequest expiresAt is not a date-time")
	}
	input := digMap(doc, "components", "schemas", "AccessPolicyInput")
	if got := keysOf(digMap(input, "properties")); !slices.Equal(got,
		[]string{"domain", "entities", "environment", "readGroups", "reportingGroups", "writeGroups", "writeImpliesRead"}) {
		t.Errorf("AccessPolicyInput properties %v", got)
	}
	if got := stringsOf(input["required"]); !slices.Equal(got, []string{"readGroups", "writeGroups", "writeImpliesRead", "reportingGroups"}) {
		t.Errorf("AccessPolicyInput requires %v", got)
	}
	if dig(input, "properties", "entities", "additionalProperties", "$ref") != "#/components/schemas/EntityPolicyInput" {
		t.Errorf("AccessPolicyInput entities %v", dig(input, "properties", "entities"))
	}

	// What the Go types encode conforms.
	at := time.Date(2025, 6, 2, 9, 30, 0, 123000000, time.UTC)
	grant := plinth.Grant{ID: "0b6f3e2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b", Consumer: "housing-benefits-listener",
		ConsumerType: "listener", API: "residents", Endpoint: "/api/v1/residents/{id}", Methods: []string{"GET", "PATCH"},
		Environment: plinth.EnvStaging, ExpiresAt: at.Add(90 * 24 * time.Hour), RequestedBy: "ann@example.gov.uk",
		AuthorisedBy: "owner@example.gov.uk", Enabled: true, CreatedAt: at, UpdatedAt: at}
	policy := plinth.AccessPolicy{Domain: "residents", Environment: plinth.EnvProduction,
		ReadGroups: []string{"residents-readers"}, WriteGroups: []string{"residents-writers"}, ReportingGroups: []string{},
		Entities: map[string]plinth.EntityPolicy{"residents": {ReadGroups: []string{"safeguarding"}}}, UpdatedAt: at}
	auditRec := plinth.AuditRecord{Sequence: 1, Time: at, CorrelationID: "c-1", Environment: plinth.EnvProduction,
		Domain: "residents", Entity: "residents", Operation: "list", Method: "GET", Route: "/api/v1/residents",
		Filters:   map[string]string{"last_name": "Smith", "postcode": "E8 1DY"},
		Principal: plinth.Principal{Subject: "u-1", Email: "ann@example.gov.uk", Name: "Ann", Groups: []string{"readers"}},
		Decision:  plinth.DecisionAllow, Status: 200, RecordIDs: []string{"1", "2"}, Count: 2, DurationMs: 1.5,
		ClientAddress: "10.0.0.1", UserAgent: "curl/8"}
	auditRec.Hash = auditRec.ComputeHash()
	deniedRec := plinth.AuditRecord{Sequence: 2, Time: at, CorrelationID: "c-2", Environment: plinth.EnvProduction,
		Operation: "view", Principal: plinth.Principal{Subject: "svc", TokenID: "t-1", Consumer: "listener"},
		Decision: plinth.DecisionDeny, Reason: "revoked", Status: 403, PrevHash: auditRec.Hash}
	deniedRec.Hash = deniedRec.ComputeHash()
	encode := func(v any) any {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return decodeNumbers(t, string(b))
	}
	for _, c := range []struct {
		schema string
		v      any
	}{
		{"Grant", grant},
		{"AccessPolicy", policy},
		{"IssuedToken", map[string]any{"token": "aaa.bbb.ccc", "grant": grant}},
		{"TokenList", map[string]any{"tokens": []plinth.Grant{grant}, "nextCursor": nil}},
		{"TokenList", map[string]any{"tokens": []plinth.Grant{grant}, "nextCursor": "abc"}},
		{"AccessPolicyList", map[string]any{"policies": []plinth.AccessPolicy{policy}}},
		{"AuditRecord", auditRec},
		{"AuditRecord", deniedRec},
		{"AuditRecordList", map[string]any{"auditRecords": []plinth.AuditRecord{auditRec, deniedRec}, "nextCursor": "MTA0Mg"}},
		{"AuditRecordList", map[string]any{"auditRecords": []plinth.AuditRecord{}, "nextCursor": nil}},
		{"TokenUpdate", map[string]any{"enabled": false}},
	} {
		if errs := conform(doc, schemaRefTo(c.schema), encode(c.v), ""); len(errs) > 0 {
			t.Errorf("%s does not match:\n%s", c.schema, strings.Join(errs, "\n"))
		}
	}

	// The input schemas refuse what is not valid.
	validRequest := `"consumer":"c","consumerType":"service","api":"residents","endpoint":"/api/v1/residents",` +
		`"methods":["GET"],"environment":"staging","expiresAt":"2026-01-01T00:00:00Z","requestedBy":"a","authorisedBy":"b"`
	if errs := conform(doc, schemaRefTo("TokenRequest"), decodeNumbers(t, "{"+validRequest+"}"), ""); len(errs) > 0 {
		t.Errorf("TokenRequest refuses a valid request:\n%s", strings.Join(errs, "\n"))
	}
	for _, c := range []struct{ schema, body string }{
		{"TokenRequest", `{"consumer":"c"}`},
		{"TokenRequest", "{" + validRequest + `,"id":"x"}`},
		{"TokenRequest", "{" + strings.Replace(validRequest, `"GET"`, `"PUT"`, 1) + "}"},
		{"TokenRequest", "{" + strings.Replace(validRequest, `["GET"]`, `[]`, 1) + "}"},
		{"TokenRequest", "{" + strings.Replace(validRequest, `"staging"`, `"test"`, 1) + "}"},
		{"TokenRequest", "{" + strings.Replace(validRequest, `"2026-01-01T00:00:00Z"`, `"next year"`, 1) + "}"},
		{"TokenUpdate", `{}`},
		{"TokenUpdate", `{"enabled":"no"}`},
		{"TokenUpdate", `{"enabled":false,"consumer":"c"}`},
		{"AccessPolicyInput", `{"readGroups":["a"]}`},
		{"AccessPolicyInput", `{"readGroups":[],"writeGroups":[],"writeImpliesRead":false,"reportingGroups":[],"updatedAt":"2025-01-01T00:00:00Z"}`},
		{"AccessPolicyInput", `{"readGroups":[],"writeGroups":[],"writeImpliesRead":false,"reportingGroups":[],"environment":"test"}`},
		{"EntityPolicy", `{"readGroups":["a"]}`},
		{"AuditRecord", `{"sequence":1}`},
		{"AuditRecord", strings.Replace(string(mustJSON(t, auditRec)), `"allow"`, `"maybe"`, 1)},
		{"AuditRecord", strings.Replace(string(mustJSON(t, auditRec)), auditRec.Hash, "not-a-hash", 1)},
		{"AuditRecord", strings.Replace(string(mustJSON(t, auditRec)), `"sequence":1`, `"sequence":0`, 1)},
		{"AuditRecord", strings.Replace(string(mustJSON(t, auditRec)), `"hash"`, `"secret":"x","hash"`, 1)},
		{"AuditPrincipal", `{"email":"ann@example.gov.uk"}`},
		{"AccessPolicyInput", `{"readGroups":[],"writeGroups":[],"writeImpliesRead":false,"reportingGroups":[],"entities":{"residents":{"groups":["a"]}}}`},
	} {
		if errs := conform(doc, schemaRefTo(c.schema), decodeNumbers(t, c.body), ""); len(errs) == 0 {
			t.Errorf("%s accepts %s", c.schema, c.body)
		}
	}

	for _, c := range []struct{ schema, body string }{
		{"AccessPolicyInput", `{"readGroups":["a"],"writeGroups":[],"writeImpliesRead":true,"reportingGroups":["r"],` +
			`"domain":"residents","environment":"staging","entities":{"residents":{"readGroups":null},"contacts":{"writeGroups":[]},"other":{}}}`},
		{"EntityPolicy", `{"readGroups":null,"writeGroups":[]}`},
	} {
		if errs := conform(doc, schemaRefTo(c.schema), decodeNumbers(t, c.body), ""); len(errs) > 0 {
			t.Errorf("%s refuses %s:\n%s", c.schema, c.body, strings.Join(errs, "\n"))
		}
	}

	// Admin errors are specific; 401 carries WWW-Authenticate.
	for _, c := range []struct{ path, method, code, name string }{
		{"/admin/v1/tokens", "post", "422", "InvalidTokenRequest"},
		{"/admin/v1/tokens/{id}", "get", "404", "TokenNotFound"},
		{"/admin/v1/tokens/{id}", "patch", "404", "TokenNotFound"},
		{"/admin/v1/tokens/{id}", "patch", "422", "InvalidTokenUpdate"},
		{"/admin/v1/access/{domain}/{environment}", "put", "404", "UnknownDomain"},
		{"/admin/v1/access/{domain}/{environment}", "put", "422", "InvalidAccessPolicy"},
		{"/admin/v1/access/{domain}/{environment}", "delete", "404", "AccessPolicyNotFound"},
		{"/admin/v1/tokens", "get", "401", "Unauthorized"},
		{"/admin/v1/audit", "get", "400", "InvalidAuditQuery"},
		{"/admin/v1/audit", "get", "401", "Unauthorized"},
		{"/admin/v1/audit", "get", "403", "Forbidden"},
	} {
		if got := dig(paths, c.path, c.method, "responses", c.code, "$ref"); got != "#/components/responses/"+c.name {
			t.Errorf("%s %s %s: %v, want %s", c.method, c.path, c.code, got, c.name)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenAPIAuditSearch(t *testing.T) {
	_, doc := openAPIDoc(t, openAPIAll(t))
	op := digMap(doc, "paths", "/admin/v1/audit", "get")
	if op == nil {
		t.Fatal("no GET /admin/v1/audit")
	}
	d, _ := op["description"].(string)
	for _, want := range []string{"auditor group", "admin group", "nextCursor", "entity_id=12345", "personal data"} {
		if !strings.Contains(d, want) {
			t.Errorf("searchAudit description does not mention %q: %s", want, d)
		}
	}
	params := opParams(t, doc, op)
	for _, name := range []string{"since", "until"} {
		if p := params[name]; p["in"] != "query" || p["required"] == true || dig(p, "schema", "format") != "date-time" {
			t.Errorf("%s: %v", name, p)
		}
	}
	for _, name := range []string{"user", "entity_id", "domain", "cursor"} {
		if p := params[name]; p["in"] != "query" || p["required"] == true || dig(p, "schema", "type") != "string" {
			t.Errorf("%s: %v", name, p)
		}
	}
	if dig(params["domain"], "schema", "pattern") == nil {
		t.Error("domain has no pattern")
	}
	limit := params["limit"]
	if dig(limit, "schema", "minimum") != json.Number("1") || dig(limit, "schema", "maximum") != json.Number("100") ||
		dig(limit, "schema", "default") != json.Number("20") {
		t.Errorf("limit %v", limit)
	}
	example := dig(op, "responses", "200", "content", "application/json", "example")
	if example == nil {
		t.Fatal("the 200 response has no example")
	}
	if errs := conform(doc, schemaRefTo("AuditRecordList"), example, ""); len(errs) > 0 {
		t.Errorf("the example does not match AuditRecordList:\n%s", strings.Join(errs, "\n"))
	}
	rec := digMap(doc, "components", "schemas", "AuditRecord")
	if dig(rec, "properties", "principal", "$ref") != "#/components/schemas/AuditPrincipal" {
		t.Errorf("principal %v", dig(rec, "properties", "principal"))
	}
	if fmt.Sprint(dig(rec, "properties", "decision", "enum")) != "[allow deny]" {
		t.Errorf("decision %v", dig(rec, "properties", "decision"))
	}
	if dig(rec, "properties", "filters", "additionalProperties", "type") != "string" {
		t.Errorf("filters %v", dig(rec, "properties", "filters"))
	}
	list := digMap(doc, "components", "schemas", "AuditRecordList")
	if got := stringsOf(list["required"]); !slices.Equal(got, []string{"auditRecords", "nextCursor"}) {
		t.Errorf("AuditRecordList requires %v", got)
	}
	if tagDesc := fmt.Sprint(doc["tags"]); !strings.Contains(tagDesc, "audit trail") {
		t.Errorf("the admin tag does not mention the audit trail: %s", tagDesc)
	}
	if info, _ := dig(doc, "info", "description").(string); !strings.Contains(info, "**Audit**") {
		t.Error("info.description does not describe auditing")
	}
}

func TestOpenAPIAdminNames(t *testing.T) {
	for _, c := range []struct{ name, from, to, want string }{
		{"domain named admin", "domain: benefits", "domain: admin", `"admin" is reserved for the admin API`},
		{"entity named grant", "name: payment\n    plural: payments", "name: grant\n    plural: grants", `"Grant"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := spec.Parse("clash.yaml", []byte(strings.Replace(openAPIExtraSpec, c.from, c.to, 1)))
			if err != nil {
				t.Fatal(err)
			}
			_, err = spec.OpenAPI(append(openAPIShipped(t), d), openAPITestInfo)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %s", err, c.want)
			}
		})
	}
}

// redoclyReport is the part of `redocly lint --format=json` the test reads.
type redoclyReport struct {
	Totals struct {
		Errors, Warnings, Ignored int
	}
	Version  string
	Problems []struct {
		RuleID   string `json:"ruleId"`
		Severity string
		Message  string
		Location []struct {
			Pointer string
		}
	}
}

// TestOpenAPILint lints the document with Redocly CLI (tools/package.json),
// which must find no error and no warning.
func TestOpenAPILint(t *testing.T) {
	root := repoRoot(t)
	config, err := os.ReadFile(filepath.Join(root, "tools", "redocly.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(`(?m)^\s*[a-z0-9/-]+:\s*off\b`).Match(config) {
		t.Errorf("tools/redocly.yaml turns a rule off:\n%s", config)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH; the OpenAPI lint needs Node.js and `npm ci --prefix tools`")
	}
	redocly := filepath.Join(root, "tools", "node_modules", ".bin", "redocly")
	if _, err := os.Stat(redocly); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing; run: npm ci --prefix tools", redocly)
		}
		t.Skip("the OpenAPI linter is not installed; run: npm ci --prefix tools")
	}
	for _, c := range []struct {
		name string
		ds   []*plinth.Domain
	}{
		{"shipped", openAPIShipped(t)},
		{"extra", openAPIAll(t)},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw, _ := openAPIDoc(t, c.ds)
			file := filepath.Join(t.TempDir(), "openapi.json")
			if err := os.WriteFile(file, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, redocly, "lint", "--format=json",
				"--config", filepath.Join(root, "tools", "redocly.yaml"), file)
			cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true", "NO_COLOR=1")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatalf("running redocly: %v\n%s", err, stderr.String())
			}
			var rep redoclyReport
			if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr != nil {
				t.Fatalf("redocly lint (%v) printed no report: %v\nstdout:\n%s\nstderr:\n%s", err, jerr, stdout.String(), stderr.String())
			}
			for _, p := range rep.Problems {
				where := ""
				if len(p.Location) > 0 {
					where = p.Location[0].Pointer
				}
				t.Errorf("%s %s: %s (at %s)", p.Severity, p.RuleID, p.Message, where)
			}
			if err != nil || rep.Totals.Errors != 0 || rep.Totals.Warnings != 0 || rep.Totals.Ignored != 0 {
				t.Fatalf("redocly %s lint: %d errors, %d warnings, %d ignored (%v)",
					rep.Version, rep.Totals.Errors, rep.Totals.Warnings, rep.Totals.Ignored, err)
			}
			t.Logf("redocly %s lint: 0 errors, 0 warnings", rep.Version)
		})
	}
}

// repoRoot finds the module root above the test's working directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}
