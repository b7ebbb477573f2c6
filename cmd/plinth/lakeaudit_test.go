package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/sqlite"
)

// plinth lake audit archives the chain and trims the store by retention;
// verify and search then span the archive and the store, and a removed
// archive file breaks the chain.
func TestLakeAuditArchiveAndTrim(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ds := plinthtest.Domains(t)
	st, err := sqlite.Open(ctx, filepath.Join(dir, "plinth-data", "plinth.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-60 * 24 * time.Hour).Truncate(24 * time.Hour).Add(time.Hour)
	var recs []plinth.AuditRecord
	for i := range 40 {
		at := old.Add(time.Duration(i) * time.Second)
		if i >= 30 {
			at = time.Now().Add(-time.Minute)
		}
		recs = append(recs, plinth.AuditRecord{Time: at, CorrelationID: fmt.Sprintf("c%d", i), Environment: "development",
			Domain: "residents", Entity: "residents", Operation: "view", Principal: plinth.Principal{Subject: "clerk"},
			Decision: plinth.DecisionAllow, Status: 200, RecordIDs: []string{fmt.Sprintf("r%d", i)}, Count: 1})
	}
	if _, err := st.AppendAudit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ChainPending(ctx, st); err != nil {
		t.Fatal(err)
	}
	st.Close()

	out, err := run(t, dir, nil, "lake", "audit", "--audit-hot-retention", "720h")
	if err != nil || !strings.Contains(out, "archived 40 audit records") || !strings.Contains(out, "trimmed 30 audit records") {
		t.Fatalf("lake audit: %v\n%s", err, out)
	}
	out, err = run(t, dir, nil, "audit", "verify")
	if err != nil || !strings.Contains(out, "audit chain intact: 40 records, head 40:") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	out, err = run(t, dir, nil, "audit", "search", "--entity-id", "r5", "--json")
	if err != nil || !strings.Contains(out, `"correlationId":"c5"`) {
		t.Fatalf("audit search of an archived record: %v\n%s", err, out)
	}
	// Archiving again adds nothing; the archive is still whole.
	if out, err := run(t, dir, nil, "lake", "audit"); err != nil || !strings.Contains(out, "archived 0 audit records") {
		t.Fatalf("second lake audit: %v\n%s", err, out)
	}

	files, _ := filepath.Glob(filepath.Join(dir, "plinth-data", "lake", "_audit", "*", "*", "*", "*", "*.parquet"))
	if len(files) < 2 {
		t.Fatalf("archive files: %v", files)
	}
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, dir, nil, "audit", "verify")
	if err == nil || !strings.Contains(out, "BROKEN") {
		t.Fatalf("a missing archive file was not noticed: %v\n%s", err, out)
	}
}
