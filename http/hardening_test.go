package http_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	plinthhttp "github.com/plinth-data/plinth/http"
	"github.com/plinth-data/plinth/plinthtest"
)

func TestWeakIfMatchNeverMatches(t *testing.T) {
	a := newAPI(t, nil)
	id := a.createResident(alice)["mosaicId"]
	path := "/api/v1/residents/" + jsonString(id)
	res := a.do("PATCH", path, `{"firstName":"X"}`, "If-Match", `W/"1"`)
	problemOf(t, res, 412)
	res = a.do("DELETE", path, "", "If-Match", `W/"1"`)
	problemOf(t, res, 412)
	for _, bad := range []string{`1`, `"1`, `"+1"`, `"1" , "2"`} {
		problemOf(t, a.do("PATCH", path, `{"firstName":"X"}`, "If-Match", bad), 400)
	}
	if res := a.do("GET", path, ""); res.header.Get("ETag") != `"1"` {
		t.Fatalf("a weak or malformed If-Match changed the record: %v", res.header)
	}
}

func TestQueryStringsMustParseExactly(t *testing.T) {
	s := newSecuredAPI(t)
	reader, admin := s.token("readers"), s.token("admins")
	s.do("POST", "/api/v1/residents", alice, "Authorization", s.token("readers", "writers"))
	for _, c := range []struct{ path, tok string }{
		{"/api/v1/residents?limit=1;last_name=x", reader},
		{"/api/v1/residents?last_name=%zz", reader},
		{"/api/v1/residents/1?a=1;b=2", reader},
		{"/admin/v1/tokens?limit=1;cursor=x", admin},
		{"/admin/v1/audit?user=a;domain=b", admin},
		{"/admin/v1/access?environment=development;x", admin},
	} {
		errs := problemOf(t, s.do("GET", c.path, "", "Authorization", c.tok), 400)
		if len(errs) != 1 || errs[0].(map[string]any)["parameter"] != "query" {
			t.Errorf("%s: errors %v", c.path, errs)
		}
	}
}

func TestEveryCursorIsValidatedAlike(t *testing.T) {
	s := newSecuredAPI(t)
	admin := s.token("admins")
	for i := 0; i < 3; i++ {
		s.do("GET", "/api/v1/residents", "", "Authorization", admin) // denied, audited
	}
	s.auditTrail() // chains the records: search returns chained records only
	page := s.do("GET", "/admin/v1/audit?limit=1", "", "Authorization", admin).json(t)
	auditCursor, _ := page["nextCursor"].(string)
	if auditCursor == "" {
		t.Fatalf("no audit cursor: %v", page)
	}
	for _, c := range []struct{ path string }{
		{"/admin/v1/tokens?cursor=bm90LWEtY3Vyc29y"}, // base64 of "not-a-cursor"
		{"/admin/v1/tokens?cursor=%25%25"},
		{"/admin/v1/tokens?cursor=" + auditCursor}, // another list's cursor
		{"/admin/v1/audit?cursor=MTI"},             // base64 of "12"
		{"/admin/v1/audit?cursor=" + auditCursor + "&domain=residents"},
		{"/api/v1/residents?cursor=" + auditCursor},
	} {
		tok := admin
		if strings.HasPrefix(c.path, "/api/") {
			tok = s.token("readers")
		}
		errs := problemOf(t, s.do("GET", c.path, "", "Authorization", tok), 400)
		if len(errs) != 1 || errs[0].(map[string]any)["parameter"] != "cursor" {
			t.Errorf("%s: errors %v", c.path, errs)
		}
	}
	if res := s.do("GET", "/admin/v1/audit?limit=1&cursor="+auditCursor, "", "Authorization", admin); res.status != 200 {
		t.Fatalf("a good cursor: %d %s", res.status, res.body)
	}
}

