package http_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/plinth-data/plinth"
	plinthhttp "github.com/plinth-data/plinth/http"
)

// onPostgres is the prefix of the tests TestOnPostgreSQL runs again.
const onPostgres = "TestOnPostgreSQL/"

// TestOnPostgreSQL runs black-box tests of reads and their audit records
// again on PostgreSQL, whose store appends a view's or a page's record
// with its read (plinth.AuditedReader) while few requests are served.
func TestOnPostgreSQL(t *testing.T) {
	for name, fn := range map[string]func(*testing.T){
		"CreateViewUpdateDelete":             TestCreateViewUpdateDelete,
		"UUIDKeyedEntity":                    TestUUIDKeyedEntity,
		"StringKeysAreEscaped":               TestStringKeysAreEscaped,
		"EveryRequestIsAuditedOnce":          TestEveryRequestIsAuditedOnce,
		"NoRouteLeaksRecordsToWhoMayNotRead": TestNoRouteLeaksRecordsToWhoMayNotRead,
		"ReadsAppendTheirRecordWithTheRead":  TestReadsAppendTheirRecordWithTheRead,
		"AuditSearchAPI":                     TestAuditSearchAPI,
		"ListDefaultsAndShape":               TestListDefaultsAndShape,
		"PaginationWalkDuringWrites":         TestPaginationWalkDuringWrites,
		"FiltersWithCaseAndNonASCIINames":    TestFiltersWithCaseAndNonASCIINames,
		"ConcurrentListsKeepTheirPages":      TestConcurrentListsKeepTheirPages,
	} {
		t.Run(name, fn)
	}
}

// auditedGets counts the reads whose record the store appended with the
// read.
type auditedGets struct {
	fullStore
	calls atomic.Int64
}

func (c *auditedGets) GetAudited(ctx context.Context, e *plinth.Entity, id any, rec plinth.AuditRecord) (plinth.Record, plinth.AuditRecord, error) {
	c.calls.Add(1)
	return c.fullStore.(plinth.AuditedReader).GetAudited(ctx, e, id, rec)
}

func (c *auditedGets) ListAudited(ctx context.Context, e *plinth.Entity, q plinth.Query, rec plinth.AuditRecord) (plinth.Page, plinth.AuditRecord, error) {
	c.calls.Add(1)
	return c.fullStore.(plinth.AuditedReader).ListAudited(ctx, e, q, rec)
}

// A view or list on a store that reads and appends in one transaction
// records exactly what one through the auditor records: one record per
// request, 200 or 404 as answered, the ids read, whether the request took
// that path (one at a time) or shared a commit with others (many at once).
func TestReadsAppendTheirRecordWithTheRead(t *testing.T) {
	counter := &auditedGets{}
	s := newAuditedAPI(t, true, func(c *plinthhttp.Config) {
		counter.fullStore = c.Store.(fullStore)
		c.Store = counter
	})
	if _, ok := counter.fullStore.(plinth.AuditedReader); !ok {
		t.Skip("the store does not append a view's record with its read")
	}
	reader, writer := s.token("readers"), s.token("writers")
	if res := s.do("POST", "/api/v1/residents", alice, "Authorization", writer); res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	found := s.do("GET", "/api/v1/residents/1", "", "Authorization", reader)
	missing := s.do("GET", "/api/v1/residents/2", "", "Authorization", reader)
	if found.status != 200 || missing.status != 404 || counter.calls.Load() != 2 {
		t.Fatalf("views: %d %s, %d %s; %d through GetAudited, want 2", found.status, found.body,
			missing.status, missing.body, counter.calls.Load())
	}
	if res := s.do("POST", "/api/v1/residents", alice, "Authorization", writer); res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	lists := []struct {
		path, ids string
		filters   map[string]string
	}{
		{"/api/v1/residents", "1,2", nil},
		{"/api/v1/residents?limit=1", "1", map[string]string{"limit": "1"}},
		{"/api/v1/residents?last_name=nobody", "", map[string]string{"last_name": "nobody"}},
	}
	var listed []response
	for _, l := range lists {
		res := s.do("GET", l.path, "", "Authorization", reader)
		if res.status != 200 {
			t.Fatalf("list %s: %d %s", l.path, res.status, res.body)
		}
		listed = append(listed, res)
	}
	if counter.calls.Load() != 2+int64(len(lists)) {
		t.Fatalf("%d reads through the store's audited reads, want %d", counter.calls.Load(), 2+len(lists))
	}
	trail := s.auditTrail()
	if len(trail) != 4+len(lists) {
		t.Fatalf("%d audit records, want %d", len(trail), 4+len(lists))
	}
	for i, l := range lists {
		rec := trail[4+i]
		if rec.Status != 200 || rec.Operation != "list" || strings.Join(rec.RecordIDs, ",") != l.ids ||
			rec.Count != len(rec.RecordIDs) || rec.DurationMs <= 0 || !maps.Equal(rec.Filters, l.filters) ||
			rec.CorrelationID != listed[i].header.Get("x-correlation-id") || rec.Principal.Subject != "u-readers" {
			t.Fatalf("record of list %s: %+v", l.path, rec)
		}
	}
	for i, want := range []struct {
		res    response
		id     string
		status int
	}{{found, "1", 200}, {missing, "2", 404}} {
		rec := trail[1+i]
		if rec.Status != want.status || rec.Operation != "view" || rec.Route != "/api/v1/residents/{id}" ||
			len(rec.RecordIDs) != 1 || rec.RecordIDs[0] != want.id || rec.Count != 1 || rec.DurationMs <= 0 ||
			rec.CorrelationID != want.res.header.Get("x-correlation-id") || rec.Principal.Subject != "u-readers" ||
			rec.Environment != "development" || rec.Domain != "residents" || rec.Decision != "allow" {
			t.Fatalf("record of view %s: %+v", want.id, rec)
		}
	}

	// Many at once: some take the direct path, the rest share commits.
	const n = 64
	client := &http.Client{}
	statuses := make(map[string]int, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/v1/residents/%d", s.url, 1+i%2), nil)
			req.Header.Set("Authorization", reader)
			res, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			res.Body.Close()
			mu.Lock()
			statuses[res.Header.Get("x-correlation-id")] = res.StatusCode
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	trail = s.auditTrail()
	before := 4 + len(lists)
	if len(trail) != before+n || len(statuses) != n {
		t.Fatalf("%d audit records for %d views (%d answers), want %d", len(trail), n, len(statuses), before+n)
	}
	for _, rec := range trail[before:] {
		status, ok := statuses[rec.CorrelationID]
		if !ok || rec.Status != status {
			t.Fatalf("record %+v: the view was answered %d (%v)", rec, status, ok)
		}
		delete(statuses, rec.CorrelationID) // each request once
	}
	if got := s.verifyTrail(); got != int64(before+n) {
		t.Fatalf("the chain holds %d records, want %d", got, before+n)
	}
	t.Logf("%d of %d reads appended their record with the read", counter.calls.Load(), 2+len(lists)+n)
}
