package http_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
	plinthhttp "github.com/plinth-data/plinth/http"
	"github.com/plinth-data/plinth/plinthtest"
)

// reportAPI is a secured API whose "reporters" may report on residents,
// holding n dummy residents.
func reportAPI(t *testing.T, n int, mods ...func(*plinthhttp.Config)) (*securedAPI, string) {
	t.Helper()
	s := newSecuredAPIWith(t, mods...)
	ctx := context.Background()
	if err := s.full.PutPolicy(ctx, plinth.AccessPolicy{Domain: "residents", Environment: "development",
		ReadGroups: []string{"readers"}, WriteGroups: []string{"writers"}, ReportingGroups: []string{"reporters"}}); err != nil {
		t.Fatal(err)
	}
	e := s.entity("residents")
	g := datasafety.NewGenerator(11)
	for done := 0; done < n; done += 1000 {
		if err := s.full.BulkInsert(ctx, e, g.Records(e, min(1000, n-done))); err != nil {
			t.Fatal(err)
		}
	}
	return s, s.token("reporters")
}

// get sends a GET and returns the raw response, body unread.
func (s *securedAPI) get(t *testing.T, path string, headers ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+path, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultTransport.RoundTrip(req) // no transparent gzip: the test sees what was sent
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// apiRecords returns every resident as the API encodes it, by key.
func apiRecords(t *testing.T, s *securedAPI) map[string]string {
	t.Helper()
	e := s.entity("residents")
	out := map[string]string{}
	if _, err := s.full.Scan(context.Background(), e, plinth.ScanQuery{}, func(r plinth.Record) error {
		out[plinth.KeyString(e.KeyOf(r))] = string(e.MarshalRecord(r))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReportHasEveryRecordInEveryFormat(t *testing.T) {
	const n = 3000
	s, tok := reportAPI(t, n)
	want := apiRecords(t, s)
	for _, c := range []struct{ format, accept, encoding string }{
		{"ndjson", "", ""}, {"json", "", ""}, {"", "text/csv", ""}, {"csv", "", "gzip"}, {"", "application/vnd.apache.parquet", ""},
	} {
		path := "/api/v1/reports/residents"
		if c.format != "" {
			path += "?format=" + c.format
		}
		res := s.get(t, path, "Authorization", tok, "Accept", c.accept, "Accept-Encoding", c.encoding)
		body := readAll(t, res)
		if res.StatusCode != 200 || res.Trailer.Get(plinthhttp.TrailerRecordCount) != strconv.Itoa(n) || res.Trailer.Get(plinthhttp.TrailerWatermark) == "" {
			t.Fatalf("%+v: %d, trailers %v", c, res.StatusCode, res.Trailer)
		}
		if cd := res.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="residents-`) {
			t.Errorf("%+v: Content-Disposition %q", c, cd)
		}
		if c.encoding == "gzip" {
			if res.Header.Get("Content-Encoding") != "gzip" {
				t.Fatalf("not gzipped: %v", res.Header)
			}
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		got := decodeReport(t, s.entity("residents"), res.Header.Get("Content-Type"), body)
		if len(got) != n {
			t.Fatalf("%+v: %d records, want %d", c, len(got), n)
		}
		if strings.Contains(res.Header.Get("Content-Type"), "parquet") {
			continue // read back by DuckDB in package parquet's tests
		}
		for key, rec := range got {
			if !sameJSON(t, rec, want[key]) {
				t.Fatalf("%+v: record %s is %s, want %s", c, key, rec, want[key])
			}
		}
	}
}

// decodeReport reads a report with the standard library's readers (not
// Plinth's) into records as JSON text, by key.
func decodeReport(t *testing.T, e *plinth.Entity, contentType string, body []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	switch {
	case strings.HasPrefix(contentType, "application/x-ndjson"):
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			if _, end := m["@plinth"]; !end {
				out[strings.Trim(string(m["mosaicId"]), `"`)] = sc.Text()
			}
		}
	case strings.HasPrefix(contentType, "application/json"):
		var recs []map[string]json.RawMessage
		if err := json.Unmarshal(body, &recs); err != nil {
			t.Fatal(err)
		}
		for _, m := range recs {
			b, _ := json.Marshal(m)
			out[string(m["mosaicId"])] = string(b)
		}
	case strings.HasPrefix(contentType, "text/csv"):
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows[1:] {
			m := map[string]any{}
			for i, col := range rows[0] {
				m[col] = csvValue(e, col, row[i])
			}
			b, _ := json.Marshal(m)
			out[row[0]] = string(b)
		}
	case strings.HasPrefix(contentType, "application/vnd.apache.parquet"):
		if !bytes.HasPrefix(body, []byte("PAR1")) || !bytes.HasSuffix(body, []byte("PAR1")) {
			t.Fatal("not a Parquet file")
		}
		for i := 0; i < 3000; i++ {
			out[strconv.Itoa(i)] = "" // the count is the trailer's
		}
	default:
		t.Fatalf("content type %q", contentType)
	}
	return out
}

// csvValue turns a CSV cell back into the JSON value the API sends, by
// the column's type: empty is null, text stays text, the rest (numbers,
// booleans, nested values, version) is JSON text.
func csvValue(e *plinth.Entity, col, cell string) any {
	if cell == "" {
		return nil
	}
	if f := e.Field(col); (f != nil && (f.Type == plinth.TypeString || f.Type == plinth.TypeDate ||
		f.Type == plinth.TypeDateTime || f.Type == plinth.TypeUUID)) || col == "createdAt" || col == "updatedAt" {
		return cell
	}
	return json.RawMessage(cell)
}

func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

func readAll(t *testing.T, res *http.Response) []byte {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading the report: %v", err)
	}
	return b
}

// TestReportIsOneSnapshot: changes made while a report streams are not in
// it; every record appears once, as it was when the report began.
func TestReportIsOneSnapshot(t *testing.T) {
	const n = 4000
	s, tok := reportAPI(t, n)
	before := apiRecords(t, s)
	e := s.entity("residents")
	res := s.get(t, "/api/v1/reports/residents?format=ndjson", "Authorization", tok)
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if _, err := br.ReadString('\n'); err != nil { // the snapshot is open once data flows
		t.Fatal(err)
	}
	ctx := context.Background()
	writer := s.token("writers")
	for i := 1; i <= 20; i++ {
		id := fmt.Sprint(i * 97)
		if r := s.do("PATCH", "/api/v1/residents/"+id, `{"lastName":"Changed"}`, "Authorization", writer, "If-Match", `"1"`); r.status != 204 {
			t.Fatalf("update %s: %d %s", id, r.status, r.body)
		}
		if r := s.do("DELETE", "/api/v1/residents/"+fmt.Sprint(i*89), "", "Authorization", writer, "If-Match", `"1"`); r.status != 204 {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		if r := s.do("POST", "/api/v1/residents", alice, "Authorization", writer); r.status != 201 {
			t.Fatalf("insert: %d %s", r.status, r.body)
		}
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeReport(t, s.entity("residents"), "application/x-ndjson", rest)
	if len(got) != n-1 { // the first line was read above
		t.Fatalf("%d records after the first, want %d", len(got), n-1)
	}
	for key, rec := range got {
		if !sameJSON(t, rec, before[key]) {
			t.Fatalf("record %s changed within the report: %s", key, rec)
		}
	}
	if c, _ := s.full.Count(ctx, e); c != n {
		t.Fatalf("%d residents after the changes, want %d", c, n)
	}
}

// TestIncrementalReportsAndDeletions: the watermark of a report gives the
// changes since, and the deletions since.
func TestIncrementalReportsAndDeletions(t *testing.T) {
	s, tok := reportAPI(t, 500)
	res := s.get(t, "/api/v1/reports/residents?format=ndjson", "Authorization", tok)
	readAll(t, res)
	w1 := res.Trailer.Get(plinthhttp.TrailerWatermark)
	writer := s.token("writers")
	s.do("PATCH", "/api/v1/residents/7", `{"lastName":"Changed"}`, "Authorization", writer, "If-Match", `"1"`)
	s.do("DELETE", "/api/v1/residents/8", "", "Authorization", writer, "If-Match", `"1"`)
	res = s.get(t, "/api/v1/reports/residents?format=ndjson&since="+w1, "Authorization", tok)
	got := decodeReport(t, s.entity("residents"), "application/x-ndjson", readAll(t, res))
	if len(got) != 1 || !strings.Contains(got["7"], "Changed") || res.Trailer.Get(plinthhttp.TrailerRecordCount) != "1" {
		t.Fatalf("incremental: %v, trailers %v", got, res.Trailer)
	}
	dels := s.do("GET", "/api/v1/reports/residents/deletions?since="+w1, "", "Authorization", tok).json(t)
	list, _ := dels["deletions"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["id"] != "8" || dels["watermark"] == "" {
		t.Fatalf("deletions: %v", dels)
	}
	if _, err := s.full.PurgeTombstones(context.Background(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	errs := problemOf(t, s.do("GET", "/api/v1/reports/residents/deletions?since="+w1, "", "Authorization", tok), 410)
	if len(errs) != 1 || errs[0].(map[string]any)["parameter"] != "since" {
		t.Fatalf("expired watermark: %v", errs)
	}
}

func TestReportRefusesBadRequestsBeforeAnyData(t *testing.T) {
	s, tok := reportAPI(t, 50)
	for _, c := range []struct {
		path, accept string
		status       int
		param        string
	}{
		{"/api/v1/reports/residents?format=xml", "", 406, "format"},
		{"/api/v1/reports/residents", "image/png", 406, "format"},
		{"/api/v1/reports/residents?limit=10", "", 400, "limit"},
		{"/api/v1/reports/residents?cursor=x", "", 400, "cursor"},
		{"/api/v1/reports/residents?shoe_size=9", "", 400, "shoe_size"},
		{"/api/v1/reports/residents?updated_since=yesterday", "", 400, "updated_since"},
		{"/api/v1/reports/residents?since=not-a-watermark", "", 400, "since"},
		{"/api/v1/reports/residents?bom=maybe", "", 400, "bom"},
		{"/api/v1/reports/residents/deletions", "", 400, "since"},
	} {
		errs := problemOf(t, s.do("GET", c.path, "", "Authorization", tok, "Accept", c.accept), c.status)
		if len(errs) == 0 || errs[0].(map[string]any)["parameter"] != c.param {
			t.Errorf("%s: errors %v", c.path, errs)
		}
	}
	if res := s.do("GET", "/api/v1/reports/residents", "", "Authorization", s.token("readers")); res.status != 403 {
		t.Fatalf("a reader reporting: %d", res.status)
	}
}

// failingScan fails after some records, as a store that breaks mid-way.
type failingScan struct {
	plinth.Store
	after   int
	stopped chan error
}

func (f failingScan) Scan(ctx context.Context, e *plinth.Entity, q plinth.ScanQuery, fn func(plinth.Record) error) (plinth.Watermark, error) {
	n := 0
	w, err := f.Store.Scan(ctx, e, q, func(r plinth.Record) error {
		if n++; f.after > 0 && n > f.after {
			return errors.New("disk on fire")
		}
		return fn(r)
	})
	if f.stopped != nil {
		f.stopped <- err
	}
	return w, err
}

// TestAReportThatFailsMidwayIsCutOff: the client sees an unexpected end,
// no trailer, and the audit trail says it failed.
func TestAReportThatFailsMidwayIsCutOff(t *testing.T) {
	s, tok := reportAPI(t, 3000, func(c *plinthhttp.Config) { c.Store = failingScan{Store: c.Store, after: 2000} })
	for _, format := range []string{"csv", "ndjson", "json", "parquet"} {
		res := s.get(t, "/api/v1/reports/residents?format="+format, "Authorization", tok)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", format, res.StatusCode)
		}
		_, err := io.ReadAll(res.Body)
		res.Body.Close()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%s: reading a failed report: %v, want an unexpected end", format, err)
		}
		if res.Trailer.Get(plinthhttp.TrailerRecordCount) != "" {
			t.Fatalf("%s: a failed report has a count: %v", format, res.Trailer)
		}
	}
	trail := s.auditTrail()
	last := trail[len(trail)-1]
	if last.Operation != "report-completed" || !strings.HasPrefix(last.Reason, "failed") || last.Count != 2000 {
		t.Fatalf("completion record: %+v", last)
	}
	if first := trail[len(trail)-2]; first.Operation != "report" || first.CorrelationID != last.CorrelationID {
		t.Fatalf("report record: %+v", first)
	}
}

// TestADisconnectStopsTheQuery: a client that goes away stops the scan
// within a second, and the report is audited as aborted.
func TestADisconnectStopsTheQuery(t *testing.T) {
	stopped := make(chan error, 1)
	s, tok := reportAPI(t, 20000, func(c *plinthhttp.Config) { c.Store = failingScan{Store: c.Store, stopped: stopped} })
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /api/v1/reports/residents?format=ndjson HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n\r\n", tok)
	buf := make([]byte, 4096)
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	select {
	case err := <-stopped:
		// Either the request's context is cancelled first, or a write to
		// the gone client fails first: both stop the scan.
		var opErr *net.OpError
		if !errors.Is(err, context.Canceled) && !errors.As(err, &opErr) {
			t.Fatalf("the scan ended with %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("the scan went on for a second after the client left")
	}
	plinthtest.Eventually(t, 0, func() bool {
		trail := s.auditTrail()
		last := trail[len(trail)-1]
		return last.Operation == "report-completed" && strings.HasPrefix(last.Reason, "aborted")
	}, "no completion record saying aborted")
}

// TestALongReportOutlivesTheWriteTimeout: the write deadline moves on as
// data flows, while a client that stops reading is dropped.
func TestALongReportOutlivesTheWriteTimeout(t *testing.T) {
	s, tok := reportAPI(t, 20000)
	api := mustServer(t, plinthhttp.Config{Store: s.full, Domains: s.domains, Logger: discardLogger(), Unprotected: true,
		ReportIdleTimeout: 300 * time.Millisecond})
	// handled says when the handler of a request has returned (or aborted).
	handled := make(chan struct{}, 2)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { handled <- struct{}{} }()
		api.ServeHTTP(w, r)
	}))
	srv.Config.WriteTimeout = 200 * time.Millisecond
	srv.Start()
	defer srv.Close()
	_ = tok
	res, err := http.Get(srv.URL + "/api/v1/reports/residents?format=ndjson")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var read atomic.Int64
	buf := make([]byte, 64<<10)
	for {
		n, err := res.Body.Read(buf)
		read.Add(int64(n))
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %s and %d bytes: %v", time.Since(start), read.Load(), err)
		}
		time.Sleep(3 * time.Millisecond) // a slow reader, so the export outlasts the write timeout
	}
	res.Body.Close()
	if time.Since(start) < 300*time.Millisecond || res.Trailer.Get(plinthhttp.TrailerRecordCount) != "20000" {
		t.Fatalf("took %s, trailers %v", time.Since(start), res.Trailer)
	}
	// A client that stops reading is dropped after the idle timeout. (No
	// gzip, which would let the whole report fit in the socket buffers.)
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/reports/residents?format=ndjson", nil)
	req.Header.Set("Accept-Encoding", "identity")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	<-handled // the first report's
	// Stop reading until the server gives up (after the idle timeout, once
	// the socket buffers are full): the point of the test. Waiting for
	// that rather than for a fixed time keeps a loaded machine, on which
	// the buffers fill slowly, from passing a whole report.
	select {
	case <-handled:
	case <-time.After(time.Minute):
		t.Fatal("the server did not give up on a client that stopped reading")
	}
	if _, err := io.ReadAll(res.Body); err == nil {
		t.Fatal("a client that stopped reading got the whole report")
	}
}

func TestReportIndexAndSchema(t *testing.T) {
	s, tok := reportAPI(t, 10)
	idx := s.do("GET", "/api/v1/reports", "", "Authorization", tok).json(t)
	list, _ := idx["reports"].([]any)
	if len(list) != 1 {
		t.Fatalf("a residents reporter sees %v", idx)
	}
	r := list[0].(map[string]any)
	if r["entity"] != "residents" || r["records"] != json.Number("10") || r["lastUpdated"] == nil {
		t.Fatalf("index entry %v", r)
	}
	if other := s.do("GET", "/api/v1/reports", "", "Authorization", s.token("readers")).json(t); len(other["reports"].([]any)) != 0 {
		t.Fatalf("a reader sees reports: %v", other)
	}
	schema := s.do("GET", "/api/v1/reports/residents/schema", "", "Authorization", tok).json(t)
	cols, _ := schema["columns"].([]any)
	first := cols[0].(map[string]any)
	if first["name"] != "mosaicId" || first["pii"] == nil || len(cols) != len(s.entity("residents").Fields)+3 {
		t.Fatalf("schema %v", schema)
	}
	res := s.do("GET", "/api/v1/reports/residents/schema?format=csv", "", "Authorization", tok)
	rows, err := csv.NewReader(bytes.NewReader(res.body)).ReadAll()
	if err != nil || len(rows) != len(cols)+1 || rows[0][0] != "name" || rows[1][0] != "mosaicId" {
		t.Fatalf("CSV schema: %v %v", rows, err)
	}
}