func TestBodiesThatWouldBeAlteredAreRefused(t *testing.T) {
	s := newSecuredAPI(t)
	rw, admin := s.token("readers", "writers"), s.token("admins")
	for _, c := range []struct{ body, field string }{
		{"{\"firstName\":\"Al\xffce\",\"lastName\":\"Smith\"}", "firstName"},
		{`{"firstName":"Al\ud800ce","lastName":"Smith"}`, "firstName"},
		{`{"firstName":"Al","lastName":"Smith","addresses":[{"addressLine1":"\udc00"}]}`, "addresses[0].addressLine1"},
		{`{"firstName":"a","firstName":"b","lastName":"Smith"}`, "firstName"},
	} {
		errs := problemOf(t, s.do("POST", "/api/v1/residents", c.body, "Authorization", rw), 400)
		if len(errs) != 1 || errs[0].(map[string]any)["field"] != c.field {
			t.Errorf("%q: errors %v", c.body, errs)
		}
	}
	if n := s.count("residents"); n != 0 {
		t.Fatalf("%d records stored from refused bodies", n)
	}
	// The admin API reads bodies the same way.
	errs := problemOf(t, s.do("PUT", "/admin/v1/access/residents/staging", `{"readGroups":["a"],"readGroups":["b"]}`, "Authorization", admin), 400)
	if len(errs) != 1 || errs[0].(map[string]any)["field"] != "readGroups" {
		t.Fatalf("admin duplicate member: %v", errs)
	}
}

func TestEmptyStringKeyIsRefused(t *testing.T) {
	ds := loadSpec(t, `
domain: things
description: Things with text keys.
owner: {serviceArea: Test, productOwner: test@example.org}
sourceSystem: Test
entities:
  - name: thing
    plural: things
    description: A thing.
    key: {name: code, type: string, pii: none}
    fields:
      - {name: label, type: string, pii: none, description: A label.}
`)
	a := newAPIWith(t, ds)
	for _, body := range []string{`{"code":""}`, `{"code":".."}`, `{"code":"a\u0001b"}`} {
		errs := problemOf(t, a.do("POST", "/api/v1/things", body), 422)
		if len(errs) != 1 || errs[0].(map[string]any)["field"] != "code" {
			t.Errorf("%s: %v", body, errs)
		}
	}
	if res := a.do("POST", "/api/v1/things", `{"code":"a b/c"}`); res.status != 201 {
		t.Fatalf("a key with a slash and a space: %d %s", res.status, res.body)
	}
	if res := a.do("GET", "/api/v1/things/a%20b%2Fc", ""); res.status != 200 {
		t.Fatalf("reaching it: %d %s", res.status, res.body)
	}
}

func TestHTTPMethodsFollowRFC9110(t *testing.T) {
	s := newSecuredAPI(t)
	reader := s.token("readers")
	s.do("POST", "/api/v1/residents", alice, "Authorization", s.token("writers"))
	get := s.do("GET", "/api/v1/residents/1", "", "Authorization", reader)
	head := s.do("HEAD", "/api/v1/residents/1", "", "Authorization", reader)
	if head.status != 200 || len(head.body) != 0 || head.header.Get("ETag") != get.header.Get("ETag") ||
		head.header.Get("Content-Type") != "application/json" {
		t.Fatalf("HEAD: %d %q %v", head.status, head.body, head.header)
	}
	if res := s.do("HEAD", "/api/v1/residents/1", ""); res.status != 401 {
		t.Fatalf("HEAD without a token: %d", res.status)
	}
	res := s.do("PUT", "/api/v1/residents/1", alice, "Authorization", reader)
	problemOf(t, res, 405)
	if got := res.header.Get("Allow"); got != "GET, PATCH, DELETE, HEAD, OPTIONS" {
		t.Fatalf("Allow on 405: %q", got)
	}
	res = s.do("OPTIONS", "/api/v1/residents", "")
	if res.status != 204 || res.header.Get("Allow") != "GET, POST, HEAD, OPTIONS" {
		t.Fatalf("OPTIONS: %d %v", res.status, res.header)
	}
	if res := s.do("OPTIONS", "/api/v1/nowhere", ""); res.status != 404 {
		t.Fatalf("OPTIONS on no route: %d", res.status)
	}
}

// TestAuditFieldsAreBounded: a caller cannot grow the trail by a megabyte
// a request.
func TestAuditFieldsAreBounded(t *testing.T) {
	s := newSecuredAPI(t)
	huge := strings.Repeat("x", 900<<10)
	s.do("GET", "/api/v1/residents?last_name="+huge[:100000], "", "User-Agent", huge)
	s.do("GET", "/api/v1/residents/"+huge[:50000], "", "Authorization", s.token("readers"), "User-Agent", huge)
	trail := s.auditTrail()
	if len(trail) != 2 {
		t.Fatalf("%d records", len(trail))
	}
	for _, rec := range trail {
		size := len(rec.UserAgent) + len(rec.Filters["last_name"]) + len(strings.Join(rec.RecordIDs, ""))
		if size > 4096 || !strings.Contains(rec.UserAgent, "truncated from 921600 bytes") {
			t.Fatalf("audit record holds %d bytes of caller input: UA %q", size, rec.UserAgent[:min(80, len(rec.UserAgent))])
		}
	}
	if report, err := audit.Verify(context.Background(), s.full, nil); err != nil || report.Broken != nil {
		t.Fatalf("chain: %+v %v", report, err)
	}
}

