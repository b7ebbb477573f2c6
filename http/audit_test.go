package http_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	plinthhttp "github.com/plinth-data/plinth/http"
	"github.com/plinth-data/plinth/spec"
	"github.com/plinth-data/plinth/sqlite"
)

// auditTrail returns every audit record, in order: with several stores
// (TestOnMixedStores), every store's chain, merged by time.
func (s *securedAPI) auditTrail() []plinth.AuditRecord {
	s.t.Helper()
	// Records are chained shortly after they are written (audit.Chainer
	// in plinth serve); chain them now.
	chains := audit.Chains(s.full)
	if _, err := audit.ChainPendingTrail(context.Background(), chains); err != nil {
		s.t.Fatal(err)
	}
	var recs []plinth.AuditRecord
	if err := audit.SearchTrailAll(context.Background(), chains, plinth.AuditQuery{}, func(r audit.TrailRecord) error {
		recs = append(recs, r.AuditRecord)
		return nil
	}); err != nil {
		s.t.Fatal(err)
	}
	return recs
}

// verifyTrail verifies every chain and returns how many records they hold.
func (s *securedAPI) verifyTrail() int64 {
	s.t.Helper()
	reps, err := audit.VerifyTrail(context.Background(), audit.Chains(s.full), nil, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	var n int64
	for _, r := range reps {
		if r.Broken != nil {
			s.t.Fatalf("the chain of store %s is broken: %+v", r.Chain, r.Broken)
		}
		n += r.Records
	}
	return n
}

func TestEveryRequestIsAuditedOnce(t *testing.T) {
	s := newAuditedAPI(t, true)
	reader, writer, admin := s.token("readers"), s.token("writers"), s.token("admins")
	steps := []struct {
		method, path, body string
		headers            []string
		status             int
		operation, route   string
		decision           string
		ids                string
	}{
		{"POST", "/api/v1/residents", alice, []string{"Authorization", writer}, 201, "create", "/api/v1/residents", "allow", "1"},
		{"GET", "/api/v1/residents/1", "", []string{"Authorization", reader}, 200, "view", "/api/v1/residents/{id}", "allow", "1"},
		{"GET", "/api/v1/residents?last_name=smi", "", []string{"Authorization", reader}, 200, "list", "/api/v1/residents", "allow", "1"},
		{"PATCH", "/api/v1/residents/1", `{"firstName":"Al"}`, []string{"Authorization", writer, "If-Match", `"1"`}, 204, "update", "/api/v1/residents/{id}", "allow", "1"},
		{"PATCH", "/api/v1/residents/1", `{"firstName":"Al"}`, []string{"Authorization", writer, "If-Match", `"1"`}, 412, "update", "/api/v1/residents/{id}", "allow", "1"},
		{"GET", "/api/v1/residents/1", "", []string{"Authorization", writer}, 403, "view", "/api/v1/residents/{id}", "deny", ""},
		{"GET", "/api/v1/residents/1", "", nil, 401, "view", "/api/v1/residents/{id}", "deny", ""},
		{"GET", "/api/v1/residents/77", "", []string{"Authorization", reader}, 404, "view", "/api/v1/residents/{id}", "allow", "77"},
		{"DELETE", "/api/v1/residents/1", "", []string{"Authorization", writer, "If-Match", `"2"`}, 204, "delete", "/api/v1/residents/{id}", "allow", "1"},
		{"GET", "/admin/v1/tokens", "", []string{"Authorization", admin}, 200, "admin", "/admin/v1/tokens", "allow", ""},
		// Unknown routes, methods a route does not allow, HEAD and
		// unparsable query strings are audited too.
		{"GET", "/api/v1/nowhere", "", []string{"Authorization", reader}, 404, "get", "unmatched", "allow", ""},
		{"PUT", "/api/v1/residents", alice, []string{"Authorization", writer}, 405, "put", "/api/v1/residents", "allow", ""},
		{"HEAD", "/api/v1/residents/77", "", []string{"Authorization", reader}, 404, "view", "/api/v1/residents/{id}", "allow", "77"},
		{"GET", "/api/v1/residents?limit=1;last_name=x", "", []string{"Authorization", reader}, 400, "list", "/api/v1/residents", "allow", ""},
	}
	for i, st := range steps {
		res := s.do(st.method, st.path, st.body, st.headers...)
		if res.status != st.status {
			t.Fatalf("step %d %s %s: %d %s", i, st.method, st.path, res.status, res.body)
		}
		trail := s.auditTrail()
		if len(trail) != i+1 {
			t.Fatalf("step %d %s %s: %d audit records, want %d", i, st.method, st.path, len(trail), i+1)
		}
		rec := trail[i]
		if rec.Operation != st.operation || rec.Route != st.route || rec.Decision != st.decision ||
			rec.Status != st.status || strings.Join(rec.RecordIDs, ",") != st.ids || rec.Method != st.method ||
			rec.CorrelationID != res.header.Get("x-correlation-id") || rec.Environment != "development" {
			t.Fatalf("step %d %s %s: audit record %+v", i, st.method, st.path, rec)
		}
		if rec.Domain == "" && strings.Contains("view list create update delete", st.operation) {
			t.Fatalf("step %d: no domain in %+v", i, rec)
		}
		if st.decision == "allow" && rec.Principal.Subject == "" {
			t.Fatalf("step %d: no principal in %+v", i, rec)
		}
		if st.status == 401 && rec.Principal.Subject != "" {
			t.Fatalf("step %d: a principal for a request without a token: %+v", i, rec)
		}
	}
	trail := s.auditTrail()
	if trail[2].Filters["last_name"] != "smi" {
		t.Fatalf("filters not audited: %+v", trail[2].Filters)
	}
	if trail[0].Principal.Groups[0] != "writers" || trail[5].Reason == "" {
		t.Fatalf("principal or reason missing: %+v / %+v", trail[0], trail[5])
	}
	if n := s.verifyTrail(); n != int64(len(steps)) {
		t.Fatalf("the chains hold %d records, want %d", n, len(steps))
	}
}

func TestAuditSearchAPI(t *testing.T) {
	s := newAuditedAPI(t, true)
	reader, writer := s.token("readers"), s.token("writers")
	for i := 0; i < 3; i++ {
		s.do("POST", "/api/v1/residents", alice, "Authorization", writer)
	}
	s.do("GET", "/api/v1/residents/2", "", "Authorization", reader)
	s.do("GET", "/api/v1/residents/3", "", "Authorization", reader)
	auditor := s.token("auditors")
	s.auditTrail() // chains the records: search returns chained records only
	res := s.do("GET", "/admin/v1/audit?entity_id=2&limit=1", "", "Authorization", auditor)
	if res.status != 200 {
		t.Fatalf("search: %d %s", res.status, res.body)
	}
	var page struct {
		AuditRecords []audit.TrailRecord `json:"auditRecords"`
		NextCursor   *string             `json:"nextCursor"`
	}
	// With residents on another store (TestOnMixedStores) their writes are
	// audited in that store's chain, the reads in the default's.
	writesIn := audit.DefaultChain
	if strings.HasPrefix(t.Name(), onMixed) {
		writesIn = "residents"
	}
	json.Unmarshal(res.body, &page)
	if len(page.AuditRecords) != 1 || page.AuditRecords[0].Operation != "create" || page.NextCursor == nil ||
		page.AuditRecords[0].Chain != writesIn {
		t.Fatalf("first page: %s", res.body)
	}
	res = s.do("GET", "/admin/v1/audit?entity_id=2&limit=1&cursor="+url.QueryEscape(*page.NextCursor), "", "Authorization", auditor)
	page.AuditRecords, page.NextCursor = nil, nil
	json.Unmarshal(res.body, &page)
	if len(page.AuditRecords) != 1 || page.AuditRecords[0].Operation != "view" || page.AuditRecords[0].Principal.Groups[0] != "readers" ||
		page.AuditRecords[0].Chain != audit.DefaultChain || page.NextCursor != nil {
		t.Fatalf("second page: %s", res.body)
	}
	problemOf(t, s.do("GET", "/admin/v1/audit?since=yesterday", "", "Authorization", auditor), 400)
	problemOf(t, s.do("GET", "/admin/v1/tokens", "", "Authorization", auditor), 403)
	problemOf(t, s.do("GET", "/admin/v1/audit", "", "Authorization", reader), 403)
}

// breakAuditTable makes every insert into the audit table fail, as a full
// or read-only audit table would.
func (s *securedAPI) breakAuditTable() {
	s.t.Helper()
	db, err := sql.Open("sqlite", s.dbPath)
	if err != nil {
		s.t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER no_audit BEFORE INSERT ON plinth_audit_log BEGIN SELECT RAISE(ABORT, 'audit table is read-only'); END`); err != nil {
		s.t.Fatal(err)
	}
}

func TestAuditFailsClosed(t *testing.T) {
	s := newAuditedAPI(t, true)
	reader, writer := s.token("readers"), s.token("writers")
	if res := s.do("POST", "/api/v1/residents", alice, "Authorization", writer); res.status != 201 {
		t.Fatalf("create: %d", res.status)
	}
	s.breakAuditTable()
	for _, path := range []string{"/api/v1/residents/1", "/api/v1/residents"} {
		res := s.do("GET", path, "", "Authorization", reader)
		problemOf(t, res, 503)
		if strings.Contains(string(res.body), "Smith") || res.header.Get("ETag") != "" {
			t.Fatalf("data sent without an audit record: %v %s", res.header, res.body)
		}
		// The problem replaced an answer whose length was set: the
		// length sent is the problem's.
		if n := res.header.Get("Content-Length"); n != "" && n != strconv.Itoa(len(res.body)) {
			t.Fatalf("GET %s: Content-Length %s for a problem of %d bytes", path, n, len(res.body))
		}
	}
	problemOf(t, s.do("POST", "/api/v1/residents", alice, "Authorization", writer), 503)
	if n := s.count("residents"); n != 1 {
		t.Fatalf("a write without its audit record was kept: %d residents", n)
	}
}

func TestAuditWarnsInDevelopment(t *testing.T) {
	s := newAuditedAPI(t, false)
	reader, writer := s.token("readers"), s.token("writers")
	s.do("POST", "/api/v1/residents", alice, "Authorization", writer)
	s.breakAuditTable()
	if res := s.do("GET", "/api/v1/residents/1", "", "Authorization", reader); res.status != 200 {
		t.Fatalf("development read with a broken audit table: %d %s", res.status, res.body)
	}
}

func TestWritesProduceEvents(t *testing.T) {
	s := newAuditedAPI(t, true)
	writer := s.token("writers")
	s.do("POST", "/api/v1/residents", alice, "Authorization", writer)
	s.do("PATCH", "/api/v1/residents/1", `{"firstName":"Alicia"}`, "Authorization", writer, "If-Match", `"1"`)
	s.do("PATCH", "/api/v1/residents/1", `{"firstName":"Alicia"}`, "Authorization", writer, "If-Match", `"2"`) // no change
	s.do("PATCH", "/api/v1/residents/1", `{"firstName":"Bad","gender":"Q"}`, "Authorization", writer, "If-Match", `"2"`)
	s.do("DELETE", "/api/v1/residents/1", "", "Authorization", writer, "If-Match", `"2"`)
	entries, err := s.full.PendingEvents(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range entries {
		var ev plinth.Event
		if err := json.Unmarshal(en.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s v%d %s", ev.EventType, ev.EntityVersion, en.Subject))
		if ev.EventType == "ResidentUpdatedEvent" {
			if fmt.Sprint(ev.EventData.OldData) != "map[firstName:Alice]" || fmt.Sprint(ev.EventData.NewData) != "map[firstName:Alicia]" {
				t.Fatalf("update carries more than the change: %+v", ev.EventData)
			}
			if ev.User.Email != "u@example.org" || ev.CorrelationID == "" || ev.State["lastName"] != "Smith" {
				t.Fatalf("envelope: %+v", ev)
			}
		}
		if ev.EventType == "ResidentDeletedEvent" && ev.State != nil {
			t.Fatalf("delete event with state: %+v", ev)
		}
	}
	want := "[ResidentCreatedEvent v1 plinth.development.residents.residents.created ResidentUpdatedEvent v2 plinth.development.residents.residents.updated ResidentDeletedEvent v3 plinth.development.residents.residents.deleted]"
	if fmt.Sprint(got) != want {
		t.Fatalf("events:\n%v\nwant\n%s", got, want)
	}
}

func TestAuditEdgeCases(t *testing.T) {
	// Development: a write cannot proceed without its audit record (they
	// share a transaction), and says so with a 503.
	dev := newAuditedAPI(t, false)
	dev.breakAuditTable()
	problemOf(t, dev.do("POST", "/api/v1/residents", alice, "Authorization", dev.token("writers")), 503)

	// Production: a denial that cannot be audited is refused with a 503.
	prod := newAuditedAPI(t, true)
	prod.breakAuditTable()
	problemOf(t, prod.do("GET", "/api/v1/residents/1", ""), 503)
}

// panicStore panics on every read, as a bug in a store would.
type panicStore struct{ plinth.Store }

func (panicStore) Get(context.Context, *plinth.Entity, any) (plinth.Record, error) {
	panic("store bug")
}

func TestPanicIsAuditedAsA500(t *testing.T) {
	s := newAuditedAPI(t, true)
	srv := httptest.NewServer(mustServer(t, plinthhttp.Config{
		Store: panicStore{s.full}, Domains: s.domains, Logger: discardLogger(),
		Authorizer: s.authz, Access: s.full, Environment: "development", Auditor: s.auditor,
	}))
	defer srv.Close()
	p := &api{t: t, url: srv.URL}
	problemOf(t, p.do("GET", "/api/v1/residents/1", "", "Authorization", s.token("readers")), 500)
	trail := s.auditTrail()
	if len(trail) != 1 || trail[0].Status != 500 {
		t.Fatalf("audit trail after a panic: %+v", trail)
	}
}

func TestStringKeysAreEscaped(t *testing.T) {
	d, err := spec.Parse("things.yaml", []byte(`domain: things
description: Things with natural string keys.
owner: {serviceArea: Test, productOwner: test@example.org}
entities:
  - name: thing
    plural: things
    key: {name: code, type: string, pii: none}
    fields:
      - {name: label, type: string, pii: none}
`))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), t.TempDir()+"/things.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Prepare(context.Background(), []*plinth.Domain{d}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mustServer(t, plinthhttp.Config{Store: st, Domains: []*plinth.Domain{d}, Logger: discardLogger(), Unprotected: true}))
	defer srv.Close()
	a := &api{t: t, url: srv.URL}
	for _, key := range []string{"a/b", "x%y", "sp ace", "Zoë"} {
		res := a.do("POST", "/api/v1/things", fmt.Sprintf(`{"code":%q,"label":"l"}`, key))
		if res.status != 201 {
			t.Fatalf("create %q: %d %s", key, res.status, res.body)
		}
		loc := res.header.Get("Location")
		if _, err := url.Parse(loc); err != nil {
			t.Fatalf("Location %q for %q: %v", loc, key, err)
		}
		got := a.do("GET", loc, "")
		if got.status != 200 || got.json(t)["code"] != key {
			t.Fatalf("GET %s: %d %s", loc, got.status, got.body)
		}
	}
}

// TestAdminChangesCommitWithTheirAuditRecord: an admin change whose audit
// record cannot be written is not kept.
func TestAdminChangesCommitWithTheirAuditRecord(t *testing.T) {
	s := newAuditedAPI(t, true)
	admin := s.token("admins")
	s.breakAuditTable()
	problemOf(t, s.do("PUT", "/admin/v1/access/contacts/development", `{"readGroups":["a"]}`, "Authorization", admin), 503)
	ps, err := s.full.Policies(context.Background(), "development")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Domain == "contacts" {
			t.Fatal("a policy change was kept without its audit record")
		}
	}
	expires := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	problemOf(t, s.do("POST", "/admin/v1/tokens", `{"consumer":"c","consumerType":"service","api":"residents","endpoint":"/api/v1/residents","methods":["GET"],"environment":"development","expiresAt":"`+expires+`","requestedBy":"a","authorisedBy":"b"}`, "Authorization", admin), 503)
	if grants, _, _ := s.full.Grants(context.Background(), "", 10); len(grants) != 0 {
		t.Fatalf("a grant was kept without its audit record: %+v", grants)
	}
}
