package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/domains"
	plinthhttp "github.com/plinth-data/plinth/http"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/spec"
)

// api is a running Platform API on a fresh SQLite store.
type api struct {
	t       testing.TB
	url     string
	store   plinth.Store
	domains []*plinth.Domain
}

func newAPI(t testing.TB, checks map[string]func(context.Context) error) *api {
	t.Helper()
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	return newAPIOf(t, ds, checks)
}

// mustServer builds a server or fails the test.
func mustServer(t testing.TB, cfg plinthhttp.Config) *plinthhttp.Server {
	t.Helper()
	s, err := plinthhttp.NewServer(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newAPIWith serves the given domains.
func newAPIWith(t testing.TB, ds []*plinth.Domain) *api { return newAPIOf(t, ds, nil) }

// loadSpec parses one domain spec.
func loadSpec(t testing.TB, yaml string) []*plinth.Domain {
	t.Helper()
	d, err := spec.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return []*plinth.Domain{d}
}

// jsonString formats a decoded JSON value as it appears in a path.
func jsonString(v any) string { return fmt.Sprint(v) }

func newAPIOf(t testing.TB, ds []*plinth.Domain, checks map[string]func(context.Context) error) *api {
	t.Helper()
	st, _ := storeFor(t, ds)
	doc, err := spec.OpenAPI(ds, spec.OpenAPIInfo{Title: "test", Version: "test", ServerURL: "http://localhost"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mustServer(t, plinthhttp.Config{
		Store: st, Domains: ds, OpenAPI: doc, Checks: checks, MaxBodyBytes: 64 << 10,
		Logger: discardLogger(), Unprotected: true,
	}))
	t.Cleanup(func() {
		srv.Close()
		st.Close()
	})
	return &api{t: t, url: srv.URL, store: st, domains: ds}
}

func (a *api) entity(plural string) *plinth.Entity {
	for _, d := range a.domains {
		for _, e := range d.Entities {
			if e.Plural == plural {
				return e
			}
		}
	}
	a.t.Fatalf("no entity %s", plural)
	return nil
}

func (a *api) count(plural string) int64 {
	n, err := a.store.Count(context.Background(), a.entity(plural))
	if err != nil {
		a.t.Fatal(err)
	}
	return n
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends a request; headers are name, value pairs.
func (a *api) do(method, path, body string, headers ...string) response {
	a.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func (a *api) createResident(doc string) map[string]any {
	a.t.Helper()
	res := a.do("POST", "/api/v1/residents", doc)
	if res.status != 201 {
		a.t.Fatalf("create: %d %s", res.status, res.body)
	}
	return res.json(a.t)
}

const alice = `{"firstName":"Alice","lastName":"Smith","dateOfBirth":"1980-02-29","gender":"F",
	"nhsNumber":"943 476 5919","restricted":false,
	"addresses":[{"addressLine1":"1 Dummy Street","postCode":"e8 1dy","isContactAddress":true}],
	"phoneNumbers":[{"number":"020 7946 0000","type":"home"}]}`

func TestPing(t *testing.T) {
	a := newAPI(t, nil)
	res := a.do("GET", "/api/v1/healthcheck/ping", "")
	if res.status != 200 || strings.TrimSpace(string(res.body)) != `{"success":true}` {
		t.Fatalf("ping: %d %s", res.status, res.body)
	}
}

func TestReadiness(t *testing.T) {
	a := newAPI(t, nil)
	res := a.do("GET", "/api/v1/healthcheck/ready", "")
	if res.status != 200 || !strings.Contains(string(res.body), `"store":{"ok":true}`) {
		t.Fatalf("ready: %d %s", res.status, res.body)
	}
	b := newAPI(t, map[string]func(context.Context) error{"bus": func(context.Context) error { return fmt.Errorf("nats: no servers available") }})
	res = b.do("GET", "/api/v1/healthcheck/ready", "")
	if res.status != 503 || !strings.Contains(string(res.body), `"bus":{"ok":false,"detail":"nats: no servers available"}`) {
		t.Fatalf("ready with a failing check: %d %s", res.status, res.body)
	}
}

func TestCreateViewUpdateDelete(t *testing.T) {
	a := newAPI(t, nil)
	res := a.do("POST", "/api/v1/residents", alice)
	if res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	rec := res.json(t)
	id := rec["mosaicId"].(json.Number).String()
	if res.header.Get("Location") != "/api/v1/residents/"+id || res.header.Get("ETag") != `"1"` {
		t.Fatalf("create headers: %v", res.header)
	}
	// Canonical forms: postcode upper case with one space, NHS number digits only.
	addr := rec["addresses"].([]any)[0].(map[string]any)
	if addr["postCode"] != "E8 1DY" || rec["nhsNumber"] != "9434765919" {
		t.Fatalf("canonical values: %v %v", addr["postCode"], rec["nhsNumber"])
	}
	// Every field is present, null when absent.
	if v, ok := rec["dateOfDeath"]; !ok || v != nil {
		t.Fatalf("dateOfDeath should be present and null: %v", rec)
	}
	if v, ok := addr["addressLine2"]; !ok || v != nil {
		t.Fatalf("nested absent field should be null: %v", addr)
	}

	res = a.do("GET", "/api/v1/residents/"+id, "")
	if res.status != 200 || res.header.Get("ETag") != `"1"` || res.json(t)["firstName"] != "Alice" {
		t.Fatalf("view: %d %v %s", res.status, res.header, res.body)
	}

	// JSON Merge Patch: change one field, remove another with null.
	res = a.do("PATCH", "/api/v1/residents/"+id, `{"firstName":"Alicia","gender":null}`,
		"If-Match", `"1"`, "Content-Type", "application/merge-patch+json")
	if res.status != 200 || res.header.Get("ETag") != `"2"` {
		t.Fatalf("patch: %d %s", res.status, res.body)
	}
	got := res.json(t)
	if got["firstName"] != "Alicia" || got["gender"] != nil || got["lastName"] != "Smith" || got["version"].(json.Number).String() != "2" {
		t.Fatalf("patched record: %s", res.body)
	}
	// A patch that changes nothing keeps the version.
	res = a.do("PATCH", "/api/v1/residents/"+id, `{"firstName":"Alicia"}`, "If-Match", `"2"`)
	if res.status != 200 || res.header.Get("ETag") != `"2"` {
		t.Fatalf("no-op patch: %d %v %s", res.status, res.header, res.body)
	}
	// Stale and missing If-Match.
	if res = a.do("PATCH", "/api/v1/residents/"+id, `{"firstName":"X"}`, "If-Match", `"1"`); res.status != 412 {
		t.Fatalf("stale patch: %d %s", res.status, res.body)
	}
	if res = a.do("PATCH", "/api/v1/residents/"+id, `{"firstName":"X"}`); res.status != 428 {
		t.Fatalf("patch without If-Match: %d %s", res.status, res.body)
	}
	if res = a.do("PATCH", "/api/v1/residents/"+id, `{"firstName":"X"}`, "If-Match", `*`); res.status != 400 {
		t.Fatalf("patch with If-Match *: %d %s", res.status, res.body)
	}
	if res = a.do("PATCH", "/api/v1/residents/"+id, `{"mosaicId":999}`, "If-Match", `"2"`); res.status != 422 || !strings.Contains(string(res.body), `"field":"mosaicId"`) {
		t.Fatalf("patch of the key: %d %s", res.status, res.body)
	}
	if res = a.do("PATCH", "/api/v1/residents/99999", `{"firstName":"X"}`, "If-Match", `"1"`); res.status != 404 {
		t.Fatalf("patch of unknown id: %d %s", res.status, res.body)
	}
	if got := a.do("GET", "/api/v1/residents/"+id, "").json(t); got["firstName"] != "Alicia" {
		t.Fatalf("failed patches changed the record: %v", got)
	}

	if res = a.do("DELETE", "/api/v1/residents/"+id, ""); res.status != 428 {
		t.Fatalf("delete without If-Match: %d", res.status)
	}
	if res = a.do("DELETE", "/api/v1/residents/"+id, "", "If-Match", `"1"`); res.status != 412 {
		t.Fatalf("stale delete: %d", res.status)
	}
	if res = a.do("DELETE", "/api/v1/residents/"+id, "", "If-Match", `"2"`); res.status != 204 {
		t.Fatalf("delete: %d %s", res.status, res.body)
	}
	if res = a.do("GET", "/api/v1/residents/"+id, ""); res.status != 404 {
		t.Fatalf("view after delete: %d", res.status)
	}
	if res = a.do("DELETE", "/api/v1/residents/"+id, "", "If-Match", `"2"`); res.status != 404 {
		t.Fatalf("second delete: %d", res.status)
	}
}

func TestUUIDKeyedEntity(t *testing.T) {
	a := newAPI(t, nil)
	res := a.do("POST", "/api/v1/contacts", `{"firstName":"Zoë","lastName":"O'Brien","contactInformation":[
		{"type":"email","value":"zoe@example.org","isDefault":true,"dateAdded":"2024-05-01T10:30:00+01:00"}]}`)
	if res.status != 201 {
		t.Fatalf("create contact: %d %s", res.status, res.body)
	}
	rec := res.json(t)
	id := rec["id"].(string)
	if got := rec["contactInformation"].([]any)[0].(map[string]any)["dateAdded"]; got != "2024-05-01T09:30:00Z" {
		t.Fatalf("datetime not normalised to UTC: %v", got)
	}
	if res = a.do("GET", "/api/v1/contacts/"+strings.ToUpper(id), ""); res.status != 200 {
		t.Fatalf("view by upper-case uuid: %d", res.status)
	}
	res = a.do("GET", "/api/v1/contacts/not-a-uuid", "")
	if res.status != 400 || !strings.Contains(string(res.body), `"parameter":"id"`) {
		t.Fatalf("bad uuid: %d %s", res.status, res.body)
	}
}

// problemOf checks a problem+json response and returns its errors.
func problemOf(t *testing.T, res response, status int) []any {
	t.Helper()
	if res.status != status {
		t.Fatalf("status %d, want %d: %s", res.status, status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q: %s", ct, res.body)
	}
	p := res.json(t)
	if p["status"].(json.Number).String() != fmt.Sprint(status) || p["title"] == "" || p["correlationId"] != res.header.Get("x-correlation-id") {
		t.Fatalf("problem fields: %s", res.body)
	}
	if strings.Contains(string(res.body), "goroutine") || strings.Contains(string(res.body), ".go:") {
		t.Fatalf("stack trace in response: %s", res.body)
	}
	errs, _ := p["errors"].([]any)
	return errs
}

func TestBadInputIsRejectedAndNothingIsWritten(t *testing.T) {
	a := newAPI(t, nil)
	existing := a.createResident(alice)
	id := existing["mosaicId"].(json.Number).String()
	big := `{"firstName":"` + strings.Repeat("x", 70<<10) + `","lastName":"Big"}`
	cases := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		names                    []string // fields or parameters the problem must name
		detail                   string   // part of the detail
	}{
		{"malformed JSON", "POST", "/api/v1/residents", `{"firstName": "A",`, nil, 400, nil, "not valid JSON"},
		{"not an object", "POST", "/api/v1/residents", `["a"]`, nil, 400, nil, "must be a JSON object"},
		{"trailing data", "POST", "/api/v1/residents", `{"firstName":"A","lastName":"B"} {}`, nil, 400, nil, "unexpected data"},
		{"empty body", "POST", "/api/v1/residents", ``, []string{"Content-Type", "application/json"}, 400, nil, "empty"},
		{"wrong types", "POST", "/api/v1/residents", `{"firstName":1,"lastName":"B","restricted":"yes","dateOfBirth":19800101}`, nil, 422, []string{"firstName", "restricted", "dateOfBirth"}, ""},
		{"unknown field", "POST", "/api/v1/residents", `{"firstName":"A","lastName":"B","shoeSize":9}`, nil, 422, []string{"shoeSize"}, ""},
		{"unknown nested field", "POST", "/api/v1/residents", `{"firstName":"A","lastName":"B","addresses":[{"addressLine1":"x","colour":"red"}]}`, nil, 422, []string{"addresses[0].colour"}, ""},
		{"system field", "POST", "/api/v1/residents", `{"firstName":"A","lastName":"B","version":3}`, nil, 422, []string{"version"}, ""},
		{"generated key given", "POST", "/api/v1/residents", `{"mosaicId":5,"firstName":"A","lastName":"B"}`, nil, 422, []string{"mosaicId"}, ""},
		{"missing required", "POST", "/api/v1/residents", `{"firstName":"A"}`, nil, 422, []string{"lastName"}, ""},
		{"missing nested required", "POST", "/api/v1/residents", `{"firstName":"A","lastName":"B","phoneNumbers":[{"type":"home"}]}`, nil, 422, []string{"phoneNumbers[0].number"}, ""},
		{"bad formats", "POST", "/api/v1/residents", `{"firstName":"A","lastName":"B","nhsNumber":"1234567890","emailAddress":"nope","addresses":[{"addressLine1":"x","postCode":"ABC"}],"dateOfBirth":"1980-02-30"}`, nil, 422, []string{"nhsNumber", "emailAddress", "addresses[0].postCode", "dateOfBirth"}, ""},
		{"enum and length", "POST", "/api/v1/residents", `{"firstName":"A","lastName":"` + strings.Repeat("b", 101) + `","gender":"X"}`, nil, 422, []string{"lastName", "gender"}, ""},
		{"oversized body", "POST", "/api/v1/residents", big, nil, 413, nil, "larger than the limit"},
		{"wrong content type", "POST", "/api/v1/residents", alice, []string{"Content-Type", "text/plain"}, 415, []string{"Content-Type"}, ""},
		{"merge patch type on create", "POST", "/api/v1/residents", alice, []string{"Content-Type", "application/merge-patch+json"}, 415, []string{"Content-Type"}, ""},
		{"patch wrong type", "PATCH", "/api/v1/residents/" + id, `{"firstName":true}`, []string{"If-Match", `"1"`}, 422, []string{"firstName"}, ""},
		{"patch removes required", "PATCH", "/api/v1/residents/" + id, `{"lastName":null}`, []string{"If-Match", `"1"`}, 422, []string{"lastName"}, ""},
		{"patch malformed", "PATCH", "/api/v1/residents/" + id, `{"lastName"`, []string{"If-Match", `"1"`}, 400, nil, "not valid JSON"},
		{"limit zero", "GET", "/api/v1/residents?limit=0", "", nil, 400, []string{"limit"}, ""},
		{"limit too big", "GET", "/api/v1/residents?limit=101", "", nil, 400, []string{"limit"}, ""},
		{"limit not a number", "GET", "/api/v1/residents?limit=ten", "", nil, 400, []string{"limit"}, ""},
		{"bad cursor", "GET", "/api/v1/residents?cursor=bm9wZQ", "", nil, 400, []string{"cursor"}, ""},
		{"unknown parameter", "GET", "/api/v1/residents?surname=Smith", "", nil, 400, []string{"surname"}, ""},
		{"repeated parameter", "GET", "/api/v1/residents?last_name=a&last_name=b", "", nil, 400, []string{"last_name"}, ""},
		{"bad filter value", "GET", "/api/v1/residents?date_of_birth_from=yesterday&mosaic_id=x", "", nil, 400, []string{"date_of_birth_from", "mosaic_id"}, ""},
		{"bad id", "GET", "/api/v1/residents/abc", "", nil, 400, []string{"id"}, ""},
		{"unknown route", "GET", "/api/v1/tenancies", "", nil, 404, nil, "no route"},
		{"method not allowed", "PUT", "/api/v1/residents/" + id, alice, nil, 405, nil, "not allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := a.count("residents")
			res := a.do(c.method, c.path, c.body, c.headers...)
			errs := problemOf(t, res, c.status)
			for _, name := range c.names {
				found := false
				for _, e := range errs {
					m := e.(map[string]any)
					if m["field"] == name || m["parameter"] == name {
						found = true
					}
				}
				if !found {
					t.Errorf("problem does not name %q: %s", name, res.body)
				}
			}
			if c.detail != "" && !strings.Contains(string(res.body), c.detail) {
				t.Errorf("detail lacks %q: %s", c.detail, res.body)
			}
			if after := a.count("residents"); after != before {
				t.Errorf("records went from %d to %d", before, after)
			}
		})
	}
	if got := a.do("GET", "/api/v1/residents/"+id, ""); got.header.Get("ETag") != `"1"` || got.json(t)["lastName"] != "Smith" {
		t.Fatalf("the record changed after rejected writes: %s", got.body)
	}
}

func TestCorrelationID(t *testing.T) {
	a := newAPI(t, nil)
	res := a.do("GET", "/api/v1/healthcheck/ping", "", "x-correlation-id", "abc-123")
	if res.header.Get("x-correlation-id") != "abc-123" {
		t.Fatalf("correlation id not echoed: %v", res.header)
	}
	res = a.do("GET", "/api/v1/residents/0", "")
	generated := res.header.Get("x-correlation-id")
	if len(generated) != 36 || !strings.Contains(string(res.body), generated) {
		t.Fatalf("generated correlation id %q missing from problem: %s", generated, res.body)
	}
	res = a.do("GET", "/api/v1/healthcheck/ping", "", "x-correlation-id", "bad id\twith\"stuff")
	if got := res.header.Get("x-correlation-id"); got == "" || strings.ContainsAny(got, " \t\"") {
		t.Fatalf("unsafe correlation id accepted: %q", got)
	}
}

func TestMetricsCountByRouteTemplate(t *testing.T) {
	a := newAPI(t, nil)
	a.do("GET", "/api/v1/residents/12345", "")
	a.do("GET", "/api/v1/residents/67890", "")
	res := a.do("GET", "/metrics", "")
	want := `plinth_http_requests_total{method="GET",route="/api/v1/residents/{id}",status="404"} 2`
	if !strings.Contains(string(res.body), want) {
		t.Fatalf("metrics lack %s:\n%s", want, res.body)
	}
	if !strings.Contains(string(res.body), "plinth_http_request_duration_seconds_bucket") {
		t.Fatal("no latency histogram")
	}
}

func TestOpenAPIServed(t *testing.T) {
	a := newAPI(t, nil)
	res := a.do("GET", "/api/v1/openapi.json", "")
	doc := res.json(t)
	if res.status != 200 || doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi: %d %.200s", res.status, res.body)
	}
}

// names lists the given field of each record of a list response.
func names(t *testing.T, a *api, query string) []string {
	t.Helper()
	res := a.do("GET", "/api/v1/residents?"+query, "")
	if res.status != 200 {
		t.Fatalf("list %s: %d %s", query, res.status, res.body)
	}
	var out []string
	for _, r := range res.json(t)["residents"].([]any) {
		m := r.(map[string]any)
		out = append(out, m["firstName"].(string)+" "+m["lastName"].(string))
	}
	return out
}

func TestFiltersWithCaseAndNonASCIINames(t *testing.T) {
	a := newAPI(t, nil)
	people := [][3]string{
		{"Zoë", "O'Brien", "N16 7UJ"},
		{"Łukasz", "Kowalski", "E8 1DY"},
		{"zoe", "Smith", "E8 1DY"},
		{"Siobhán", "Ní Bhriain", "E5 0LL"},
		{"Obi", "Okafor", "N1 9GU"},
	}
	for i, p := range people {
		a.createResident(fmt.Sprintf(`{"firstName":%q,"lastName":%q,"dateOfBirth":"19%02d-06-01","addresses":[{"addressLine1":"x","postCode":%q}]}`, p[0], p[1], 50+i*10, p[2]))
	}
	cases := []struct {
		query string
		want  []string
	}{
		{"first_name=ZOE", []string{"Zoë O'Brien", "zoe Smith"}},
		{"first_name=zoë", []string{"Zoë O'Brien", "zoe Smith"}},
		{"first_name=łuk", []string{"Łukasz Kowalski"}},
		{"first_name=ŁUKASZ", []string{"Łukasz Kowalski"}},
		{"last_name=o'b", []string{"Zoë O'Brien"}},
		{"last_name=BRIEN", []string{"Zoë O'Brien"}},
		{"last_name=ni+bhr", []string{"Siobhán Ní Bhriain"}},
		{"first_name=sio&last_name=bhriain", []string{"Siobhán Ní Bhriain"}},
		{"last_name=%25", nil},
		{"postcode=e81dy", []string{"Łukasz Kowalski", "zoe Smith"}},
		{"postcode=E8+1DY", []string{"Łukasz Kowalski", "zoe Smith"}},
		{"date_of_birth=1960-06-01", []string{"Łukasz Kowalski"}},
		{"date_of_birth_from=1960-06-01&date_of_birth_to=1980-06-01", []string{"Łukasz Kowalski", "zoe Smith", "Siobhán Ní Bhriain"}},
		{"mosaic_id=2", []string{"Łukasz Kowalski"}},
	}
	for _, c := range cases {
		got := names(t, a, c.query)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: got %q, want %q", c.query, got, c.want)
		}
	}
}

func TestPaginationWalkDuringWrites(t *testing.T) {
	a := newAPI(t, nil)
	e := a.entity("residents")
	initial := 230
	docs := make([]map[string]any, initial)
	for i := range docs {
		docs[i] = map[string]any{"firstName": fmt.Sprintf("P%03d", i), "lastName": "Walk"}
	}
	if err := a.store.BulkInsert(context.Background(), e, docs); err != nil {
		t.Fatal(err)
	}
	// Writers add new records and delete ones they added, while the walk runs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writes atomic.Int64
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				res := a.do("POST", "/api/v1/residents", fmt.Sprintf(`{"firstName":"New%d","lastName":"Walk"}`, i))
				if res.status != 201 {
					t.Errorf("insert during walk: %d %s", res.status, res.body)
					return
				}
				writes.Add(1)
				if i%2 == 0 {
					id := res.json(t)["mosaicId"].(json.Number).String()
					if del := a.do("DELETE", "/api/v1/residents/"+id, "", "If-Match", `"1"`); del.status != 204 {
						t.Errorf("delete during walk: %d", del.status)
						return
					}
				}
			}
		}()
	}
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWriters() // also when the walk fails the test
	seen := map[string]int{}
	last := int64(0)
	query := "last_name=walk&limit=7"
	for pages := 0; ; pages++ {
		res := a.do("GET", "/api/v1/residents?"+query, "")
		if res.status != 200 {
			t.Fatalf("page %d: %d %s", pages, res.status, res.body)
		}
		body := res.json(t)
		for _, r := range body["residents"].([]any) {
			m := r.(map[string]any)
			id, _ := m["mosaicId"].(json.Number).Int64()
			if id <= last {
				t.Fatalf("keys out of order: %d after %d", id, last)
			}
			last = id
			seen[m["firstName"].(string)]++
		}
		next, _ := body["nextCursor"].(string)
		if next == "" {
			break
		}
		// Let at least one write land between pages.
		seenWrites := writes.Load()
		plinthtest.Eventually(t, 0, func() bool { return writes.Load() != seenWrites || t.Failed() },
			"no write landed between pages %d and %d", pages, pages+1)
		query = "last_name=walk&limit=7&cursor=" + url.QueryEscape(next)
	}
	stopWriters()
	if writes.Load() < 30 {
		t.Fatalf("only %d writes ran during the walk; the test did not exercise concurrency", writes.Load())
	}
	for i := 0; i < initial; i++ {
		if n := seen[fmt.Sprintf("P%03d", i)]; n != 1 {
			t.Errorf("initial record P%03d seen %d times", i, n)
		}
	}
	// A cursor is bound to its filters.
	res := a.do("GET", "/api/v1/residents?limit=7&last_name=walk", "")
	cursor := res.json(t)["nextCursor"].(string)
	bad := a.do("GET", "/api/v1/residents?limit=7&last_name=other&cursor="+url.QueryEscape(cursor), "")
	if errs := problemOf(t, bad, 400); len(errs) != 1 || !strings.Contains(string(bad.body), "other filters") {
		t.Fatalf("cursor reused with other filters: %s", bad.body)
	}
}