// TestDenialFloodsAreAggregated: beyond the per-minute allowance a
// client's denials are counted into one record, not written one by one.
func TestDenialFloodsAreAggregated(t *testing.T) {
	s := newSecuredAPI(t)
	const flood = plinthhttp.DefaultDenialsPerMinute + 30
	start := time.Now()
	for i := 0; i < flood; i++ {
		if res := s.do("GET", "/api/v1/residents", ""); res.status != 401 {
			t.Fatalf("denial %d: %d", i, res.status)
		}
	}
	if time.Now().Unix()/60 != start.Unix()/60 {
		t.Skip("the flood straddled a minute boundary; the count per minute is not predictable")
	}
	if n := len(s.auditTrail()); n != plinthhttp.DefaultDenialsPerMinute {
		t.Fatalf("%d records during the flood, want %d", n, plinthhttp.DefaultDenialsPerMinute)
	}
	s.server.Close() // flushes the minute's aggregate
	trail := s.auditTrail()
	if len(trail) != plinthhttp.DefaultDenialsPerMinute+1 {
		t.Fatalf("%d records after the flush", len(trail))
	}
	agg := trail[len(trail)-1]
	if agg.Operation != "denied-aggregate" || agg.Count != 30 || agg.Decision != plinth.DecisionDeny || agg.ClientAddress != "127.0.0.1" {
		t.Fatalf("aggregate: %+v", agg)
	}
}

func TestRefusedRequestsAreLabelledByRoute(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newSecuredAPIWith(t, func(c *plinthhttp.Config) { c.Registry = reg })
	s.do("GET", "/api/v1/residents/1", "")                                         // 401
	s.do("GET", "/api/v1/residents/1", "", "Authorization", s.token("strangers"))  // 403
	s.do("PUT", "/api/v1/residents/1", alice, "Authorization", s.token("readers")) // 405
	for _, c := range []struct{ method, status string }{{"GET", "401"}, {"GET", "403"}, {"PUT", "405"}} {
		if n := requests(t, reg, c.method, c.status); n != 1 {
			t.Errorf("%s %s on /api/v1/residents/{id}: %v", c.method, c.status, n)
		}
	}
}

// TestClientThatGoesAwayIsNotAServerError: a cancelled request is logged
// below warning, counted as 499, and audited with its outcome.
func TestClientThatGoesAwayIsNotAServerError(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	s := newSecuredAPIWith(t, func(c *plinthhttp.Config) {
		c.Registry = reg
		c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		c.Store = slowStore{Store: c.Store, delay: 300 * time.Millisecond}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/api/v1/residents", nil)
	req.Header.Set("Authorization", s.token("readers"))
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("the request was not cut off")
	}
	plinthtest.Eventually(t, 0, func() bool { return len(s.auditTrail()) == 1 }, "the cut-off request is not audited")
	if rec := s.auditTrail()[0]; rec.Status != 499 || rec.Operation != "list" {
		t.Fatalf("audit: %+v", rec)
	}
	plinthtest.Eventually(t, 0, func() bool { return strings.Contains(logs.String(), `"status":499`) }, "no 499 in the log: %s", &logs)
	if strings.Contains(logs.String(), `"level":"ERROR"`) || strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Fatalf("logged as a fault: %s", logs.String())
	}
	if n := requests(t, reg, "GET", "499"); n != 1 {
		t.Fatalf("499 counted %v times", n)
	}
}

type slowStore struct {
	plinth.Store
	delay time.Duration
}

func (s slowStore) List(ctx context.Context, e *plinth.Entity, q plinth.Query) (plinth.Page, error) {
	select {
	case <-time.After(s.delay): // a slow store, not a wait
	case <-ctx.Done():
		return plinth.Page{}, ctx.Err()
	}
	return s.Store.List(ctx, e, q)
}

// requests returns how many requests of a method and status were counted,
// checking that they are labelled with the residents route.
func requests(t *testing.T, reg *prometheus.Registry, method, status string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "plinth_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["status"] == status {
				if !strings.HasPrefix(labels["route"], "/api/v1/residents") {
					t.Errorf("%s %s labelled route %q", method, status, labels["route"])
				}
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
