package postgres

import (
	"context"
	"encoding/csv"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	auditpkg "github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
)

// TestSupportProductionRefusedWithoutPgaudit: on the shared test server,
// which has no pgaudit loaded and no CSV log (the test only reads its
// settings and never changes them), a production grant is refused, saying
// what is missing and the postgresql.conf lines that fix it; nothing is
// granted.
func TestSupportProductionRefusedWithoutPgaudit(t *testing.T) {
	ctx := context.Background()
	s, _ := supportStore(t)
	a, err := s.statementAuditState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a.loaded && listHas(a.destination, "csvlog") && a.collector == "on" {
		t.Skip("the shared test server already audits statements (pgaudit loaded, csvlog): no refusal to see")
	}
	user := supportEmail(t)
	_, err = s.GrantSupport(ctx, SupportRequest{User: user, Reason: "INC-9: production without pgaudit", TTL: time.Hour,
		Domain: "residents", GrantedBy: "admin@example.org", Environment: plinth.EnvProduction})
	var ae *StatementAuditError
	if !errors.As(err, &ae) {
		t.Fatalf("production grant without pgaudit: %v, want a StatementAuditError", err)
	}
	msg := err.Error()
	t.Logf("refusal:\n%s", msg)
	want := []string{"refusing to grant support access in production", "postgresql.conf", "restart PostgreSQL"}
	if !a.loaded {
		want = append(want, "shared_preload_libraries = '", "pgaudit")
	}
	if !listHas(a.destination, "csvlog") {
		want = append(want, "log_destination = '", "csvlog'")
	}
	if a.collector != "on" {
		want = append(want, "logging_collector = on")
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("the refusal does not say %q", w)
		}
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM plinth.support_grants`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d grants recorded after the refusal, %v", n, err)
	}
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname LIKE $1`, supportRoleName(user)[:len(supportRoleName(user))-6]+"%").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d roles made after the refusal, %v", n, err)
	}

	// Outside production the same grant goes ahead, warning.
	g := grantFor(t, s, SupportRequest{User: user, Reason: "INC-9", TTL: time.Hour, Domain: "residents",
		GrantedBy: "admin@example.org", Environment: plinth.EnvStaging})
	if g.StatementLogging || !strings.Contains(g.Note, "NOT") {
		t.Errorf("staging grant without pgaudit: logging %t, note %q", g.StatementLogging, g.Note)
	}
}

func TestSupportAuditProblems(t *testing.T) {
	ok := auditState{available: true, loaded: true, extension: true, preload: "pgaudit", destination: "stderr,csvlog",
		collector: "on", minMessages: "warning", database: "plinth", settingsVisible: true}
	if p := ok.problems(false); p != nil {
		t.Fatalf("all set: %v", p)
	}
	bad := auditState{available: true, preload: "pg_stat_statements", destination: "stderr", collector: "off",
		minMessages: "warning", database: "plinth", settingsVisible: true}
	p := bad.problems(false)
	if p == nil {
		t.Fatal("nothing set: no problem")
	}
	msg := p.Error()
	for _, w := range []string{"shared_preload_libraries = 'pg_stat_statements,pgaudit'", "log_destination = 'stderr,csvlog'",
		"logging_collector = on", "CREATE EXTENSION IF NOT EXISTS pgaudit;", "database plinth"} {
		if !strings.Contains(msg, w) {
			t.Errorf("refusal %q does not say %q", msg, w)
		}
	}
	// A superuser creates the extension itself.
	if p := bad.problems(true); p == nil || slices.Contains(p.SQL, "CREATE EXTENSION IF NOT EXISTS pgaudit;") {
		t.Errorf("superuser: %+v", p)
	}
	hidden := auditState{database: "plinth"}
	if p := hidden.problems(true); p == nil || !strings.Contains(p.Error(), "pg_read_all_settings") {
		t.Errorf("settings not readable: %v", p)
	}
}

