package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/plinth-data/plinth"
)

// Break-glass support access.
//
// Direct database access in production is limited to a few named people,
// for support, for a short time. GrantSupport creates a PostgreSQL login
// role for one person and one domain:
//
//   - named support_<local part of the e-mail>_<6 random hex digits>, with a
//     random 32-character password that is returned once and never stored
//     (the server gets only its SCRAM-SHA-256 verifier, so the password is
//     not in the server log even when statements are logged);
//   - VALID UNTIL the expiry (server clock), CONNECTION LIMIT 2, NOINHERIT,
//     and none of SUPERUSER, CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS;
//   - default_transaction_read_only on, and search_path set to the domain's
//     schema;
//   - CONNECT on the database, USAGE on the domain's schema and SELECT on
//     the tables that schema has at the time of the grant. Nothing else: not
//     the system schema "plinth" (grants, policies, audit trail), not other
//     domains, no writes. default_transaction_read_only is a convenience the
//     user could switch off; the privileges are what make the role
//     read-only;
//   - a member of the NOLOGIN group role plinth_support (no privileges of
//     its own), so that pg_hba.conf can name every support role at once
//     (+plinth_support) and demand password authentication for them;
//   - statement logging: with the pgaudit extension loaded
//     (shared_preload_libraries), pgaudit session logging for the role
//     (supportaudit.go), which plinth support log brings from the server's
//     CSV log into the audit trail (supportlog.go). In production a grant
//     is refused unless that is in force; elsewhere, without pgaudit, the
//     grant says that pgaudit logging is NOT on and, when the connected
//     user may set it (superuser), sets log_statement = 'all' for the role
//     so that the server log at least holds each statement.
//
// The grant is recorded in plinth.support_grants (created on first use) and
// in the audit trail, in that order: the role is committed only once the
// audit record is durable.
//
// Expiry. PostgreSQL checks VALID UNTIL only when it authenticates with a
// password (scram-sha-256, md5, password); a pg_hba.conf line with trust
// (or peer, cert …) lets an expired role in, and no method ends a session
// that was opened before the expiry. So expiry rests on two things:
// VALID UNTIL, which stops new logins where passwords are checked, and
// SweepSupport, which ends the sessions of every expired role and drops it
// (plinth serve runs it periodically; plinth support sweep runs it once).
// GrantSupport warns when pg_hba.conf (when it can read it) trusts
// connections that a support role could use.
//
// What PostgreSQL gives every role through PUBLIC is not taken away: reading
// the system catalogs (names of schemas, tables and columns, not their data),
// CONNECT and TEMPORARY on databases that did not revoke them from PUBLIC,
// and EXECUTE on functions granted to PUBLIC. Restrict where support roles
// may connect in pg_hba.conf, e.g.
//
//	hostssl <database> +plinth_support 10.0.0.0/8 scram-sha-256
//	host    all        +plinth_support 0.0.0.0/0  reject
//
// placed before any broader line.

// Support TTL bounds.
const (
	MinSupportTTL        = time.Minute
	DefaultMaxSupportTTL = 8 * time.Hour
	MaxSupportTTL        = 24 * time.Hour
)

// SupportGroup is the NOLOGIN group role every support role belongs to.
const SupportGroup = "plinth_support"

// supportConnectionLimit is the CONNECTION LIMIT of a support role.
const supportConnectionLimit = 2

// SupportSweeper names the principal of revocations by the automatic sweep.
const SupportSweeper = "plinth (automatic sweep of expired support access)"

// SupportRequest asks for break-glass access.
type SupportRequest struct {
	User      string        // e-mail of the person who gets access
	Reason    string        // why: an incident or ticket reference and a sentence
	TTL       time.Duration // how long: MinSupportTTL up to MaxTTL
	Domain    string        // the domain whose schema they may read ("residents")
	GrantedBy string        // the admin granting it
	// MaxTTL is the longest TTL allowed; 0 means DefaultMaxSupportTTL. It
	// cannot exceed MaxSupportTTL.
	MaxTTL time.Duration
	// Environment and CorrelationID go into the audit records; a missing
	// correlation id is generated.
	Environment   string
	CorrelationID string

	minTTL time.Duration // tests only: lowers MinSupportTTL
}

