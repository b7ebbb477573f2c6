package mssql

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	_ "github.com/microsoft/go-mssqldb"

	"github.com/plinth-data/plinth/legacy"
)

// TestLiveChangeTracking runs against a real SQL Server when
// PLINTH_TEST_SQLSERVER holds its URL (sqlserver://user:pass@host?database=db,
// a user allowed to enable Change Tracking); SQL Server cannot run on the
// project's machines, so without it the test is skipped.
func TestLiveChangeTracking(t *testing.T) {
	url := os.Getenv("PLINTH_TEST_SQLSERVER")
	if url == "" {
		t.Skip("PLINTH_TEST_SQLSERVER is not set: no SQL Server to test against")
	}
	ctx := context.Background()
	src, err := legacy.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	table := fmt.Sprintf("plinth_ct_%d", time.Now().UnixNano()%1e9)
	exec := func(q string) {
		t.Helper()
		if _, err := src.DB.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
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
	if len(b.Changes) != 2 {
		t.Fatalf("changes %+v", b.Changes)
	}
}
