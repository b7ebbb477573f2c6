package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
)

// TestSupportGrantRefusedInProductionWithoutPgaudit: the shared test server
// has no pgaudit loaded (the test reads its settings, never changes them),
// so plinth support grant --env production refuses and says how to fix it.
func TestSupportGrantRefusedInProductionWithoutPgaudit(t *testing.T) {
	url := pgtest.Database(t)
	dir := t.TempDir()
	if out, err := run(t, dir, nil, "seed", "--store", url, "-n", "3", "--seed", "1"); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var preload string
	_ = conn.QueryRow(ctx, "SELECT coalesce((SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), '')").Scan(&preload)
	conn.Close(ctx)
	if strings.Contains(preload, "pgaudit") {
		t.Skip("the shared test server preloads pgaudit: no refusal to see")
	}
	out, err := run(t, dir, nil, "support", "grant", "--store", url, "--env", "production", "--user", "jo@example.org",
		"--reason", "INC-1: test", "--ttl", "1h", "--domain", "residents", "--granted-by", "admin@example.org")
	if err == nil {
		t.Fatalf("production grant without pgaudit succeeded:\n%s", out)
	}
	for _, w := range []string{"refusing to grant support access in production", "shared_preload_libraries = '", "pgaudit",
		"log_destination = '", "csvlog", "postgresql.conf"} {
		if !strings.Contains(out, w) {
			t.Errorf("the refusal does not say %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "Password:") {
		t.Errorf("a password was printed:\n%s", out)
	}
}

// TestSupportLogCommand: on a private cluster with pgaudit preloaded and a
// CSV log, plinth support grant --env production succeeds, and plinth
// support log brings the support role's statements into the audit trail,
// once; plinth audit verify then finds the chain intact.
func TestSupportLogCommand(t *testing.T) {
	c := pgtest.PgauditCluster(t)
	url := c.CreateDatabase(t, "plinth")
	dir := t.TempDir()
	if out, err := run(t, dir, nil, "seed", "--store", url, "-n", "3", "--seed", "1"); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	out, err := run(t, dir, nil, "support", "grant", "--store", url, "--env", "production", "--user", "jo.bloggs@example.org",
		"--reason", "INC-2: wrong address", "--ttl", "1h", "--domain", "residents", "--granted-by", "admin@example.org")
	if err != nil {
		t.Fatalf("production grant with pgaudit: %v\n%s", err, out)
	}
	role := regexp.MustCompile(`Role:\s+(\S+)`).FindStringSubmatch(out)
	password := regexp.MustCompile(`Password:\s+(\S+)`).FindStringSubmatch(out)
	if role == nil || password == nil || !strings.Contains(out, "Logging:   on (pgaudit)") {
		t.Fatalf("grant output:\n%s", out)
	}

	ctx := context.Background()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = role[1], password[1]
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect as %s: %v", role[1], err)
	}
	var n int
	for _, q := range []string{"SELECT count(*) FROM residents.residents /* cmd-1 */", "SELECT count(*) FROM residents WHERE first_name <> '' /* cmd-2 */"} {
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn.Close(ctx)

	// The collector writes asynchronously: wait for the last statement.
	plinthtest.Eventually(t, 20*time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(c.LogDir, "*.csv"))
		for _, f := range files {
			if b, _ := os.ReadFile(f); strings.Contains(string(b), "cmd-2") {
				return true
			}
		}
		return false
	}, "no pgaudit line of the last statement in %s", c.LogDir)

	first, err := run(t, dir, nil, "support", "log", "--store", url, "--pg-log-dir", c.LogDir)
	if err != nil || !strings.Contains(first, " 2 statement(s) of support roles brought into the audit trail") {
		t.Fatalf("first support log: %v\n%s", err, first)
	}
	again, err := run(t, dir, nil, "support", "log", "--store", url, "--pg-log-dir", c.LogDir)
	if err != nil || !strings.Contains(again, " 0 statement(s)") {
		t.Errorf("second support log: %v\n%s", err, again)
	}
	out, err = run(t, dir, nil, "audit", "search", "--store", url, "--user", role[1], "--json")
	if err != nil {
		t.Fatalf("audit search: %v\n%s", err, out)
	}
	var stmts int
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r plinth.AuditRecord
		if json.Unmarshal([]byte(line), &r) != nil || r.Operation != "support-statement" {
			continue
		}
		stmts++
		if r.Principal.Email != "jo.bloggs@example.org" || r.Filters["object"] != "residents.residents" ||
			!strings.Contains(r.Filters["statement"], "/* cmd-") || r.Time.IsZero() || r.Filters["rows"] != "1" {
			t.Errorf("statement record %+v", r)
		}
	}
	if stmts != 2 {
		t.Errorf("audit search --user %s: %d support statements, want 2:\n%s", role[1], stmts, out)
	}
	out, err = run(t, dir, nil, "audit", "verify", "--store", url)
	if err != nil || !strings.Contains(out, "intact") {
		t.Errorf("audit verify: %v\n%s", err, out)
	}
}