// SupportGrant is a granted support role and how to use it.
type SupportGrant struct {
	Role      string
	Password  string // shown once; plinth does not keep it
	User      string
	Domain    string
	Schema    string
	Database  string
	Host      string
	Port      int
	CreatedAt time.Time
	ExpiresAt time.Time
	// StatementLogging reports whether pgaudit logs every statement of the
	// role.
	StatementLogging bool
	// ServerLog reports whether the server log records every statement of
	// the role through log_statement = 'all' (the fallback without pgaudit).
	ServerLog bool
	// Note says how statements are logged, or that they are not, and any
	// warning about how the server enforces the expiry.
	Note string
	// ConnectHint is a psql command line, without the password.
	ConnectHint string
	// Audited reports whether the grant is in the audit trail (false only
	// when the store keeps none).
	Audited bool
	// CorrelationID links the grant's audit record to the records of the
	// statements its role runs (plinth support log).
	CorrelationID string
}

// SupportGrantInfo describes a support grant that has not been revoked.
type SupportGrantInfo struct {
	Role             string
	User             string
	Reason           string
	Domain           string
	Schema           string
	GrantedBy        string
	Environment      string
	CreatedAt        time.Time
	ExpiresAt        time.Time
	StatementLogging bool
	// Expired grants still listed await the sweep: their role exists but
	// accepts no password login.
	Expired bool
}

// supportTable is where grants are recorded.
const supportTable = `"plinth"."support_grants"`

var supportTableDDL = []string{
	`CREATE SCHEMA IF NOT EXISTS "plinth"`,
	`CREATE TABLE IF NOT EXISTS "plinth"."support_grants" (
	"role" text COLLATE "C" PRIMARY KEY,
	"user_email" text NOT NULL,
	"reason" text NOT NULL,
	"domain" text NOT NULL,
	"schema_name" text NOT NULL,
	"granted_by" text NOT NULL,
	"environment" text NOT NULL,
	"statement_logging" boolean NOT NULL,
	"created_at" timestamptz NOT NULL,
	"expires_at" timestamptz NOT NULL,
	"revoked_at" timestamptz,
	"revoked_by" text
)`,
	`ALTER TABLE "plinth"."support_grants" ADD COLUMN IF NOT EXISTS "correlation_id" text`,
	`CREATE INDEX IF NOT EXISTS "support_grants__active" ON "plinth"."support_grants" ("expires_at") WHERE "revoked_at" IS NULL`,
	`COMMENT ON TABLE "plinth"."support_grants" IS 'Break-glass support roles: who, why, which domain, until when. Kept by plinth.'`,
}

// supportLock serialises creating the support table and the group role.
const supportLock int64 = 0x706c696e7468_01 // "plinth" 1

var (
	supportRoleRE = regexp.MustCompile(`^support_[a-z0-9_]+_[0-9a-f]{6}$`)
	domainNameRE  = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
	emailRE       = regexp.MustCompile(`^[^@\s]+@[^@\s]+$`)
)

// auditAppender is the part of plinth.AuditStore support access needs.
type auditAppender interface {
	AppendAudit(ctx context.Context, recs []plinth.AuditRecord) ([]plinth.AuditRecord, error)
}

// validate trims and checks a request.
func (r *SupportRequest) validate() error {
	var errs []plinth.FieldError
	bad := func(field, detail string) { errs = append(errs, plinth.FieldError{Field: field, Detail: detail}) }
	r.User = strings.TrimSpace(r.User)
	r.Reason = strings.TrimSpace(r.Reason)
	r.GrantedBy = strings.TrimSpace(r.GrantedBy)
	r.Domain = strings.TrimSpace(r.Domain)
	switch {
	case r.User == "":
		bad("user", "is required: the e-mail address of the person who needs access")
	case !emailRE.MatchString(r.User):
		bad("user", "must be an e-mail address")
	}
	if r.Reason == "" {
		bad("reason", "is required: say why access is needed, with the incident or ticket reference")
	}
	if r.GrantedBy == "" {
		bad("grantedBy", "is required: who grants the access")
	}
	switch {
	case r.Domain == "":
		bad("domain", "is required: the domain whose data the support role may read")
	case !domainNameRE.MatchString(r.Domain):
		bad("domain", "must be a domain name such as residents or benefit-claims")
	case schemaOf(r.Domain) == systemSchema:
		bad("domain", "must not be plinth's own schema")
	}
	maxTTL := r.MaxTTL
	if maxTTL <= 0 {
		maxTTL = DefaultMaxSupportTTL
	}
	maxTTL = min(maxTTL, MaxSupportTTL)
	minTTL := MinSupportTTL
	if r.minTTL > 0 {
		minTTL = r.minTTL
	}
	switch {
	case r.TTL <= 0:
		bad("ttl", "is required: how long the access lasts, such as 1h")
	case r.TTL < minTTL:
		bad("ttl", fmt.Sprintf("must be at least %s", minTTL))
	case r.TTL > maxTTL:
		bad("ttl", fmt.Sprintf("must be at most %s; grant again when more time is needed", maxTTL))
	}
	if len(errs) > 0 {
		return &plinth.ValidationError{Errors: errs}
	}
	return nil
}

