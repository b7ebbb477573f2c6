package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/plinth-data/plinth"
	auditpkg "github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/plinthtest"
)

// Support roles are cluster-wide: every test names its users uniquely
// (supportEmail) and drops the roles it made when it ends, failed or not.

// supportEmail returns a unique e-mail address for a test user.
func supportEmail(t testing.TB) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "plinth.test." + hex.EncodeToString(b[:]) + "@example.org"
}

// supportStore opens a prepared store with some residents, and makes sure
// every support role created in its database is dropped at the end.
func supportStore(t *testing.T) (*Store, string) {
	t.Helper()
	ds := loadDomains(t)
	s, dbURL := openStore(t, ds)
	e := entity(t, ds, "residents")
	var data []map[string]any
	for i := range 3 {
		data = append(data, resident(t, e, i))
	}
	if err := s.BulkInsert(context.Background(), e, data); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropSupportRoles(t, s) })
	return s, dbURL
}

// dropSupportRoles drops every role recorded in the store's support table,
// revoked or not, and any role named after the test users that is left.
func dropSupportRoles(t testing.TB, s *Store) {
	ctx := context.Background()
	rows, err := s.pool.Query(ctx, `SELECT rolname FROM pg_roles WHERE rolname IN (SELECT role FROM "plinth"."support_grants")`)
	if err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42P01" {
			t.Errorf("cleanup: list support roles: %v", err)
		}
		return
	}
	roles, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42P01" {
			t.Errorf("cleanup: list support roles: %v", err)
		}
		return
	}
	for _, role := range roles {
		dropRole(t, s, role)
	}
}

func dropRole(t testing.TB, s *Store, role string) {
	ctx := context.Background()
	r := quote(role)
	_, _ = s.pool.Exec(ctx, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = $1", role)
	if _, err := s.pool.Exec(ctx, "DROP OWNED BY "+r); err != nil && !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("cleanup: drop owned by %s: %v", role, err)
	}
	if _, err := s.pool.Exec(ctx, "DROP ROLE IF EXISTS "+r); err != nil {
		t.Errorf("cleanup: drop role %s: %v", role, err)
	}
}

// connectAs connects to the store's database as a role, over TCP to
// 127.0.0.1 (where password authentication, when the server is set up for
// it, checks VALID UNTIL).
func connectAs(t testing.TB, dbURL, role, password string) (*pgx.Conn, error) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = role, password
	cfg.Host = "127.0.0.1"
	for _, f := range cfg.Fallbacks {
		f.Host = "127.0.0.1"
	}
	cfg.ConnectTimeout = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		t.Cleanup(func() { conn.Close(context.Background()) })
	}
	return conn, err
}

// checksPasswords reports whether the server checks a support role's
// password on connections to 127.0.0.1: only then does it check VALID
// UNTIL. A server whose pg_hba.conf trusts such connections lets a wrong
// password in.
func checksPasswords(t testing.TB, dbURL, role string) bool {
	t.Helper()
	conn, err := connectAs(t, dbURL, role, "not-the-password")
	switch {
	case err == nil:
		conn.Close(context.Background())
		// Wait for the backend to go, so that it does not count against
		// the role's connection limit.
		var n int
		plinthtest.Eventually(t, 10*time.Second, func() bool {
			if err := pgxConnectCount(dbURL, role, &n); err != nil {
				t.Fatal(err)
			}
			return n == 0
		}, "%d sessions of %s left", plinthtest.Last(&n), role)
		return false
	case pgCode(err) == "28P01": // invalid_password
		return true
	}
	t.Fatalf("connect with a wrong password: %v", err)
	return false
}

// pgxConnectCount counts the sessions of a role, as the test server's
// admin.
func pgxConnectCount(dbURL, role string, n *int) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role).Scan(n)
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func grantFor(t *testing.T, s *Store, req SupportRequest) SupportGrant {
	t.Helper()
	g, err := s.GrantSupport(context.Background(), req)
	if err != nil {
		t.Fatalf("GrantSupport: %v", err)
	}
	return g
}