func TestListDefaultsAndShape(t *testing.T) {
	a := newAPI(t, nil)
	e := a.entity("residents")
	docs := make([]map[string]any, 25)
	for i := range docs {
		docs[i] = map[string]any{"firstName": "A", "lastName": "B"}
	}
	if err := a.store.BulkInsert(context.Background(), e, docs); err != nil {
		t.Fatal(err)
	}
	body := a.do("GET", "/api/v1/residents", "").json(t)
	if n := len(body["residents"].([]any)); n != plinth.DefaultLimit {
		t.Fatalf("default page size %d", n)
	}
	next := body["nextCursor"].(string)
	body = a.do("GET", "/api/v1/residents?cursor="+url.QueryEscape(next), "").json(t)
	if n := len(body["residents"].([]any)); n != 5 || body["nextCursor"] != nil {
		t.Fatalf("second page: %d records, next %v", n, body["nextCursor"])
	}
	empty := a.do("GET", "/api/v1/residents?last_name=nobody", "")
	if strings.TrimSpace(string(empty.body)) != `{"residents":[],"nextCursor":null}` {
		t.Fatalf("empty list: %s", empty.body)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestReadsAnswerWithContentLength: a list page larger than net/http's
// 2 KiB buffer and a record go out with their length, not chunked (one
// write of headers and body rather than several), and HEAD says the
// length GET would send.
func TestReadsAnswerWithContentLength(t *testing.T) {
	a := newAPI(t, nil)
	for range 6 {
		a.createResident(alice)
	}
	for _, path := range []string{"/api/v1/residents", "/api/v1/residents/1"} {
		res, err := http.Get(a.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || res.TransferEncoding != nil || res.ContentLength != int64(len(body)) {
			t.Errorf("GET %s: %d, transfer encoding %v, length %d for %d bytes", path, res.StatusCode, res.TransferEncoding, res.ContentLength, len(body))
		}
		if path == "/api/v1/residents" && len(body) <= 2048 {
			t.Errorf("the page is %d bytes: too small to test", len(body))
		}
		head := a.do("HEAD", path, "")
		if head.status != 200 || len(head.body) != 0 || head.header.Get("Content-Length") != strconv.Itoa(len(body)) {
			t.Errorf("HEAD %s: %d, %d bytes, Content-Length %q; GET sends %d bytes", path, head.status, len(head.body), head.header.Get("Content-Length"), len(body))
		}
	}
}