// schemaOf is the schema of a domain, as layout names it.
func schemaOf(domain string) string { return ident(strings.ReplaceAll(domain, "-", "_")) }

// supportRoleName makes a role name for a person: support_<local part>_<hex>.
func supportRoleName(email string) string {
	local, _, _ := strings.Cut(strings.ToLower(email), "@")
	var b strings.Builder
	for _, r := range local {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			if s := b.String(); s != "" && !strings.HasSuffix(s, "_") {
				b.WriteByte('_')
			}
		}
	}
	name := strings.Trim(b.String(), "_")
	if len(name) > 32 {
		name = strings.TrimRight(name[:32], "_")
	}
	if name == "" {
		name = "user"
	}
	var x [3]byte
	_, _ = rand.Read(x[:])
	return "support_" + name + "_" + hex.EncodeToString(x[:])
}

// newSupportPassword returns a random password of 32 URL-safe characters
// (192 bits).
func newSupportPassword() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// scramVerifier returns the SCRAM-SHA-256 verifier PostgreSQL stores for a
// password (RFC 5802, RFC 7677), so that the password itself never reaches
// the server. The password is ASCII, which SASLprep leaves alone.
func scramVerifier(password string) (string, error) {
	const iterations = 4096
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := mac(salted, "Server Key")
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, enc(salt), enc(storedKey[:]), enc(serverKey)), nil
}

// supportPrivileges says whether the connected user may create roles.
func (s *Store) supportPrivileges(ctx context.Context) (user string, super bool, err error) {
	var createRole bool
	err = s.pool.QueryRow(ctx, `SELECT current_user, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user`).
		Scan(&user, &super, &createRole)
	if err != nil {
		return "", false, s.wrap("support: check the privileges of the connected user", err)
	}
	if !super && !createRole {
		return user, false, fmt.Errorf("postgres: support access needs a database user that may create roles, and %q lacks CREATEROLE: "+
			"run plinth support with a user that has it, or have a DBA run ALTER ROLE %s CREATEROLE", user, quote(user))
	}
	return user, super, nil
}

// ensureSupportTable creates plinth.support_grants when it is missing.
func (s *Store) ensureSupportTable(ctx context.Context) error {
	// The correlation id, which links a grant to the statements of its
	// role in the audit trail, came later: tables made before get it.
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_attribute
WHERE attrelid = to_regclass('"plinth"."support_grants"') AND attname = 'correlation_id' AND NOT attisdropped)`).Scan(&exists); err != nil {
		return s.wrap("support: look for the support grants table", err)
	}
	if exists {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", supportLock); err != nil {
			return err
		}
		return exec(ctx, tx, supportTableDDL)
	})
	return s.wrap("support: create the support grants table", err)
}

// supportTableExists reports whether plinth.support_grants exists.
func (s *Store) supportTableExists(ctx context.Context) (bool, error) {
	var exists bool
	err := s.pool.QueryRow(ctx, `SELECT to_regclass('"plinth"."support_grants"') IS NOT NULL`).Scan(&exists)
	return exists, s.wrap("support: look for the support grants table", err)
}

// pgauditState says whether pgaudit can log a role's statements: "" when it
// can, else why not.
func (s *Store) pgauditState(ctx context.Context) (string, error) {
	var available, loaded bool
	err := s.pool.QueryRow(ctx, `SELECT
	EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgaudit'),
	EXISTS (SELECT 1 FROM pg_settings WHERE name LIKE 'pgaudit.%' AND vartype <> 'string')
	OR coalesce(current_setting('shared_preload_libraries', true), '') ~ '(^|[\s,])"?pgaudit"?($|[\s,])'`).Scan(&available, &loaded)
	if err != nil {
		return "", s.wrap("support: look for pgaudit", err)
	}
	switch {
	case loaded:
		return "", nil
	case available:
		return "the pgaudit extension is installed but not loaded (add it to shared_preload_libraries and restart PostgreSQL)", nil
	}
	return "the pgaudit extension is not available on this server", nil
}

// trustedLines lists the pg_hba.conf lines that would let a support role in
// without a password, as far as the connected user may read them; nil when
// there are none or they cannot be read.
func (s *Store) trustedLines(ctx context.Context, role string) []string {
	rows, err := s.pool.Query(ctx, `SELECT line_number, type, array_to_string(database, ','), array_to_string(user_name, ','), coalesce(address, '')