func TestSupportStatementParse(t *testing.T) {
	grants := map[string]supportGrantRef{"support_jo_abcdef": {user: "jo@example.org", domain: "residents", environment: "production", correlationID: "c-1"}}
	line := `2026-11-30 12:49:16.088 UTC,"support_jo_abcdef","plinth",12135,"127.0.0.1:45890",6b0d70cc.2f67,2,"SELECT",2026-11-30 12:49:16 UTC,3/14,0,LOG,00000,"AUDIT: SESSION,2,1,READ,SELECT,TABLE,residents.residents,""select 'a,""""b', x
from residents where last_name = $1"",Smith,1",,,,,,,,,"psql","client backend",,0` + "\n"
	dir := t.TempDir()
	path := filepath.Join(dir, "postgresql.csv")
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	recs := readCSV(t, path)
	r, ok, old := supportStatement(recs[0], grants, time.Time{}, time.UTC)
	if !ok || old {
		t.Fatalf("not a support statement: %v %v", ok, old)
	}
	if r.Principal.Subject != "support_jo_abcdef" || r.Principal.Email != "jo@example.org" || r.CorrelationID != "c-1" ||
		r.Operation != SupportStatementOperation || !slices.Equal(r.RecordIDs, []string{"residents.residents"}) || r.Count != 1 ||
		r.Filters["statement"] != "select 'a,\"b', x\nfrom residents where last_name = $1" || r.Filters["parameter"] != "Smith" ||
		r.Filters["rows"] != "1" || r.Filters["class"] != "READ" || r.ClientAddress != "127.0.0.1:45890" || r.UserAgent != "psql" ||
		!r.Time.Equal(time.Date(2026, 11, 30, 12, 49, 16, 88e6, time.UTC)) {
		t.Errorf("record %+v", r)
	}
	if !strings.HasPrefix(r.Reason, "READ SELECT on table residents.residents: select 'a,\"b', x from residents") {
		t.Errorf("reason %q", r.Reason)
	}
	if _, ok, _ := supportStatement(recs[0], map[string]supportGrantRef{}, time.Time{}, time.UTC); ok {
		t.Error("a statement of a role that is no support grant is taken")
	}
	if _, ok, old := supportStatement(recs[0], grants, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), time.UTC); !ok || !old {
		t.Error("a statement older than since is not passed over")
	}
}

