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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest"
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
// read back by DuckDB; special-category fields stay out.
func TestLakeInServe(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, dir, "--demo-data=false", "--lake-flush-interval", "300ms")
	ids := writeResidents(t, srv, 25)
	root := filepath.Join(dir, "plinth-data", "lake")
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

func freePort(t *testing.T) string {
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