FROM pg_hba_file_rules
WHERE error IS NULL AND auth_method = 'trust'
  AND (user_name && ARRAY['all', '+'||$1, $2]::text[])
  AND (database && ARRAY['all', current_database()]::text[])
ORDER BY line_number`, SupportGroup, role)
	if err != nil {
		return nil // not superuser: pg_hba_file_rules is not readable
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var line int
		var typ, db, user, addr string
		if rows.Scan(&line, &typ, &db, &user, &addr) != nil {
			return nil
		}
		l := fmt.Sprintf("line %d (%s %s %s", line, typ, db, user)
		if addr != "" {
			l += " " + addr
		}
		out = append(out, l+" trust)")
	}
	return out
}

// GrantSupport creates a time-limited, read-only login role on one domain's
// schema for one person, records it in plinth.support_grants and the audit
// trail, and returns how to connect. The password is in the result only.
func (s *Store) GrantSupport(ctx context.Context, req SupportRequest) (SupportGrant, error) {
	if err := req.validate(); err != nil {
		return SupportGrant{}, err
	}
	_, super, err := s.supportPrivileges(ctx)
	if err != nil {
		return SupportGrant{}, err
	}
	schema := schemaOf(req.Domain)
	var db string
	var tables int
	var schemaExists bool
	err = s.pool.QueryRow(ctx, `SELECT current_database(),
	EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
	(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
	   AND (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND NOT a.attisdropped
	        AND a.attname IN ('version', 'created_at', 'updated_at')) = 3)`, schema).Scan(&db, &schemaExists, &tables)
	if err != nil {
		return SupportGrant{}, s.wrap("support: look for the domain's schema", err)
	}
	if !schemaExists || tables == 0 {
		return SupportGrant{}, &plinth.ValidationError{Errors: []plinth.FieldError{{Field: "domain",
			Detail: fmt.Sprintf("database %q has no entity tables in schema %q: %q is not a domain this store serves, or the store was never prepared for it (plinth serve prepares it)", db, schema, req.Domain)}}}
	}
	if err := s.ensureSupportTable(ctx); err != nil {
		return SupportGrant{}, err
	}
	noPgaudit, err := s.pgauditState(ctx)
	if err != nil {
		return SupportGrant{}, err
	}
	// In production, no grant without its statements audited.
	audit, err := s.statementAuditState(ctx)
	if err != nil {
		return SupportGrant{}, err
	}
	production := req.Environment == plinth.EnvProduction
	auditProblem := audit.problems(super)
	if production && auditProblem != nil {
		return SupportGrant{}, auditProblem
	}
	if req.CorrelationID == "" {
		req.CorrelationID = uuid.NewString()
	}
	password := newSupportPassword()
	verifier, err := scramVerifier(password)
	if err != nil {
		return SupportGrant{}, fmt.Errorf("postgres: support: hash the password: %w", err)
	}
	role := supportRoleName(req.User)
	cc := s.pool.Config().ConnConfig
	g := SupportGrant{Role: role, Password: password, User: req.User, Domain: req.Domain, Schema: schema,
		Database: db, Host: cc.Host, Port: int(cc.Port)}
	var notes []string

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return SupportGrant{}, s.wrap("support: begin", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", supportLock); err != nil {
		return SupportGrant{}, s.wrap("support: lock", err)
	}
	if err := tx.QueryRow(ctx, "SELECT date_trunc('milliseconds', clock_timestamp())").Scan(&g.CreatedAt); err != nil {
		return SupportGrant{}, s.wrap("support: read the server's clock", err)
	}
	g.CreatedAt = g.CreatedAt.UTC()
	g.ExpiresAt = g.CreatedAt.Add(req.TTL)
	r := quote(role)
	stmts := []string{
		fmt.Sprintf("CREATE ROLE %s WITH LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT %d VALID UNTIL %s PASSWORD %s",
			r, supportConnectionLimit, literal(g.ExpiresAt.Format("2006-01-02 15:04:05.000Z07:00")), literal(verifier)),
		fmt.Sprintf("COMMENT ON ROLE %s IS %s", r, literal(fmt.Sprintf("plinth break-glass support access for %s to schema %s of database %s until %s, granted by %s",
			req.User, schema, db, g.ExpiresAt.Format(time.RFC3339), req.GrantedBy))),
		fmt.Sprintf("ALTER ROLE %s SET default_transaction_read_only = on", r),
		fmt.Sprintf("ALTER ROLE %s SET search_path = %s", r, quote(schema)),
		fmt.Sprintf("GRANT CONNECT ON DATABASE %s TO %s", quote(db), r),
		fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", quote(schema), r),
		fmt.Sprintf("GRANT SELECT ON ALL TABLES IN SCHEMA %s TO %s", quote(schema), r),
	}
	if err := exec(ctx, tx, stmts); err != nil {
		return SupportGrant{}, s.supportError("create the support role", err)
	}
	// The group, for pg_hba.conf. Best effort: a user with CREATEROLE may
	// still lack ADMIN on a group another user made (PostgreSQL 16+).
	if err := savepoint(ctx, tx, []string{
		fmt.Sprintf("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s) THEN CREATE ROLE %s NOLOGIN; END IF; END$$",
			literal(SupportGroup), quote(SupportGroup)),
		fmt.Sprintf("COMMENT ON ROLE %s IS %s", quote(SupportGroup), literal("plinth break-glass support roles (members have no privileges through it); name it in pg_hba.conf as +"+SupportGroup)),
		fmt.Sprintf("GRANT %s TO %s", quote(SupportGroup), r),
	}); err != nil {
		notes = append(notes, fmt.Sprintf("The role could not be made a member of the group %s (%s), so pg_hba.conf lines naming +%s do not apply to it.",
			SupportGroup, s.cause(err), SupportGroup))
	}

	// Statement logging (see supportaudit.go).
	if noPgaudit == "" {
		if err := savepoint(ctx, tx, []string{"CREATE EXTENSION IF NOT EXISTS pgaudit"}); err != nil && production {
			return SupportGrant{}, &StatementAuditError{Database: db,
				Missing: []string{"the pgaudit extension could not be created in database " + db + " (" + s.cause(err) + ")"},
				SQL:     []string{"CREATE EXTENSION IF NOT EXISTS pgaudit;"}}
		}
		if err := savepoint(ctx, tx, supportAuditSettings(role, audit.logRows)); err != nil {
			if production {
				user, _, _ := s.supportPrivileges(ctx)
				return SupportGrant{}, &StatementAuditError{Database: db,
					Missing: []string{fmt.Sprintf("the connected user %s may not set pgaudit's settings for the support role (%s)", user, s.cause(err))},
					SQL: []string{fmt.Sprintf("GRANT SET ON PARAMETER pgaudit.log, pgaudit.log_relation, pgaudit.log_parameter%s TO %s; -- or run plinth support as a superuser",
						map[bool]string{true: ", pgaudit.log_rows"}[audit.logRows], quote(user))}}
			}
			noPgaudit = "pgaudit is loaded, but the connected user may not set pgaudit.log for the role (" + s.cause(err) + ")"
		} else {
			g.StatementLogging = true
			note := "Statement logging is on: pgaudit logs every statement of this role (pgaudit.log = 'all', one line per table) to the PostgreSQL server log; plinth support log brings them into the audit trail."
			if auditProblem != nil {
				note += " WARNING: " + strings.Join(auditProblem.Missing, "; ") + " (production refuses such a grant)."
			}
			notes = append(notes, note)
		}
	}
	if noPgaudit != "" {
		note := "Statement logging through pgaudit is NOT enabled: " + noPgaudit + "."
		if super {
			if err := savepoint(ctx, tx, []string{fmt.Sprintf("ALTER ROLE %s SET log_statement = 'all'", r)}); err == nil {
				g.ServerLog = true
				note += " As a fallback, log_statement = 'all' is set for the role, so the PostgreSQL server log records the text of every statement it runs (without pgaudit's object-level detail)."
			}
		}
		if !g.ServerLog {
			note += " The statements this role runs are not logged."
		}
		notes = append(notes, note)
	}
	var others []string
	if err := tx.QueryRow(ctx, `SELECT coalesce(array_agg(datname::text ORDER BY datname), '{}') FROM pg_database
