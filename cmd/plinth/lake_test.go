package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/natstest"
	rt "github.com/plinth-data/plinth/report/reporttest"
)

// writeResidents creates n residents through the API and returns their
// ids.
func writeResidents(t *testing.T, srv *server, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		body, _ := json.Marshal(map[string]any{"firstName": fmt.Sprintf("Ada%d", i), "lastName": "Lovelace",
			"ethnicity": "kept out of the lake", "dateOfBirth": "1815-12-10"})
		req, _ := http.NewRequest("POST", srv.base+"/api/v1/residents", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+srv.token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-correlation-id", fmt.Sprintf("lake-test-%d", i))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var rec map[string]any
		err = json.NewDecoder(res.Body).Decode(&rec)
		res.Body.Close()
		if err != nil || res.StatusCode != 201 {
			t.Fatalf("create: %d %v", res.StatusCode, err)
		}
		ids = append(ids, fmt.Sprint(rec["mosaicId"]))
	}
	return ids
}

// lakeRows reads the residents events of a lake folder with DuckDB.
func lakeRows(t *testing.T, root, sql string) rt.Result {
	t.Helper()
	glob := filepath.Join(root, "residents", "residents", "events", "**", "*.parquet")
	if m, _ := filepath.Glob(filepath.Join(root, "residents", "residents", "events", "*", "*", "*", "*", "*.parquet")); len(m) == 0 {
		return rt.Result{}
	}
	src := "read_parquet(" + rt.SQLString(glob) + ", hive_partitioning = true, union_by_name = true)"
	return rt.DuckDB(t, fmt.Sprintf(sql, src))[0]
}

// N writes through the API are N events in the lake that serve lands,
// read back by DuckDB; special-category fields stay out; serve takes the
// daily snapshot when told.
func TestLakeInServe(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, dir, "--demo-data=false", "--lake-flush-interval", "300ms", "--lake-snapshot-daily")
	ids := writeResidents(t, srv, 25)
	root := filepath.Join(dir, "plinth-data", "lake")
	plinthtest.Eventually(t, 30*time.Second, func() bool {
		m, _ := filepath.Glob(filepath.Join(root, "contacts", "contacts", "snapshot", "import_date="+time.Now().UTC().Format("20060102"), "_manifest.json"))
		return len(m) == 1
	}, "serve took no daily snapshot")
	var res rt.Result
	plinthtest.Eventually(t, 30*time.Second, func() bool {
		res = lakeRows(t, root, "SELECT entityId, correlationId, eventType, state_firstName FROM %s ORDER BY sequence")
		return len(res.Rows) >= len(ids)
	}, "the events did not reach the lake")
	srv.stop(t)
	res = lakeRows(t, root, "SELECT entityId, correlationId, eventType, state_firstName FROM %s ORDER BY sequence")
	if len(res.Rows) != len(ids) {
		t.Fatalf("the lake holds %d events, want %d", len(res.Rows), len(ids))
	}
	for i, r := range res.Rows {
		if r[0] != ids[i] || r[1] != fmt.Sprintf("lake-test-%d", i) || r[2] != "ResidentCreatedEvent" || r[3] != fmt.Sprintf("Ada%d", i) {
			t.Fatalf("event %d: %v", i, r)
		}
	}
	cols := lakeRows(t, root, "DESCRIBE SELECT * FROM %s")
	for _, c := range cols.Rows {
		if name := c[0].(string); strings.Contains(name, "ethnicity") || strings.Contains(name, "religion") {
			t.Fatalf("special-category column %s in the lake", name)
		}
	}
	raw := lakeRows(t, root, "SELECT count(*) FROM %s WHERE newData LIKE '%%ethnicity%%'")
	if fmt.Sprint(raw.Rows[0][0]) != "0" {
		t.Fatalf("special-category values in newData: %v", raw.Rows)
	}
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// plinth lake killed with SIGKILL again and again while it lands, then
// run to the end with other batch sizes, lands every event exactly once.
func TestLakeSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	srv := startServe(t, dir, "--demo-data=false", "--lake-serve=false", "--nats-listen", addr)
	ids := writeResidents(t, srv, 300)
	nc, err := nats.Connect("nats://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	plinthtest.Eventually(t, 30*time.Second, func() bool {
		s, err := js.Stream(context.Background(), nats.StreamName("development", "residents"))
		return err == nil && s.CachedInfo().State.Msgs == uint64(len(ids))
	}, "the events were not all published")
	nc.Close()
	srv.stop(t)

	root := filepath.Join(dir, "plinth-data", "lake")
	files := func() int {
		m, _ := filepath.Glob(filepath.Join(root, "residents", "residents", "events", "*", "*", "*", "*", "*.parquet"))
		return len(m)
	}
	// Each run is killed as soon as it has landed a few more files, so
	// the kill falls among its flushes.
	for i := range 5 {
		cmd := exec.Command(binary, "lake", "--flush-events", fmt.Sprint(2+i), "--lake-flush-interval", "50ms", "--log-level", "warn")
		cmd.Dir = dir
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		before := files()
		deadline := time.Now().Add(20 * time.Second)
		for files() < before+3 && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		n := len(lakeRows(t, root, "SELECT id FROM %s").Rows)
		t.Logf("run %d killed: %d events landed", i, n)
		if n >= len(ids) {
			t.Fatalf("run %d landed everything before it was killed; the test needs more events", i)
		}
	}
	if out, err := run(t, dir, nil, "lake", "--drain", "--flush-events", "64", "--log-level", "warn"); err != nil {
		t.Fatalf("plinth lake --drain: %v\n%s", err, out)
	}
	res := lakeRows(t, root, "SELECT entityId, count(*) FROM %s GROUP BY 1")
	if len(res.Rows) != len(ids) {
		t.Fatalf("the lake holds events of %d residents, want %d", len(res.Rows), len(ids))
	}
	for _, r := range res.Rows {
		if fmt.Sprint(r[1]) != "1" {
			t.Fatalf("resident %v has %v events in the lake", r[0], r[1])
		}
	}
	tmp, _ := filepath.Glob(filepath.Join(root, "residents", "residents", "events", "*", "*", "*", "*", "*.tmp"))
	if len(tmp) > 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
}