func TestSupportGrantReadOnly(t *testing.T) {
	ctx := context.Background()
	s, dbURL := supportStore(t)
	user := supportEmail(t)
	g := grantFor(t, s, SupportRequest{User: user, Reason: "INC-1234: resident record shows wrong address", TTL: time.Hour,
		Domain: "residents", GrantedBy: "admin@example.org", Environment: plinth.EnvStaging, CorrelationID: "corr-support-1"})

	if !supportRoleRE.MatchString(g.Role) || !strings.HasPrefix(g.Role, "support_plinth_test_") {
		t.Errorf("role name %q", g.Role)
	}
	if len(g.Password) < 32 {
		t.Errorf("password %q is short", g.Password)
	}
	if d := time.Until(g.ExpiresAt); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("expires at %s, in %s; want in 1h", g.ExpiresAt, d)
	}
	if g.Schema != "residents" || g.Domain != "residents" || g.Port == 0 || g.Host == "" || g.Database == "" {
		t.Errorf("grant %+v", g)
	}
	if strings.Contains(g.ConnectHint, g.Password) || !strings.Contains(g.ConnectHint, "user="+g.Role) ||
		!strings.Contains(g.ConnectHint, "dbname="+g.Database) || !strings.HasPrefix(g.ConnectHint, "psql ") {
		t.Errorf("connect hint %q", g.ConnectHint)
	}
	t.Logf("connect hint: %s", g.ConnectHint)
	t.Logf("note: %s", g.Note)

	// The role in the catalog.
	var canLogin, super, createRole, createDB, inherit, bypassRLS, replication bool
	var connLimit int
	var validUntil time.Time
	err := s.pool.QueryRow(ctx, `SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolinherit, rolbypassrls, rolreplication, rolconnlimit, rolvaliduntil
FROM pg_roles WHERE rolname = $1`, g.Role).Scan(&canLogin, &super, &createRole, &createDB, &inherit, &bypassRLS, &replication, &connLimit, &validUntil)
	if err != nil {
		t.Fatal(err)
	}
	if !canLogin || super || createRole || createDB || inherit || bypassRLS || replication || connLimit != 2 {
		t.Errorf("role attributes: login %t super %t createrole %t createdb %t inherit %t bypassrls %t replication %t connlimit %d",
			canLogin, super, createRole, createDB, inherit, bypassRLS, replication, connLimit)
	}
	if !validUntil.Equal(g.ExpiresAt) {
		t.Errorf("VALID UNTIL %s, want %s", validUntil, g.ExpiresAt)
	}
	var settings []string
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(array_agg(c), '{}') FROM pg_db_role_setting, unnest(setconfig) c WHERE setrole = $1::regrole AND setdatabase = 0`, g.Role).Scan(&settings); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(settings, "default_transaction_read_only=on") {
		t.Errorf("role settings %v lack default_transaction_read_only=on", settings)
	}
	switch {
	case g.StatementLogging:
		if !slices.Contains(settings, "pgaudit.log=all") {
			t.Errorf("statement logging reported on, but role settings are %v", settings)
		}
	default:
		if !strings.Contains(g.Note, "pgaudit is NOT enabled") {
			t.Errorf("without pgaudit the note must say so: %q", g.Note)
		}
		if g.ServerLog != slices.Contains(settings, "log_statement=all") {
			t.Errorf("ServerLog %t, role settings %v", g.ServerLog, settings)
		}
	}

	var member, adminSuper bool
	if err := s.pool.QueryRow(ctx, `SELECT pg_has_role($1, $2, 'MEMBER'), (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)`,
		g.Role, SupportGroup).Scan(&member, &adminSuper); err != nil {
		t.Fatal(err)
	}
	if !member {
		t.Errorf("the role is not a member of %s; note: %s", SupportGroup, g.Note)
	}
	if adminSuper && !checksPasswords(t, dbURL, g.Role) && !strings.Contains(g.Note, "pg_hba.conf trusts") {
		t.Errorf("the server trusts 127.0.0.1, but the note does not warn: %q", g.Note)
	}

	var others int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datallowconn AND datname <> current_database() AND has_database_privilege($1, oid, 'CONNECT')`,
		g.Role).Scan(&others); err != nil {
		t.Fatal(err)
	}
	if (others > 0) != strings.Contains(g.Note, "may also connect to") {
		t.Errorf("%d other databases accept the role, but the note says: %q", others, g.Note)
	}

	// The support table and role leave schema evolution alone.
	if p, err := s.Plan(ctx, loadDomains(t)); err != nil || !p.Empty() {
		t.Errorf("plan after a grant: %v\n%s", err, p)
	}

	// Listed.
	infos, err := s.SupportGrants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Role != g.Role || infos[0].User != user || infos[0].GrantedBy != "admin@example.org" ||
		infos[0].Domain != "residents" || infos[0].Expired || !infos[0].ExpiresAt.Equal(g.ExpiresAt) || infos[0].Reason == "" {
		t.Errorf("SupportGrants = %+v", infos)
	}

	// Reads work, with the password from the grant.
	conn, err := connectAs(t, dbURL, g.Role, g.Password)
	if err != nil {
		t.Fatalf("connect as the support role: %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM residents.residents").Scan(&n); err != nil || n != 3 {
		t.Fatalf("SELECT from residents.residents: %d, %v", n, err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM residents").Scan(&n); err != nil || n != 3 {
		t.Errorf("SELECT through the search path: %d, %v", n, err)
	}
	// Writes fail: the session is read-only …
	for _, stmt := range []string{
		"INSERT INTO residents.residents (first_name, version, created_at, updated_at) VALUES ('X', 1, now(), now())",
		"UPDATE residents.residents SET first_name = 'X'",
		"DELETE FROM residents.residents",
	} {
		if _, err := conn.Exec(ctx, stmt); pgCode(err) != "25006" {
			t.Errorf("%s in the read-only session: %v, want read_only_sql_transaction", stmt, err)
		}
	}
	// … and switching that off does not help: the role may not write.
	if _, err := conn.Exec(ctx, "SET default_transaction_read_only = off"); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		"INSERT INTO residents.residents (first_name, version, created_at, updated_at) VALUES ('X', 1, now(), now())",
		"UPDATE residents.residents SET first_name = 'X'",
		"DELETE FROM residents.residents",
		"TRUNCATE residents.residents",
		"CREATE TABLE residents.mine (x int)",
		"CREATE TABLE public.mine (x int)",
		"ALTER TABLE residents.residents ADD COLUMN x int",
		"DROP TABLE residents.residents",
	} {
		if _, err := conn.Exec(ctx, stmt); pgCode(err) != "42501" {
			t.Errorf("%s: %v, want insufficient_privilege", stmt, err)
		}
	}
	// Nothing else of the database can be read.
	for _, table := range []string{"plinth.grants", "plinth.access_policies", "plinth.support_grants", "plinth.audit", "contacts.contacts"} {
		var exists bool
		if err := s.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil || !exists {
			continue
		}
		if _, err := conn.Exec(ctx, "SELECT * FROM "+table+" LIMIT 1"); pgCode(err) != "42501" {
			t.Errorf("SELECT from %s: %v, want insufficient_privilege", table, err)
		}
	}
	var count int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, g.Role).Scan(&count); err != nil || count != 1 {
		t.Errorf("sessions of the role: %d, %v", count, err)
	}
	// CONNECTION LIMIT 2.
	if _, err := connectAs(t, dbURL, g.Role, g.Password); err != nil {
		t.Fatalf("second connection: %v", err)
	}
	if _, err := connectAs(t, dbURL, g.Role, g.Password); pgCode(err) != "53300" {
		t.Errorf("third connection: %v, want too_many_connections", err)
	}

	// Revoke ends the sessions and drops the role.
	if err := s.RevokeSupport(ctx, g.Role, "admin@example.org"); err != nil {
		t.Fatalf("RevokeSupport: %v", err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the session opened before the revoke still works")
	}
	var roles int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname = $1`, g.Role).Scan(&roles); err != nil || roles != 0 {
		t.Errorf("role still exists after revoke: %d, %v", roles, err)
	}
	if _, err := connectAs(t, dbURL, g.Role, g.Password); err == nil {
		t.Error("login works after revoke")
	}
	if infos, err := s.SupportGrants(ctx); err != nil || len(infos) != 0 {
		t.Errorf("SupportGrants after revoke = %+v, %v", infos, err)
	}
	var revokedBy string
	if err := s.pool.QueryRow(ctx, `SELECT revoked_by FROM plinth.support_grants WHERE role = $1 AND revoked_at IS NOT NULL`, g.Role).Scan(&revokedBy); err != nil || revokedBy != "admin@example.org" {
		t.Errorf("revoked_by %q, %v", revokedBy, err)
	}
	if err := s.RevokeSupport(ctx, g.Role, "admin@example.org"); !errors.Is(err, plinth.ErrNotFound) {
		t.Errorf("second revoke: %v, want ErrNotFound", err)
	}

	// The audit trail has both, in a chain that holds.
	audit, ok := any(s).(plinth.AuditStore)
	if !ok {
		t.Log("the store keeps no audit trail yet: audit records not checked")
		return
	}
	if _, err := auditpkg.ChainPending(ctx, audit); err != nil {
		t.Fatal(err)
	}
	var recs []plinth.AuditRecord
	prev := ""
	err = audit.ScanAudit(ctx, 0, func(r plinth.AuditRecord) error {
		if r.PrevHash != prev || r.Hash != r.ComputeHash() {
			t.Errorf("audit record %d breaks the chain", r.Sequence)
		}
		prev = r.Hash
		if r.Operation == "support" {
			recs = append(recs, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("%d support audit records, want 2: %+v", len(recs), recs)
	}
	for i, r := range recs {
		if r.Decision != plinth.DecisionAllow || r.Principal.Subject != "admin@example.org" || r.Principal.Email != "admin@example.org" ||
			!slices.Equal(r.RecordIDs, []string{g.Role}) || r.Domain != "residents" || r.Environment != plinth.EnvStaging ||
			r.Filters["user"] != user {
			t.Errorf("support audit record %d: %+v", i, r)
		}
	}
	if !strings.HasPrefix(recs[0].Reason, "grant:") || !strings.Contains(recs[0].Reason, "INC-1234") || recs[0].CorrelationID != "corr-support-1" {
		t.Errorf("grant audit record: %+v", recs[0])
	}
	if !strings.HasPrefix(recs[1].Reason, "revoke:") {
		t.Errorf("revoke audit record: %+v", recs[1])
	}
	if !g.Audited {
		t.Error("grant says it was not audited")
	}
}

// TestSupportExpiry checks that a support role stops working at expiry.
//
// PostgreSQL checks VALID UNTIL only when it authenticates with a password.
// Where the server checks passwords for 127.0.0.1 (scram-sha-256 or md5 in
// pg_hba.conf) the test asserts that a login with the right password fails
// after the expiry. Where it trusts such connections (a development
// server) no login can show the expiry, and the test says so; on both it
// asserts that VALID UNTIL is set, that a session opened before the expiry
// (which PostgreSQL never ends by itself) is ended by SweepSupport, and
// that the swept role no longer exists, so nobody can log in as it.
func TestSupportExpiry(t *testing.T) {
	ctx := context.Background()
	s, dbURL := supportStore(t)
	const ttl = 3 * time.Second
	g := grantFor(t, s, SupportRequest{User: supportEmail(t), Reason: "expiry test", TTL: ttl, Domain: "residents",
		GrantedBy: "admin@example.org", minTTL: time.Second})
	keep := grantFor(t, s, SupportRequest{User: supportEmail(t), Reason: "not expiring", TTL: time.Hour, Domain: "contacts",
		GrantedBy: "admin@example.org"})

	passwords := checksPasswords(t, dbURL, g.Role)
	if !passwords {
		t.Logf("the server at %s does not check passwords for 127.0.0.1 (pg_hba.conf trust): VALID UNTIL cannot be seen to refuse a login; checking the sweep only", dbURL)
	}
	open, err := connectAs(t, dbURL, g.Role, g.Password)
	if err != nil {
		t.Fatalf("connect before expiry: %v", err)
	}
	var n int
	if err := open.QueryRow(ctx, "SELECT count(*) FROM residents.residents").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if revoked, err := s.SweepSupport(ctx); err != nil || len(revoked) != 0 {
		t.Fatalf("sweep before expiry revoked %v, %v", revoked, err)
	}

	// Not a wait for a condition: the grant's expiry (the role's VALID
	// UNTIL) has to pass; the test is what the server and the sweep do then.
	time.Sleep(time.Until(g.ExpiresAt) + 500*time.Millisecond)
	if passwords {
		// The same password worked before the expiry; now the server
		// refuses it (and logs: User "…" has an expired password).
		if _, err := connectAs(t, dbURL, g.Role, g.Password); pgCode(err) != "28P01" {
			t.Errorf("login with the right password after VALID UNTIL: %v, want invalid_password", err)
		} else {
			t.Logf("login after expiry refused: %v", err)
		}
	}
	infos, err := s.SupportGrants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range infos {
		if (i.Role == g.Role) != i.Expired {
			t.Errorf("grant %s expired %t", i.Role, i.Expired)
		}
	}
	// The session opened before the expiry still works until the sweep.
	if err := open.QueryRow(ctx, "SELECT count(*) FROM residents.residents").Scan(&n); err != nil {
		t.Logf("the session opened before expiry already failed: %v", err)
	}

	revoked, err := s.SweepSupport(ctx)
	if err != nil || !slices.Equal(revoked, []string{g.Role}) {
		t.Fatalf("sweep revoked %v, %v; want [%s]", revoked, err, g.Role)
	}
	if err := open.QueryRow(ctx, "SELECT 1").Scan(&n); err == nil {
		t.Error("the session opened before expiry survives the sweep")
	}
	if _, err := connectAs(t, dbURL, g.Role, g.Password); err == nil {
		t.Error("login works after the sweep")
	}
	var roles int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname = $1`, g.Role).Scan(&roles); err != nil || roles != 0 {
		t.Errorf("role exists after the sweep: %d, %v", roles, err)
	}
	if revoked, err := s.SweepSupport(ctx); err != nil || len(revoked) != 0 {
		t.Errorf("second sweep revoked %v, %v", revoked, err)
	}
	// The unexpired grant is untouched.
	infos, err = s.SupportGrants(ctx)
	if err != nil || len(infos) != 1 || infos[0].Role != keep.Role {
		t.Errorf("grants after the sweep: %+v, %v", infos, err)
	}
	if c, err := connectAs(t, dbURL, keep.Role, keep.Password); err != nil {
		t.Errorf("the unexpired grant no longer works: %v", err)
	} else if err := c.QueryRow(ctx, "SELECT count(*) FROM contacts.contacts").Scan(&n); err != nil {
		t.Errorf("the unexpired grant cannot read its domain: %v", err)
	}

	if audit, ok := any(s).(plinth.AuditStore); ok {
		if _, err := auditpkg.ChainPending(ctx, audit); err != nil {
			t.Fatal(err)
		}
		var swept []plinth.AuditRecord
		err := audit.ScanAudit(ctx, 0, func(r plinth.AuditRecord) error {
			if r.Operation == "support" && slices.Equal(r.RecordIDs, []string{g.Role}) {
				swept = append(swept, r)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(swept) != 2 || !strings.HasPrefix(swept[1].Reason, "expired:") || swept[1].Principal.Subject != SupportSweeper {
			t.Errorf("audit records of the swept role: %+v", swept)
		}
	}
}

func TestSupportValidation(t *testing.T) {
	ctx := context.Background()
	s, _ := supportStore(t)
	ok := SupportRequest{User: supportEmail(t), Reason: "INC-1", TTL: time.Hour, Domain: "residents", GrantedBy: "admin@example.org"}
	for name, tc := range map[string]struct {
		edit  func(*SupportRequest)
		field string
	}{
		"no user":        {func(r *SupportRequest) { r.User = "" }, "user"},
		"not an e-mail":  {func(r *SupportRequest) { r.User = "jo" }, "user"},
		"no reason":      {func(r *SupportRequest) { r.Reason = "  " }, "reason"},
		"no granter":     {func(r *SupportRequest) { r.GrantedBy = "" }, "grantedBy"},
		"no ttl":         {func(r *SupportRequest) { r.TTL = 0 }, "ttl"},
		"short ttl":      {func(r *SupportRequest) { r.TTL = 30 * time.Second }, "ttl"},
		"long ttl":       {func(r *SupportRequest) { r.TTL = 9 * time.Hour }, "ttl"},
		"over the cap":   {func(r *SupportRequest) { r.TTL, r.MaxTTL = 25*time.Hour, 48*time.Hour }, "ttl"},
		"no domain":      {func(r *SupportRequest) { r.Domain = "" }, "domain"},
		"bad domain":     {func(r *SupportRequest) { r.Domain = `residents"; DROP TABLE x; --` }, "domain"},
		"system schema":  {func(r *SupportRequest) { r.Domain = "plinth" }, "domain"},
		"unknown domain": {func(r *SupportRequest) { r.Domain = "benefit-claims" }, "domain"},
		"catalog schema": {func(r *SupportRequest) { r.Domain = "information-schema" }, "domain"},
		"toast schema":   {func(r *SupportRequest) { r.Domain = "pg-toast" }, "domain"},
		"public":         {func(r *SupportRequest) { r.Domain = "public" }, "domain"},
		"just under 1m":  {func(r *SupportRequest) { r.TTL = time.Minute - time.Millisecond }, "ttl"},
	} {
		t.Run(name, func(t *testing.T) {
			req := ok
			tc.edit(&req)
			_, err := s.GrantSupport(ctx, req)
			var ve *plinth.ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Field != tc.field {
				t.Fatalf("GrantSupport: %v, want a validation error on %s", err, tc.field)
			}
		})
	}
	// A longer TTL when the caller allows it.
	long := ok
	long.TTL, long.MaxTTL = 12*time.Hour, 24*time.Hour
	if g, err := s.GrantSupport(ctx, long); err != nil {
		t.Errorf("12h with MaxTTL 24h: %v", err)
	} else if err := s.RevokeSupport(ctx, g.Role, "admin@example.org"); err != nil {
		t.Error(err)
	}
	var roles int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM plinth.support_grants WHERE revoked_at IS NULL").Scan(&roles); err != nil || roles != 0 {
		t.Errorf("%d active grants after failed requests, %v", roles, err)
	}

	// Only plinth's own support roles can be revoked.
	for _, role := range []string{"postgres", "support_someone_abcdef", "support_x_123456; DROP ROLE postgres"} {
		if err := s.RevokeSupport(ctx, role, "admin@example.org"); !errors.Is(err, plinth.ErrNotFound) {
			t.Errorf("RevokeSupport(%q): %v, want ErrNotFound", role, err)
		}
	}
	if err := s.RevokeSupport(ctx, "support_someone_abcdef", ""); err == nil {
		t.Error("revoke without who revokes works")
	}
}

// TestSupportNeedsCreateRole checks the error when the store's user may not
// create roles.
func TestSupportNeedsCreateRole(t *testing.T) {
	ctx := context.Background()
	s, dbURL := supportStore(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	plain := "plinth_test_nocreaterole_" + hex.EncodeToString(b[:])
	password := newSupportPassword()
	if _, err := s.pool.Exec(ctx, "CREATE ROLE "+quote(plain)+" LOGIN NOCREATEROLE PASSWORD "+literal(password)); err != nil {
		t.Skipf("cannot create a plain role to test with: %v", err)
	}
	t.Cleanup(func() { dropRole(t, s, plain) })
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u := "postgres://" + plain + ":" + password + "@127.0.0.1:" + strconv.Itoa(int(cfg.Port)) + "/" + cfg.Database
	weak, err := Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer weak.Close()
	_, err = weak.GrantSupport(ctx, SupportRequest{User: supportEmail(t), Reason: "x", TTL: time.Hour, Domain: "residents", GrantedBy: "admin@example.org"})
	if err == nil || !strings.Contains(err.Error(), "CREATEROLE") || !strings.Contains(err.Error(), plain) {
		t.Errorf("GrantSupport without CREATEROLE: %v", err)
	}
}

func TestSupportRoleName(t *testing.T) {
	for in, want := range map[string]string{
		"jo.bloggs@example.gov.uk":     "support_jo_bloggs_",
		"Siobhán.O'Neill@example.org":  "support_siobh_n_o_neill_",
		"@x":                           "support_user_",
		strings.Repeat("a", 80) + "@x": "support_" + strings.Repeat("a", 32) + "_",
	} {
		got := supportRoleName(in)
		if !strings.HasPrefix(got, want) || len(got) != len(want)+6 || !supportRoleRE.MatchString(got) || len(got) > maxIdent {
			t.Errorf("supportRoleName(%q) = %q, want %s + 6 hex digits", in, got, want)
		}
	}
	v, err := scramVerifier("pencil")
	if err != nil || !strings.HasPrefix(v, "SCRAM-SHA-256$4096:") {
		t.Errorf("verifier %q, %v", v, err)
	}
}
