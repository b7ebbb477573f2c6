package http_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/plinth-data/plinth/domains"
	plinthhttp "github.com/plinth-data/plinth/http"
	"github.com/plinth-data/plinth/spec"
)

// countingListener counts the writes to the connections it accepts.
type countingListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, writes: &l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestCoalescingListenerWritesWholeAnswersOnce: through a
// CoalescingListener (as serve listens), a list page larger than
// net/http's buffers and a record each leave in one write of headers and
// body, intact; other answers (a report streamed in parts, a problem) are
// sent as before, and HEAD too.
func TestCoalescingListenerWritesWholeAnswersOnce(t *testing.T) {
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := storeFor(t, ds)
	srv := httptest.NewUnstartedServer(mustServer(t, plinthhttp.Config{Store: st, Domains: ds, Logger: discardLogger(), Unprotected: true}))
	counting := &countingListener{Listener: srv.Listener}
	srv.Listener = plinthhttp.CoalescingListener(counting)
	srv.Config.ConnContext = plinthhttp.ConnContext
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		st.Close()
	})
	a := &api{t: t, url: srv.URL, store: st, domains: ds}
	for range 12 {
		a.createResident(alice)
	}
	client := &http.Client{Transport: &http.Transport{}}
	get := func(method, path string) (*http.Response, []byte, int64) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		before := counting.writes.Load()
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return res, body, counting.writes.Load() - before
	}
	// Pages of every size from one record to twelve: the headers and body
	// fill net/http's 2 KiB and 4 KiB buffers in every way.
	paths := []string{"/api/v1/residents/3"}
	for limit := 1; limit <= 12; limit++ {
		paths = append(paths, "/api/v1/residents?limit="+strconv.Itoa(limit))
	}
	for _, path := range paths {
		res, body, writes := get("GET", path)
		var doc map[string]any
		if res.StatusCode != 200 || json.Unmarshal(body, &doc) != nil || res.ContentLength != int64(len(body)) {
			t.Fatalf("GET %s: %d, length %d, %d bytes: %.200s", path, res.StatusCode, res.ContentLength, len(body), body)
		}
		if path == paths[len(paths)-1] && len(body) < 8<<10 {
			t.Fatalf("GET %s: %d bytes, too few to need several writes", path, len(body))
		}
		if writes != 1 {
			t.Errorf("GET %s: %d writes for %d bytes, want 1", path, writes, len(body))
		}
		head, hbody, _ := get("HEAD", path)
		if head.StatusCode != 200 || len(hbody) != 0 || head.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
			t.Errorf("HEAD %s: %d, %d bytes, Content-Length %q", path, head.StatusCode, len(hbody), head.Header.Get("Content-Length"))
		}
	}
	if res, _, _ := get("GET", "/api/v1/residents/999"); res.StatusCode != 404 {
		t.Errorf("a missing record: %d", res.StatusCode)
	}
	res, body, _ := get("GET", "/api/v1/reports/residents?format=ndjson")
	if res.StatusCode != 200 || len(body) < 8<<10 {
		t.Errorf("a report through the coalescing listener: %d, %d bytes", res.StatusCode, len(body))
	}
}