WHERE datallowconn AND datname <> current_database() AND has_database_privilege($1, oid, 'CONNECT')`, role).Scan(&others); err != nil {
		return SupportGrant{}, s.wrap("support: list the databases the role may connect to", err)
	}
	if len(others) > 0 {
		notes = append(notes, fmt.Sprintf("PostgreSQL lets every role connect to databases that grant CONNECT to PUBLIC, so this role may also connect to %s (it can read no table there unless PUBLIC may); restrict +%s to database %s in pg_hba.conf.",
			strings.Join(others, ", "), SupportGroup, db))
	}
	if lines := s.trustedLines(ctx, role); len(lines) > 0 {
		notes = append(notes, fmt.Sprintf("WARNING: pg_hba.conf trusts connections this role could use (%s). PostgreSQL checks VALID UNTIL and the password only for password authentication, so from there the role can log in without the password and after its expiry until the sweep drops it. Require scram-sha-256 for +%s before those lines.",
			strings.Join(lines, "; "), SupportGroup))
	}

	if _, err := tx.Exec(ctx, `INSERT INTO `+supportTable+` (role, user_email, reason, domain, schema_name, granted_by, environment, statement_logging, created_at, expires_at, correlation_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		role, req.User, req.Reason, req.Domain, schema, req.GrantedBy, req.Environment, g.StatementLogging, g.CreatedAt, g.ExpiresAt, req.CorrelationID); err != nil {
		return SupportGrant{}, s.supportError("record the support grant", err)
	}

	// The audit record is durable before the role is committed: no
	// access without its record.
	audited, err := s.auditSupport(ctx, plinth.AuditRecord{
		CorrelationID: req.CorrelationID,
		Environment:   req.Environment,
		Domain:        req.Domain,
		Principal:     principalOf(req.GrantedBy),
		Reason: fmt.Sprintf("grant: read-only support access for %s to schema %s of database %s until %s (%s); reason: %s",
			req.User, schema, db, g.ExpiresAt.Format(time.RFC3339), req.TTL, req.Reason),
		Filters:   map[string]string{"user": req.User, "ttl": req.TTL.String(), "expiresAt": g.ExpiresAt.Format(time.RFC3339)},
		RecordIDs: []string{role},
	})
	if err != nil {
		return SupportGrant{}, fmt.Errorf("postgres: support: the grant was not made because its audit record could not be written: %w", err)
	}
	g.Audited = audited
	g.CorrelationID = req.CorrelationID
	if err := tx.Commit(ctx); err != nil {
		return SupportGrant{}, s.supportError("commit the support grant", err)
	}
	g.Note = strings.Join(notes, "\n")
	g.ConnectHint = "psql " + shellQuote(conninfo(g, cc.TLSConfig != nil && !hasPlainFallback(&cc.Config)))
	return g, nil
}

