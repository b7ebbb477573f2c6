package postgres

import (
	"context"
	"fmt"
	"strings"
)

// Statement auditing of support roles.
//
// In production a support role is granted only when every statement it
// runs will be in the audit trail: pgaudit logs it to the server's CSV log,
// and plinth support log (ImportSupportLog) brings it from there into the
// trail. The grant checks, before it creates anything:
//
//   - pgaudit is loaded: shared_preload_libraries lists it (the server has
//     Debian's postgresql-15-pgaudit, or another build of pgaudit);
//   - the extension exists in the database (CREATE EXTENSION pgaudit), or
//     the connected user, a superuser, can create it;
//   - the server writes a CSV log: logging_collector = on and
//     log_destination includes csvlog, and log_min_messages lets LOG
//     messages through;
//   - and, in the grant's transaction, that the connected user may set
//     pgaudit's settings for the role (a superuser may; PostgreSQL 15 lets a
//     superuser allow others: GRANT SET ON PARAMETER pgaudit.log …).
//
// It uses pgaudit's session logging, set on the role itself:
//
//	ALTER ROLE <role> SET pgaudit.log = 'all'          -- read, write, function, role, ddl, misc, misc_set
//	ALTER ROLE <role> SET pgaudit.log_relation = on    -- one line per table read or written, naming it
//	ALTER ROLE <role> SET pgaudit.log_parameter = on   -- bind parameters too
//	ALTER ROLE <role> SET pgaudit.log_rows = on        -- rows returned or changed (pgaudit 1.7+)
//
// pgaudit's settings are superuser-only (PGC_SUSET), so the support role
// cannot turn them off for its session. Object auditing (pgaudit.role) is
// not used: it logs only what its audit role was granted, and would miss a
// statement on any table the grant did not foresee.
//
// Outside production a grant without any of this goes ahead, with a
// warning in its note.

// StatementAuditError says why a production grant was refused: what is
// missing for the support role's statements to be audited, and how to fix
// it.
type StatementAuditError struct {
	Database string
	Missing  []string // one sentence each
	Conf     []string // postgresql.conf lines that fix the server settings
	SQL      []string // statements to run after the restart
}

func (e *StatementAuditError) Error() string {
	var b strings.Builder
	b.WriteString("postgres: support: refusing to grant support access in production: the statements of the support role would not be audited (pgaudit, to a CSV server log that plinth support log reads). Missing:\n")
	for _, m := range e.Missing {
		b.WriteString("  - " + m + "\n")
	}
	if len(e.Conf) > 0 {
		b.WriteString("Set in postgresql.conf (keep any other libraries already in shared_preload_libraries) and restart PostgreSQL:\n")
		for _, l := range e.Conf {
			b.WriteString("    " + l + "\n")
		}
	}
	if len(e.SQL) > 0 {
		fmt.Fprintf(&b, "Then, as a superuser, in database %s:\n", e.Database)
		for _, l := range e.SQL {
			b.WriteString("    " + l + "\n")
		}
	}
	b.WriteString("and grant again.")
	return b.String()
}

// auditState is what the server says about statement auditing.
type auditState struct {
	available, loaded, extension, logRows bool
	preload, destination, collector       string
	minMessages, database                 string
	settingsVisible                       bool
}

// statementAuditState reads the server's pgaudit and logging settings.
func (s *Store) statementAuditState(ctx context.Context) (auditState, error) {
	var a auditState
	err := s.pool.QueryRow(ctx, `SELECT
	EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgaudit'),
	EXISTS (SELECT 1 FROM pg_settings WHERE name = 'pgaudit.log_relation' AND vartype = 'bool'),
	EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgaudit'),
	EXISTS (SELECT 1 FROM pg_settings WHERE name = 'pgaudit.log_rows' AND vartype = 'bool'),
	coalesce((SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), ''),
	coalesce((SELECT setting FROM pg_settings WHERE name = 'log_destination'), ''),
	coalesce((SELECT setting FROM pg_settings WHERE name = 'logging_collector'), ''),
	coalesce((SELECT setting FROM pg_settings WHERE name = 'log_min_messages'), ''),
	current_database(),
	EXISTS (SELECT 1 FROM pg_settings WHERE name = 'shared_preload_libraries')`).Scan(
		&a.available, &a.loaded, &a.extension, &a.logRows, &a.preload, &a.destination, &a.collector,
		&a.minMessages, &a.database, &a.settingsVisible)
	return a, s.wrap("support: read the server's pgaudit and logging settings", err)
}

