package http_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/plinth-data/plinth"
	plinthhttp "github.com/plinth-data/plinth/http"
)

// onPostgres is the prefix of the tests TestOnPostgreSQL runs again.
const onPostgres = "TestOnPostgreSQL/"

// TestOnPostgreSQL runs the black-box tests of views and their audit
// records again on PostgreSQL, whose store appends a view's record with
// its read (plinth.AuditedGetter) while the auditor is nearly idle.
func TestOnPostgreSQL(t *testing.T) {
	for name, fn := range map[string]func(*testing.T){
		"CreateViewUpdateDelete":             TestCreateViewUpdateDelete,
		"UUIDKeyedEntity":                    TestUUIDKeyedEntity,
		"StringKeysAreEscaped":               TestStringKeysAreEscaped,
		"EveryRequestIsAuditedOnce":          TestEveryRequestIsAuditedOnce,
		"NoRouteLeaksRecordsToWhoMayNotRead": TestNoRouteLeaksRecordsToWhoMayNotRead,
		"ViewsAppendTheirRecordWithTheRead":  TestViewsAppendTheirRecordWithTheRead,
	} {
		t.Run(name, fn)
	}
}

// auditedGets counts the views whose record the store appended with the
// read.
type auditedGets struct {
	fullStore
	calls atomic.Int64
}

func (c *auditedGets) GetAudited(ctx context.Context, e *plinth.Entity, id any, rec plinth.AuditRecord) (plinth.Record, plinth.AuditRecord, error) {
	c.calls.Add(1)
	return c.fullStore.(plinth.AuditedGetter).GetAudited(ctx, e, id, rec)
}

// A view on a store that reads and appends in one transaction records
// exactly what a view through the auditor records: one record per request,
// 200 or 404 as answered, whether the request took that path (one at a
// time) or shared a commit with others (many at once).
func TestViewsAppendTheirRecordWithTheRead(t *testing.T) {
	counter := &auditedGets{}
	s := newAuditedAPI(t, true, func(c *plinthhttp.Config) {
		counter.fullStore = c.Store.(fullStore)
		c.Store = counter
	})
	if _, ok := counter.fullStore.(plinth.AuditedGetter); !ok {
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
	trail := s.auditTrail()
	if len(trail) != 3 {
		t.Fatalf("%d audit records, want 3", len(trail))
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
	if len(trail) != 3+n || len(statuses) != n {
		t.Fatalf("%d audit records for %d views (%d answers), want %d", len(trail), n, len(statuses), 3+n)
	}
	for _, rec := range trail[3:] {
		status, ok := statuses[rec.CorrelationID]
		if !ok || rec.Status != status {
			t.Fatalf("record %+v: the view was answered %d (%v)", rec, status, ok)
		}
		delete(statuses, rec.CorrelationID) // each request once
	}
	if n := s.verifyTrail(); n != 3+64 {
		t.Fatalf("the chain holds %d records, want %d", n, 3+64)
	}
	t.Logf("%d of %d views appended their record with the read", counter.calls.Load(), 2+n)
}