// serve, with the lake inside it taking the events from its own publisher
// (nats.LiveSource), killed with SIGKILL again and again while it writes
// and lands, lands every event exactly once: after each start it catches
// up from where the last acknowledgement left the durable consumer, then
// lands live again. Each run is killed while writes go on, once some of
// its own events have landed (after a kill the relay's lease must lapse
// first, about 10 s); the lake is then compared with the store's records.
func TestLakeInServeSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--demo-data=false", "--lake-flush-interval", "20ms"}
	root := filepath.Join(dir, "plinth-data", "lake")
	landed := func() int { return len(lakeRows(t, root, "SELECT id FROM %s").Rows) }
	for i := range 3 {
		srv := startServe(t, dir, args...)
		before := landed()
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { // creates until stopped; a kill fails the ones in flight
			defer close(done)
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"firstName": "Ada%d", "lastName": "Lovelace"}`, n)
				req, _ := http.NewRequest("POST", srv.base+"/api/v1/residents", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+srv.token)
				req.Header.Set("Content-Type", "application/json")
				if res, err := http.DefaultClient.Do(req); err == nil {
					res.Body.Close()
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		plinthtest.Eventually(t, 30*time.Second, func() bool { return landed() > before+20 }, "no event of the run landed")
		if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = srv.cmd.Wait()
		close(stop)
		<-done
		t.Logf("run %d killed: %d events landed", i, landed())
	}
	srv := startServe(t, dir, args...)
	report := get(t, srv.base+"/api/v1/reports/residents?format=ndjson", srv.token)
	if report.status != 200 {
		t.Fatalf("report: %d %s", report.status, report.body)
	}
	var stored []string
	for line := range strings.Lines(string(report.body)) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if _, end := rec["@plinth"]; !end { // the report's closing line
			stored = append(stored, fmt.Sprint(rec["mosaicId"]))
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for landed() < len(stored) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	srv.stop(t)
	if n := landed(); n != len(stored) {
		slices.Sort(stored)
		inStream := streamEntityIDs(t, filepath.Join(dir, "plinth-data"))
		t.Fatalf("after 30 s the lake holds %d events, the store %d records, the stream %d events; not in the stream: %v",
			n, len(stored), len(inStream), missing(stored, inStream))
	}
	res := lakeRows(t, root, "SELECT entityId, count(*) FROM %s GROUP BY 1 ORDER BY 1")
	var inLake []string
	for _, r := range res.Rows {
		if fmt.Sprint(r[1]) != "1" {
			t.Fatalf("resident %v has %v events in the lake", r[0], r[1])
		}
		inLake = append(inLake, fmt.Sprint(r[0]))
	}
	slices.Sort(stored)
	if !slices.Equal(inLake, stored) {
		t.Fatalf("the lake holds events of %d residents, the store %d", len(inLake), len(stored))
	}
}

// streamEntityIDs reads the entity ids of the residents stream of the
// embedded NATS server in dataDir.
func streamEntityIDs(t *testing.T, dataDir string) []string {
	t.Helper()
	_, nc := natstest.EmbeddedIn(t, dataDir)
	js, _ := jetstream.New(nc)
	var ids []string
	for _, m := range natstest.ReadStream(t, js, nats.StreamName("development", "residents")) {
		var ev struct{ EntityID string }
		_ = json.Unmarshal(m.Data(), &ev)
		ids = append(ids, ev.EntityID)
	}
	slices.Sort(ids)
	return ids
}

// missing returns what of want (sorted) is not in have (sorted).
func missing(want, have []string) []string {
	var out []string
	for _, w := range want {
		if _, ok := slices.BinarySearch(have, w); !ok {
			out = append(out, w)
		}
	}
	return out
}

// call sends a request to the API with the development token.
func call(t *testing.T, srv *server, method, path string, body any, header map[string]string) (int, map[string]any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, srv.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+srv.token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

// changeResidents updates the first n of ids (a new lastName) and deletes
// the next d; it returns the number of changes.
func changeResidents(t *testing.T, srv *server, ids []string, n, d int) int {
	t.Helper()
	for _, id := range ids[:n] {
		if st, _ := call(t, srv, "PATCH", "/api/v1/residents/"+id, map[string]any{"lastName": "Byron-" + id}, map[string]string{"If-Match": `"1"`}); st != 200 {
			t.Fatalf("update %s: %d", id, st)
		}
	}
	for _, id := range ids[n : n+d] {
		if st, _ := call(t, srv, "DELETE", "/api/v1/residents/"+id, nil, map[string]string{"If-Match": `"1"`}); st != 204 {
			t.Fatalf("delete %s: %d", id, st)
		}
	}
	return n + d
}

// A snapshot plus the events after it give the store's state, through the
// DuckDB definitions plinth lake ddl prints; plinth lake erase takes a
// record out of both and audits it.
func TestLakeSnapshotDDLAndErase(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, dir, "--demo-data=false", "--lake-flush-interval", "200ms")
	ids := writeResidents(t, srv, 20)
	events := len(ids) + changeResidents(t, srv, ids, 4, 2)
	if out, err := run(t, dir, nil, "lake", "snapshot"); err != nil || !strings.Contains(out, "residents/residents: 18 records") {
		t.Fatalf("lake snapshot: %v\n%s", err, out)
	}
	more := writeResidents(t, srv, 5)
	events += len(more) + changeResidents(t, srv, append(ids[6:], more...), 3, 2)
	root := filepath.Join(dir, "plinth-data", "lake")
	plinthtest.Eventually(t, 30*time.Second, func() bool {
		return len(lakeRows(t, root, "SELECT id FROM %s").Rows) >= events
	}, "the events did not reach the lake")

	// The API's records, as the as-of macro must give them.
	var want []string
	for _, id := range append(ids, more...) {
		if st, rec := call(t, srv, "GET", "/api/v1/residents/"+id, nil, nil); st == 200 {
			want = append(want, fmt.Sprintf("%s %v %v", id, rec["lastName"], rec["version"]))
		}
	}
	ddl, err := run(t, dir, nil, "lake", "ddl", "--format", "duckdb")
	if err != nil {
		t.Fatalf("lake ddl: %v\n%s", err, ddl)
	}
	res := rt.DuckDB(t, ddl+"SELECT CAST(\"mosaicId\" AS VARCHAR) || ' ' || \"lastName\" || ' ' || \"version\" FROM residents_residents_as_of(current_date) ORDER BY \"mosaicId\"")
	var got []string
	for _, r := range res[0].Rows {
		got = append(got, r[0].(string))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("state from the lake:\n%s\nthe API's:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	victim := ids[0] // updated, in the snapshot and in events
	out, err := run(t, dir, nil, "lake", "erase", "--domain", "residents", "--entity", "residents", "--entity-id", victim, "--by", "dpo@example.org", "--reason", "SAR-42")
	if err != nil || !strings.Contains(out, "3 rows erased") {
		t.Fatalf("lake erase: %v\n%s", err, out)
	}
	left := lakeRows(t, root, "SELECT count(*) FROM %s WHERE entityId = "+rt.SQLString(victim))
	snap := rt.DuckDB(t, ddl+"SELECT count(*) FROM residents_residents_snapshot WHERE \"mosaicId\" = "+victim)
	if fmt.Sprint(left.Rows[0][0]) != "0" || fmt.Sprint(snap[0].Rows[0][0]) != "0" {
		t.Fatalf("rows of the erased record left: %v events, %v snapshot", left.Rows, snap[0].Rows)
	}
	// serve's chainer links the record into the chain.
	plinthtest.Eventually(t, 20*time.Second, func() bool {
		out, err = run(t, dir, nil, "audit", "search", "--entity-id", victim, "--json")
		return err == nil && strings.Contains(out, "lake-erase") && strings.Contains(out, "SAR-42")
	}, "the erasure is not in the audit trail")
	srv.stop(t)
}