// listHas reports whether a comma-separated setting lists name.
func listHas(list, name string) bool {
	for _, l := range strings.Split(list, ",") {
		if strings.EqualFold(strings.Trim(strings.TrimSpace(l), `"`), name) {
			return true
		}
	}
	return false
}

// problems lists what keeps the support role's statements from being
// audited; nil when nothing does. super says whether the connected user
// can create the extension.
func (a auditState) problems(super bool) *StatementAuditError {
	e := &StatementAuditError{Database: a.database}
	if !a.settingsVisible {
		e.Missing = append(e.Missing, "the connected database user may not read the server's settings (shared_preload_libraries, log_destination), so plinth cannot check that statements are audited: run plinth support with a superuser, or GRANT pg_read_all_settings TO the user")
		return e
	}
	if !a.loaded {
		preload := "pgaudit"
		if p := strings.TrimSpace(a.preload); p != "" && !listHas(p, "pgaudit") {
			preload = p + ",pgaudit"
		}
		switch {
		case listHas(a.preload, "pgaudit"):
			e.Missing = append(e.Missing, "shared_preload_libraries lists pgaudit but pgaudit is not loaded: restart PostgreSQL")
		case !a.available:
			e.Missing = append(e.Missing, "the pgaudit extension is not installed on the database server: install it (Debian: apt-get install postgresql-15-pgaudit) and preload it")
			e.Conf = append(e.Conf, "shared_preload_libraries = '"+preload+"'")
		default:
			e.Missing = append(e.Missing, "pgaudit is installed but not loaded: shared_preload_libraries does not list it (it is "+quoteSetting(a.preload)+")")
			e.Conf = append(e.Conf, "shared_preload_libraries = '"+preload+"'")
		}
	}
	if !a.extension && (!super || !a.available) {
		e.Missing = append(e.Missing, fmt.Sprintf("the pgaudit extension is not created in database %s, and the connected user is not a superuser who could create it", a.database))
		e.SQL = append(e.SQL, "CREATE EXTENSION IF NOT EXISTS pgaudit;")
	}
	if a.collector != "on" {
		e.Missing = append(e.Missing, "logging_collector is off, so the server writes no log files plinth can read (a CSV log needs the collector)")
		e.Conf = append(e.Conf, "logging_collector = on")
	}
	if !listHas(a.destination, "csvlog") {
		dest := "csvlog"
		if d := strings.TrimSpace(a.destination); d != "" {
			dest = d + ",csvlog"
		}
		e.Missing = append(e.Missing, "log_destination does not include csvlog (it is "+quoteSetting(a.destination)+"), so plinth support log has no CSV log to read the audited statements from")
		e.Conf = append(e.Conf, "log_destination = '"+dest+"'")
	}
	if a.minMessages == "fatal" || a.minMessages == "panic" {
		e.Missing = append(e.Missing, "log_min_messages is "+a.minMessages+", which drops pgaudit's LOG messages")
		e.Conf = append(e.Conf, "log_min_messages = warning")
	}
	if len(e.Missing) == 0 {
		return nil
	}
	if len(e.Conf) > 0 {
		// Readable by the group, so that plinth support log can run as a
		// member of the server's group.
		e.Conf = append(e.Conf, "log_file_mode = 0640")
	}
	return e
}

func quoteSetting(v string) string {
	if strings.TrimSpace(v) == "" {
		return "empty"
	}
	return "'" + v + "'"
}

// supportAuditSettings are the role settings that make pgaudit log every
// statement of a support role; logRows adds pgaudit.log_rows (pgaudit
// 1.7+).
func supportAuditSettings(role string, logRows bool) []string {
	r := quote(role)
	stmts := []string{
		fmt.Sprintf("ALTER ROLE %s SET pgaudit.log = 'all'", r),
		fmt.Sprintf("ALTER ROLE %s SET pgaudit.log_relation = on", r),
		fmt.Sprintf("ALTER ROLE %s SET pgaudit.log_parameter = on", r),
	}
	if logRows {
		stmts = append(stmts, fmt.Sprintf("ALTER ROLE %s SET pgaudit.log_rows = on", r))
	}
	return stmts
}