// TestSupportPgauditCluster: on a private cluster with pgaudit preloaded
// and a CSV log, a production grant succeeds, the statements the support
// role runs reach the audit trail through ImportSupportLog (user, time,
// statement, object, rows, linked to the grant), a second import adds
// nothing, and the chain verifies.
func TestSupportPgauditCluster(t *testing.T) {
	ctx := context.Background()
	c := pgtest.PgauditCluster(t)
	dbURL := c.CreateDatabase(t, "plinth")
	ds := loadDomains(t)
	s, err := Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	e := entity(t, ds, "residents")
	var data []map[string]any
	for i := range 3 {
		data = append(data, resident(t, e, i))
	}
	if err := s.BulkInsert(ctx, e, data); err != nil {
		t.Fatal(err)
	}

	user := supportEmail(t)
	before := time.Now().Add(-time.Second)
	g := grantFor(t, s, SupportRequest{User: user, Reason: "INC-77: check an address", TTL: time.Hour, Domain: "residents",
		GrantedBy: "admin@example.org", Environment: plinth.EnvProduction})
	if !g.StatementLogging || g.CorrelationID == "" {
		t.Fatalf("production grant on a pgaudit server: %+v", g)
	}
	t.Logf("note: %s", g.Note)
	var settings []string
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(array_agg(x ORDER BY x), '{}') FROM pg_db_role_setting d JOIN pg_roles r ON r.oid = d.setrole, unnest(d.setconfig) x WHERE r.rolname = $1`, g.Role).Scan(&settings); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"pgaudit.log=all", "pgaudit.log_relation=on", "pgaudit.log_rows=on"} {
		if !slices.Contains(settings, w) {
			t.Errorf("role settings %v lack %s", settings, w)
		}
	}

	conn, err := connectAs(t, dbURL, g.Role, g.Password)
	if err != nil {
		t.Fatalf("connect as the support role: %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM residents.residents").Scan(&n); err != nil || n != 3 {
		t.Fatalf("count: %d, %v", n, err)
	}
	var first string
	if err := conn.QueryRow(ctx, "SELECT first_name FROM residents WHERE first_name = $1 /* marker-1 */", "Zoë").Scan(&first); err != nil {
		t.Fatalf("select by name: %v", err)
	}
	rows, err := conn.Query(ctx, "SELECT first_name, 'a,\"b' FROM residents.residents\nORDER BY first_name /* marker-2 */")
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	// Writes are refused, and still logged (pgaudit logs the attempt).
	if _, err := conn.Exec(ctx, "DELETE FROM residents.residents /* marker-3 */"); err == nil {
		t.Error("the support role could delete")
	}
	conn.Close(ctx)

	// The collector writes asynchronously: wait for the last statement.
	plinthtest.Eventually(t, 20*time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(c.LogDir, "*.csv"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if strings.Contains(string(b), "marker-2") {
				return true
			}
		}
		return false
	}, "no pgaudit line for the last statement in %s", c.LogDir)

	res, err := s.ImportSupportLog(ctx, SupportLogOptions{Dir: c.LogDir})
	if err != nil {
		t.Fatalf("ImportSupportLog: %v", err)
	}
	t.Logf("first import: %+v", res)
	if res.Statements < 3 {
		t.Fatalf("imported %d statements, want at least 3", res.Statements)
	}
	again, err := s.ImportSupportLog(ctx, SupportLogOptions{Dir: c.LogDir})
	if err != nil || again.Statements != 0 {
		t.Fatalf("second import: %+v, %v; want nothing new", again, err)
	}

	if _, err := auditpkg.ChainPending(ctx, s); err != nil {
		t.Fatal(err)
	}
	var stmts []plinth.AuditRecord
	var grantRec *plinth.AuditRecord
	prev := ""
	err = s.ScanAudit(ctx, 0, func(r plinth.AuditRecord) error {
		if r.PrevHash != prev || r.Hash != r.ComputeHash() {
			t.Errorf("audit record %d breaks the chain", r.Sequence)
		}
		prev = r.Hash
		switch r.Operation {
		case SupportStatementOperation:
			stmts = append(stmts, r)
		case "support":
			grantRec = &r
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if grantRec == nil || grantRec.CorrelationID != g.CorrelationID {
		t.Fatalf("grant record %+v", grantRec)
	}
	if len(stmts) != res.Statements {
		t.Errorf("%d statement records in the chain, %d imported", len(stmts), res.Statements)
	}
	found := map[string]bool{}
	for _, r := range stmts {
		if r.Principal.Subject != g.Role || r.Principal.Email != user || r.CorrelationID != g.CorrelationID ||
			r.Environment != plinth.EnvProduction || r.Domain != "residents" || r.Decision != plinth.DecisionAllow ||
			r.Time.Before(before) || r.Time.After(time.Now()) {
			t.Errorf("statement record %+v", r)
		}
		st := r.Filters["statement"]
		switch {
		case strings.Contains(st, "count(*)"):
			found["count"] = true
			if r.Filters["object"] != "residents.residents" || r.Filters["rows"] != "1" || r.Filters["class"] != "READ" ||
				!slices.Equal(r.RecordIDs, []string{"residents.residents"}) {
				t.Errorf("count record %+v", r)
			}
		case strings.Contains(st, "marker-1"):
			found["param"] = true
			if r.Filters["parameter"] != "Zoë" || r.Filters["object"] != "residents.residents" {
				t.Errorf("parameter record %+v", r)
			}
		case strings.Contains(st, "marker-2"):
			found["multiline"] = true
			if !strings.Contains(st, "'a,\"b' FROM residents.residents\nORDER BY first_name") || r.Filters["rows"] != "3" {
				t.Errorf("multi-line record %+v", r)
			}
		}
	}
	for _, w := range []string{"count", "param", "multiline"} {
		if !found[w] {
			t.Errorf("no audit record of the %s statement in %d records", w, len(stmts))
		}
	}
	for _, r := range stmts {
		t.Logf("%s %s %s %v rows=%s: %s", r.Time.Format(time.RFC3339Nano), r.Principal.Subject, r.Filters["class"], r.RecordIDs, r.Filters["rows"], r.Reason)
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestSupportLogResume: ImportSupportLog leaves a line the collector is
// still writing for the next run, takes only lines of support roles, goes
// on into the next file, and never imports a line twice. The log is
// written by the test, in the test's own database on the shared server.
func TestSupportLogResume(t *testing.T) {
	ctx := context.Background()
	s, _ := supportStore(t)
	if err := s.ensureSupportTable(ctx); err != nil {
		t.Fatal(err)
	}
	const role = "support_jo_0a0b0c"
	if _, err := s.pool.Exec(ctx, `INSERT INTO plinth.support_grants (role, user_email, reason, domain, schema_name, granted_by, environment,
	statement_logging, created_at, expires_at, correlation_id) VALUES ($1, 'jo@example.org', 'test', 'residents', 'residents', 'admin', 'production', true, now(), now(), 'corr-resume')`, role); err != nil {
		t.Fatal(err)
	}
	line := func(user string, i int) string {
		return `2026-11-30 12:49:16.` + strings.Repeat("0", 3-len(strconv.Itoa(i))) + strconv.Itoa(i) + ` UTC,"` + user + `","plinth",1,"127.0.0.1:1",6b0d.1,` + strconv.Itoa(i) +
			`,"SELECT",2026-11-30 12:49:16 UTC,3/14,0,LOG,00000,"AUDIT: SESSION,` + strconv.Itoa(i) + `,1,READ,SELECT,TABLE,residents.residents,""select ` + strconv.Itoa(i) + `,
from residents"",<none>,1",,,,,,,,,"psql","client backend",,0` + "\n"
	}
	dir := t.TempDir()
	first := filepath.Join(dir, "postgresql-2026-11-30_120000.csv")
	third := line(role, 3)
	content := line(role, 1) + line("someone_else", 2) + third[:len(third)/2]
	if err := os.WriteFile(first, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	imp := func(want int) SupportLogResult {
		t.Helper()
		res, err := s.ImportSupportLog(ctx, SupportLogOptions{Dir: dir})
		if err != nil || res.Statements != want {
			t.Fatalf("import: %+v, %v; want %d statements", res, err, want)
		}
		return res
	}
	imp(1) // the half-written line waits
	if err := os.WriteFile(first, []byte(content+third[len(third)/2:]), 0o600); err != nil {
		t.Fatal(err)
	}
	imp(1) // now it is complete
	imp(0)
	second := filepath.Join(dir, "postgresql-2026-11-30_130000.csv")
	if err := os.WriteFile(second, []byte(line(role, 4)+line(role, 5)), 0o600); err != nil {
		t.Fatal(err)
	}
	res := imp(2)
	if res.Position.File != filepath.Base(second) || res.Position.Offset != int64(len(line(role, 4)+line(role, 5))) {
		t.Errorf("position %+v", res.Position)
	}
	imp(0)
	if _, err := auditpkg.ChainPending(ctx, s); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := s.ScanAudit(ctx, 0, func(r plinth.AuditRecord) error {
		if r.Operation == SupportStatementOperation {
			if r.CorrelationID != "corr-resume" || r.Principal.Subject != role {
				t.Errorf("record %+v", r)
			}
			got = append(got, r.Filters["statementId"])
		}
		return nil
	})
	if err != nil || !slices.Equal(got, []string{"1", "3", "4", "5"}) {
		t.Errorf("statements in the trail: %v, %v", got, err)
	}
}