// hasPlainFallback reports whether the connection may go without TLS.
func hasPlainFallback(cc *pgconn.Config) bool {
	return slices.ContainsFunc(cc.Fallbacks, func(f *pgconn.FallbackConfig) bool { return f.TLSConfig == nil })
}

// conninfo is the libpq connection string of a grant, without password.
func conninfo(g SupportGrant, requireTLS bool) string {
	sslmode := "prefer"
	if requireTLS {
		sslmode = "require"
	}
	kv := func(k, v string) string {
		if v == "" || strings.ContainsAny(v, ` '\`) {
			v = "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
		}
		return k + "=" + v
	}
	return strings.Join([]string{kv("host", g.Host), kv("port", strconv.Itoa(g.Port)), kv("dbname", g.Database),
		kv("user", g.Role), kv("sslmode", sslmode)}, " ")
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if !strings.ContainsAny(s, `"$\`+"`") {
		return `"` + s + `"`
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// savepoint runs statements in a savepoint of tx, rolling back to it when
// one fails, so that tx goes on.
func savepoint(ctx context.Context, tx pgx.Tx, stmts []string) error {
	return pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error { return exec(ctx, sp, stmts) })
}

// supportError wraps an error of a support statement, explaining missing
// privileges.
func (s *Store) supportError(what string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return fmt.Errorf("postgres: support: %s: the connected database user lacks a privilege it needs (%s); support access needs a user with CREATEROLE that owns the domain's tables (or may grant SELECT on them): %w",
			what, pe.Message, err)
	}
	return s.wrap("support: "+what, err)
}

// principalOf is the principal of an admin named by an e-mail or a name.
func principalOf(who string) plinth.Principal {
	p := plinth.Principal{Subject: who}
	if emailRE.MatchString(who) {
		p.Email = who
	}
	return p
}

// auditSupport appends a support audit record when the store keeps an
// audit trail; false when it keeps none.
func (s *Store) auditSupport(ctx context.Context, rec plinth.AuditRecord) (bool, error) {
	a, ok := any(s).(auditAppender)
	if !ok {
		return false, nil
	}
	rec.Time = plinth.Now()
	rec.Operation = "support"
	rec.Decision = plinth.DecisionAllow
	rec.Count = len(rec.RecordIDs)
	if rec.CorrelationID == "" {
		rec.CorrelationID = uuid.NewString()
	}
	if _, err := a.AppendAudit(ctx, []plinth.AuditRecord{rec}); err != nil {
		return false, err
	}
	return true, nil
}

// RevokeSupport ends break-glass access now: it stops new logins of the
// role, ends its sessions, drops it with every privilege it holds, marks
// the grant revoked and audits that, with by as the principal. Only roles
// GrantSupport recorded can be revoked; ErrNotFound for others and for
// grants already revoked.
func (s *Store) RevokeSupport(ctx context.Context, role, by string) error {
	return s.revokeSupport(ctx, role, by, "")
}

func (s *Store) revokeSupport(ctx context.Context, role, by, why string) error {
	by = strings.TrimSpace(by)
	if by == "" {
		return &plinth.ValidationError{Errors: []plinth.FieldError{{Field: "by", Detail: "is required: who revokes the access"}}}
	}
	if !supportRoleRE.MatchString(role) {
		return fmt.Errorf("postgres: support: %q is not a support role (they are named support_<name>_<6 hex digits>): %w", role, plinth.ErrNotFound)
	}
	if ok, err := s.supportTableExists(ctx); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("postgres: support: no support access was ever granted in this database: role %s: %w", role, plinth.ErrNotFound)
	}
	if _, _, err := s.supportPrivileges(ctx); err != nil {
		return err
	}
	var active bool
	var info SupportGrantInfo
	err := s.pool.QueryRow(ctx, `SELECT revoked_at IS NULL, user_email, domain, schema_name, environment, expires_at FROM `+supportTable+` WHERE role = $1`, role).
		Scan(&active, &info.User, &info.Domain, &info.Schema, &info.Environment, &info.ExpiresAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("postgres: support: role %s was not granted by plinth in this database: %w", role, plinth.ErrNotFound)
	case err != nil:
		return s.wrap("support: look up the grant", err)
	case !active:
		return fmt.Errorf("postgres: support: role %s was already revoked: %w", role, plinth.ErrNotFound)
	}
	r := quote(role)
	var exists bool
	if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
		return s.wrap("support: look up the role", err)
	}
	if exists {
		// No new sessions from now on, then end those there are.
		if _, err := s.pool.Exec(ctx, "ALTER ROLE "+r+" NOLOGIN"); err != nil {
			return s.supportError("stop logins of "+role, err)
		}
		if err := s.endSessions(ctx, role); err != nil {
			return err
		}
	}
	revoked := false
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var ok bool
		err := tx.QueryRow(ctx, `SELECT true FROM `+supportTable+` WHERE role = $1 AND revoked_at IS NULL FOR UPDATE`, role).Scan(&ok)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // revoked meanwhile, by another sweep
		}
		if err != nil {
			return err
		}
		if exists {
			// DROP OWNED revokes every privilege the role holds in this
			// database and on shared objects (the database's CONNECT).
			if err := exec(ctx, tx, []string{"DROP OWNED BY " + r, "DROP ROLE IF EXISTS " + r}); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE `+supportTable+` SET revoked_at = clock_timestamp(), revoked_by = $2 WHERE role = $1`, role, by)
		revoked = err == nil
		return err
	})
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "2BP01" {
			return fmt.Errorf("postgres: support: role %s can no longer log in and has no sessions, but cannot be dropped because it holds privileges in another database (%s): drop them there (DROP OWNED BY %s) and run the revoke again",
				role, pe.Detail, r)
		}
		return s.supportError("drop role "+role, err)
	}
	if !revoked {
		return fmt.Errorf("postgres: support: role %s was already revoked: %w", role, plinth.ErrNotFound)
	}
	if why == "" {
		why = "revoke"
	}
	if _, err := s.auditSupport(ctx, plinth.AuditRecord{
		Environment: info.Environment,
		Domain:      info.Domain,
		Principal:   principalOf(by),
		Reason: fmt.Sprintf("%s: support access for %s to schema %s ended (role dropped, sessions ended; it was valid until %s)",
			why, info.User, info.Schema, info.ExpiresAt.UTC().Format(time.RFC3339)),
		Filters:   map[string]string{"user": info.User},
		RecordIDs: []string{role},
	}); err != nil {
		return fmt.Errorf("postgres: support: role %s was revoked, but its audit record could not be written: %w", role, err)
	}
	return nil
}

