package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plinth-data/plinth/legacy"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/mariadbtest"
	"github.com/plinth-data/plinth/sqlite"
)

// TestCDCSurvivesSIGKILL: plinth migrate cdc, killed with SIGKILL while a
// stream of source updates runs, resumes from its stored position when
// started again; in the end every updated person has exactly one update
// event (nothing lost, nothing doubled) and the target equals the source.
func TestCDCSurvivesSIGKILL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv := mariadbtest.StartServer(t)
	if out, err := run(t, dir, nil, "legacy", "fixture", "--rows", "400", "--into", srv.URL); err != nil {
		t.Fatalf("fixture: %v\n%s", err, out)
	}
	src, err := legacy.Open(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.DB.Exec("UPDATE dm_persons SET marked_for_deletion = 'N'"); err != nil {
		t.Fatal(err)
	}
	mustFail(t, dir, []string{"--binlog-position must be snapshot or before"}, "migrate", "cdc", "--mapping", "residents.case.mapping.yaml",
		"--source", srv.URL, "--store", "sqlite://bad.db", "--binlog-position", "bogus")
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	metrics := l.Addr().String()
	l.Close()
	start := func() *exec.Cmd {
		// The MySQL method of pinning the snapshot's position (the
		// MariaDB one is the legacy package tests' default).
		cmd := exec.Command(binary, "migrate", "cdc", "--mapping", "residents.case.mapping.yaml", "--source", srv.URL,
			"--store", "sqlite://cdc.db", "--metrics-listen", metrics, "--binlog-position", "before")
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	proc := start()
	defer func() { _ = proc.Process.Kill(); _ = proc.Wait() }()
	status := func() legacy.CDCStatus {
		out, _ := run(t, dir, nil, "migrate", "status", "--json", "--mapping", "residents.case.mapping.yaml", "--store", "sqlite://cdc.db")
		var got struct {
			Modes struct{ CDC legacy.CDCStatus }
		}
		_ = json.Unmarshal([]byte(out), &got)
		return got.Modes.CDC
	}
	plinthtest.Eventually(t, 30*time.Second, func() bool { return status().SnapshotDone }, "the initial load did not finish")

	// A stream of updates, one per person; SIGKILL half way.
	const updates = 200
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= updates; i++ {
			_, _ = src.DB.Exec(fmt.Sprintf("UPDATE dm_persons SET last_name = 'Killtest%d' WHERE person_id = %d", i, i))
			time.Sleep(2 * time.Millisecond)
		}
	}()
	plinthtest.Eventually(t, 20*time.Second, func() bool { return status().Applied > 20 }, "nothing applied before the kill")
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()
	wg.Wait()
	proc = start()

	st, err := sqlite.Open(ctx, filepath.Join(dir, "cdc.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ds := plinthtest.Domains(t)
	m, err := loadMapping("residents.case.mapping.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Resolve(ds); err != nil {
		t.Fatal(err)
	}
	if err := legacy.Check(ctx, src, m); err != nil {
		t.Fatal(err)
	}
	var rep legacy.Report
	plinthtest.Eventually(t, 30*time.Second, func() bool {
		rep, err = legacy.Compare(ctx, src, st, m, nil)
		return err == nil && rep.Clean()
	}, "after the restart the target differs: %v", plinthtest.Last(&rep))

	// The backlog, looked up every 5 s, is kept for migrate status.
	plinthtest.Eventually(t, 20*time.Second, func() bool {
		out, _ := run(t, dir, nil, "migrate", "status", "--json", "--mapping", "residents.case.mapping.yaml", "--store", "sqlite://cdc.db")
		var got struct{ Backlog *legacy.CDCBacklog }
		_ = json.Unmarshal([]byte(out), &got)
		return got.Backlog != nil && got.Backlog.Bytes == 0 && got.Backlog.Pending == 0
	}, "migrate status shows no caught-up backlog")
	if out, _ := run(t, dir, nil, "migrate", "status", "--mapping", "residents.case.mapping.yaml", "--store", "sqlite://cdc.db"); !strings.Contains(out, "behind 0 bytes of the source's change log, 0 changes received and not yet applied") {
		t.Errorf("migrate status: %s", out)
	}
	pending, err := st.PendingEvents(ctx, 10000)
	if err != nil {
		t.Fatal(err)
	}
	perPerson := map[string]int{}
	for _, p := range pending {
		var ev struct{ EventType, EntityID string }
		_ = json.Unmarshal(p.Payload, &ev)
		if ev.EventType != "ResidentUpdatedEvent" {
			t.Errorf("unexpected %s %s", ev.EventType, ev.EntityID)
		}
		perPerson[ev.EntityID]++
	}
	for i := 1; i <= updates; i++ {
		if n := perPerson[fmt.Sprint(i)]; n != 1 {
			t.Errorf("person %d: %d update events, want 1", i, n)
		}
	}
	if len(perPerson) != updates {
		t.Errorf("%d persons have events, want %d", len(perPerson), updates)
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "plinth_migrate_cdc_lag_seconds{") || !strings.Contains(string(body), "plinth_migrate_cdc_behind_bytes{") {
		t.Errorf("metrics: %s", body)
	}
}
