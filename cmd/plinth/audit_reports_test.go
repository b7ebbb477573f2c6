package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/sqlite"
)

// TestAuditSearchListsReportsThatMayIncludeARecord: searching by a record
// id also finds the reports of its entity whose filters it meets, or that
// had none, marked as such.
func TestAuditSearchListsReportsThatMayIncludeARecord(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ds := plinthtest.Domains(t)
	e := plinthtest.Entity(t, ds, "residents")
	st, err := sqlite.Open(ctx, filepath.Join(dir, "plinth-data", "plinth.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	for _, doc := range []map[string]any{{"firstName": "Ada", "lastName": "Lovelace"}, {"firstName": "Ann", "lastName": "Smith"}} {
		data, _ := e.Validate(doc, true)
		if err := st.Write(ctx, func(tx plinth.Tx) error { _, err := tx.Insert(ctx, e, data); return err }); err != nil {
			t.Fatal(err)
		}
	}
	report := func(op string, filters map[string]string) plinth.AuditRecord {
		return plinth.AuditRecord{CorrelationID: op + "-" + filters["last_name"], Environment: "development", Domain: "residents",
			Entity: "residents", Operation: op, Method: "GET", Route: "/api/v1/reports/residents", Filters: filters,
			Principal: plinth.Principal{Subject: "analyst"}, Decision: plinth.DecisionAllow, Status: 200}
	}
	if _, err := st.AppendAudit(ctx, []plinth.AuditRecord{
		report("report", map[string]string{"last_name": "love", "format": "csv"}),
		report("report", map[string]string{"last_name": "smi"}),
		report("report", nil),
		report("report-schema", nil),
		{CorrelationID: "view-1", Environment: "development", Domain: "residents", Entity: "residents", Operation: "view",
			Principal: plinth.Principal{Subject: "clerk"}, Decision: plinth.DecisionAllow, Status: 200, RecordIDs: []string{"1"}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ChainPending(ctx, st); err != nil {
		t.Fatal(err)
	}
	st.Close()
	out, err := run(t, dir, nil, "audit", "search", "--entity-id", "1", "--json")
	if err != nil {
		t.Fatalf("audit search: %v\n%s", err, out)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct {
			CorrelationID    string `json:"correlationId"`
			ReportMayInclude bool   `json:"reportMayInclude"`
		}
		if json.Unmarshal([]byte(line), &r) != nil {
			continue // a log line
		}
		got = append(got, r.CorrelationID+map[bool]string{true: " (report)"}[r.ReportMayInclude])
	}
	if want := "report-love (report),report- (report),view-1"; strings.Join(got, ",") != want {
		t.Fatalf("found %v, want %s\n%s", got, want, out)
	}
}
