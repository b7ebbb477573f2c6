package mssql

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/microsoft/go-mssqldb"

	"github.com/plinth-data/plinth/legacy"
)

// live opens the SQL Server PLINTH_TEST_SQLSERVER names, or skips the
// test, and returns it with a function running statements on it.
func live(t *testing.T) (*legacy.Source, func(q string)) {
	t.Helper()
	url := os.Getenv("PLINTH_TEST_SQLSERVER")
	if url == "" {
		t.Skip("PLINTH_TEST_SQLSERVER is not set: no SQL Server to test against")
	}
	src, err := legacy.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src, func(q string) {
		t.Helper()
		if _, err := src.DB.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestLiveChangeTracking runs against a real SQL Server when
// PLINTH_TEST_SQLSERVER holds its URL (sqlserver://user:pass@host?database=db,
// a user allowed to enable Change Tracking); SQL Server cannot run on the
// project's machines, so without it the test is skipped.
func TestLiveChangeTracking(t *testing.T) {
	ctx := context.Background()
	src, exec := live(t)
	table := fmt.Sprintf("plinth_ct_%d", time.Now().UnixNano()%1e9)
	var enabled int
	_ = src.DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM sys.change_tracking_databases WHERE database_id = DB_ID()").Scan(&enabled)
	if enabled == 0 {
		exec("ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 1 DAYS, AUTO_CLEANUP = ON)")
	}
	exec(fmt.Sprintf("CREATE TABLE dbo.%s (id BIGINT PRIMARY KEY, name NVARCHAR(50))", table))
	defer func() { _, _ = src.DB.ExecContext(ctx, "DROP TABLE dbo."+table) }()
	exec(fmt.Sprintf("ALTER TABLE dbo.%s ENABLE CHANGE_TRACKING", table))
	c := NewWith(DB{src.DB}, ChangeTracking, []Table{{Name: table, Key: []string{"id"}}})
	c.Poll = 100 * time.Millisecond
	var from int64
	if err := src.DB.QueryRowContext(ctx, CurrentVersionQuery).Scan(&from); err != nil {
		t.Fatal(err)
	}
	exec(fmt.Sprintf("INSERT INTO dbo.%s VALUES (1, 'a'), (2, 'b')", table))
	exec(fmt.Sprintf("UPDATE dbo.%s SET name = 'c' WHERE id = 1", table))
	exec(fmt.Sprintf("DELETE FROM dbo.%s WHERE id = 2", table))
	s, _ := c.Open(ctx, fmt.Sprint(from))
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := s.Next(cctx)
	if err != nil {
		t.Fatal(err)
	}
	// Change Tracking keeps the net change per row: 1 inserted, 2 gone.
	if to, _ := strconv.ParseInt(b.Position, 10, 64); len(b.Changes) != 2 || to <= from {
		t.Fatalf("batch %+v after version %d", b, from)
	}
	for _, ch := range b.Changes {
		if ch.Table != table || !(ch.After != nil && ch.After["id"] == int64(1) || ch.Before != nil && ch.After == nil && ch.Before["id"] == int64(2)) {
			t.Errorf("change %+v: want row 1 written and row 2 deleted", ch)
		}
	}
	// The retention still covers the position an initial load pinned.
	if held, err := c.Holds(ctx, fmt.Sprint(from)); err != nil || !held {
		t.Errorf("Holds(%d) = %v, %v", from, held, err)
	}
}

// TestLiveCDC reads CDC change tables of a real SQL Server when
// PLINTH_TEST_SQLSERVER is set and the server allows it: enabling CDC
// needs sysadmin, and its capture job a running SQL Server Agent (else the
// test is skipped, saying which).
func TestLiveCDC(t *testing.T) {
	ctx := context.Background()
	src, exec := live(t)
	var on bool
	if err := src.DB.QueryRowContext(ctx, "SELECT is_cdc_enabled FROM sys.databases WHERE database_id = DB_ID()").Scan(&on); err != nil {
		t.Fatal(err)
	}
	if !on {
		if _, err := src.DB.ExecContext(ctx, "EXEC sys.sp_cdc_enable_db"); err != nil {
			t.Skipf("CDC cannot be enabled on this database (it needs sysadmin): %v", err)
		}
	}
	var agent string
	_ = src.DB.QueryRowContext(ctx, "SELECT status_desc FROM sys.dm_server_services WHERE servicename LIKE 'SQL Server Agent%'").Scan(&agent)
	if agent != "Running" {
		t.Skipf("SQL Server Agent is %q, not Running: CDC's capture job cannot run", agent)
	}
	table := fmt.Sprintf("plinth_cdc_%d", time.Now().UnixNano()%1e9)
	exec(fmt.Sprintf("CREATE TABLE dbo.%s (id BIGINT PRIMARY KEY, name NVARCHAR(50))", table))
	defer func() { _, _ = src.DB.ExecContext(ctx, "DROP TABLE dbo."+table) }()
	exec(fmt.Sprintf("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'%s', @role_name = NULL", table))
	defer func() {
		_, _ = src.DB.ExecContext(ctx, fmt.Sprintf("EXEC sys.sp_cdc_disable_table @source_schema = N'dbo', @source_name = N'%s', @capture_instance = N'dbo_%s'", table, table))
	}()
	c := NewWith(DB{src.DB}, CDC, []Table{{Name: table, Key: []string{"id"}, Instance: "dbo_" + table, Columns: []string{"id", "name"}}})
	c.Poll = 200 * time.Millisecond
	// A first row, captured, gives the position to read after.
	exec(fmt.Sprintf("INSERT INTO dbo.%s VALUES (0, 'primer')", table))
	var from string
	deadline := time.Now().Add(90 * time.Second)
	for from == "" {
		rows, err := DB{src.DB}.Rows(ctx, fmt.Sprintf("SELECT MAX(__$start_lsn) AS v FROM cdc.dbo_%s_CT", table))
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := rows[0]["v"].([]byte); len(v) > 0 {
			from = hex.EncodeToString(v)
		} else if time.Now().After(deadline) {
			t.Fatal("CDC's capture job did not capture the first row in 90 s")
		} else {
			time.Sleep(500 * time.Millisecond)
		}
	}
	exec(fmt.Sprintf("INSERT INTO dbo.%s VALUES (1, 'a'), (2, 'b')", table))
	exec(fmt.Sprintf("UPDATE dbo.%s SET name = 'c' WHERE id = 1", table))
	exec(fmt.Sprintf("DELETE FROM dbo.%s WHERE id = 2", table))
	s, _ := c.Open(ctx, from)
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var got []string
	for len(got) < 4 {
		b, err := s.Next(cctx)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		for _, ch := range b.Changes {
			if ch.After != nil {
				got = append(got, fmt.Sprintf("write %v %v", ch.After["id"], ch.After["name"]))
			} else {
				got = append(got, fmt.Sprintf("delete %v", ch.Before["id"]))
			}
		}
	}
	// In commit order; an update's before image is skipped.
	if want := "write 1 a, write 2 b, write 1 c, delete 2"; strings.Join(got, ", ") != want {
		t.Fatalf("changes %q, want %q", strings.Join(got, ", "), want)
	}
	if held, err := c.Holds(ctx, from); err != nil || !held {
		t.Errorf("Holds(%s) = %v, %v", from, held, err)
	}
}