// endSessions terminates every session of a role, in every database, and
// waits for them to end.
func (s *Store) endSessions(ctx context.Context, role string) error {
	rows, err := s.pool.Query(ctx, `SELECT pid, pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()`, role)
	if err != nil {
		return s.supportError("end the sessions of "+role, err)
	}
	defer rows.Close()
	var stuck []string
	for rows.Next() {
		var pid int
		var ended bool
		if err := rows.Scan(&pid, &ended); err != nil {
			return s.supportError("end the sessions of "+role, err)
		}
		if !ended {
			stuck = append(stuck, strconv.Itoa(pid))
		}
	}
	if err := rows.Err(); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42501" {
			return fmt.Errorf("postgres: support: role %s can no longer log in, but its open sessions cannot be ended: the connected user needs to be a superuser or a member of pg_signal_backend (%s)", role, pe.Message)
		}
		return s.supportError("end the sessions of "+role, err)
	}
	if len(stuck) > 0 {
		return fmt.Errorf("postgres: support: role %s can no longer log in, but sessions %s did not end within 5 seconds; run the revoke again", role, strings.Join(stuck, ", "))
	}
	return nil
}

// SweepSupport revokes every grant whose expiry has passed: it ends the
// role's sessions (which VALID UNTIL does not) and drops it. It returns the
// roles it revoked; an error for any it could not, after trying them all.
func (s *Store) SweepSupport(ctx context.Context) ([]string, error) {
	if ok, err := s.supportTableExists(ctx); err != nil || !ok {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT role FROM `+supportTable+` WHERE revoked_at IS NULL AND expires_at <= clock_timestamp() ORDER BY expires_at, role`)
	if err != nil {
		return nil, s.wrap("support: find expired grants", err)
	}
	roles, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, s.wrap("support: find expired grants", err)
	}
	var revoked []string
	var errs []error
	for _, role := range roles {
		err := s.revokeSupport(ctx, role, SupportSweeper, "expired")
		switch {
		case err == nil:
			revoked = append(revoked, role)
		case errors.Is(err, plinth.ErrNotFound):
			// revoked meanwhile
		default:
			errs = append(errs, err)
		}
	}
	return revoked, errors.Join(errs...)
}

// SupportGrants lists the grants not yet revoked, oldest first, expired
// ones (awaiting the sweep) included and marked.
func (s *Store) SupportGrants(ctx context.Context) ([]SupportGrantInfo, error) {
	if ok, err := s.supportTableExists(ctx); err != nil || !ok {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT role, user_email, reason, domain, schema_name, granted_by, environment, statement_logging, created_at, expires_at,
	expires_at <= clock_timestamp()
FROM `+supportTable+` WHERE revoked_at IS NULL ORDER BY created_at, role`)
	if err != nil {
		return nil, s.wrap("support: list grants", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (SupportGrantInfo, error) {
		var g SupportGrantInfo
		err := row.Scan(&g.Role, &g.User, &g.Reason, &g.Domain, &g.Schema, &g.GrantedBy, &g.Environment, &g.StatementLogging,
			&g.CreatedAt, &g.ExpiresAt, &g.Expired)
		g.CreatedAt, g.ExpiresAt = g.CreatedAt.UTC(), g.ExpiresAt.UTC()
		return g, err
	})
	return out, s.wrap("support: list grants", err)
}
