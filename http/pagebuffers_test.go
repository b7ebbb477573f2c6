package http_test

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"testing"
)

// TestConcurrentListsKeepTheirPages: list pages written at the same time
// are each answered as when written alone. The records' JSON of a page
// and the answer share buffers kept from one request to the next
// (plinth.PageBuffer), so one handed back too early would show here as
// another request's records.
func TestConcurrentListsKeepTheirPages(t *testing.T) {
	a := newAPI(t, nil)
	e := a.entity("residents")
	docs := make([]map[string]any, 120)
	for i := range docs {
		docs[i] = map[string]any{"firstName": fmt.Sprintf("First%03d", i), "lastName": fmt.Sprintf("Last%d", i%7),
			"otherNames": []any{fmt.Sprintf("Other%d", i)}}
	}
	if err := a.store.BulkInsert(context.Background(), e, docs); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, limit := range []int{1, 5, 20, 50, 100} {
		paths = append(paths, fmt.Sprintf("/api/v1/residents?limit=%d", limit))
	}
	for i := range 7 {
		paths = append(paths, fmt.Sprintf("/api/v1/residents?last_name=Last%d&limit=%d", i, 3+2*i))
	}
	want := map[string]string{}
	for _, p := range paths {
		res := a.do("GET", p, "")
		if res.status != 200 {
			t.Fatalf("%s: %d %s", p, res.status, res.body)
		}
		checkPage(t, p, res.json(t))
		want[p] = string(res.body)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				p := paths[(w*5+i)%len(paths)]
				res := a.do("GET", p, "")
				if got := string(res.body); res.status != 200 || got != want[p] {
					select {
					case errs <- fmt.Sprintf("%s: %d, %d bytes, want %d bytes as when alone", p, res.status, len(got), len(want[p])):
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}

// checkPage checks a page answered alone: as many records as the limit
// asks, in key order, each the one its key names and matching the filter.
func checkPage(t *testing.T, path string, body map[string]any) {
	t.Helper()
	u, _ := url.Parse(path)
	limit, _ := strconv.Atoi(u.Query().Get("limit"))
	recs, _ := body["residents"].([]any)
	if len(recs) != limit {
		t.Fatalf("%s: %d records", path, len(recs))
	}
	last := 0
	for _, r := range recs {
		rec := r.(map[string]any)
		id, _ := strconv.Atoi(fmt.Sprint(rec["mosaicId"]))
		i := id - 1
		if id <= last || rec["firstName"] != fmt.Sprintf("First%03d", i) ||
			fmt.Sprint(rec["otherNames"]) != fmt.Sprintf("[Other%d]", i) {
			t.Fatalf("%s: after id %d, %v", path, last, rec)
		}
		if ln := u.Query().Get("last_name"); ln != "" && rec["lastName"] != ln {
			t.Fatalf("%s: %v", path, rec)
		}
		last = id
	}
}
