package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/plinth-data/plinth"
)

// The store keeps service-token grants and access policies in two tables
// next to the records, created by Prepare:
//
//   - plinth_grants: one row per grant, keyed by its ID (text, compared by
//     its bytes, so pages come in the order Go sorts strings); methods as
//     a JSON array; times as UTC text at microsecond precision; expires_at
//     NULL when the grant has no expiry (a zero ExpiresAt).
//   - plinth_access_policies: one row per domain and environment, the group
//     lists and entity overrides as JSON.
//
// Nil lists (Grant.Methods and the group lists of AccessPolicy) are stored
// as empty lists and come back as empty, non-nil slices. An AccessPolicy
// without entity overrides comes back with a nil Entities map. Within an
// EntityPolicy a nil list ("keep the domain's groups") and an empty one
// ("no group") are kept apart.

var (
	_ plinth.AccessStore = (*Store)(nil)
	_ plinth.AccessTx    = (*tx)(nil)
)

// writer is what the writer connection (s.write) and a write transaction
// share: the Store's access writes run on the first, the Tx's on the
// second, through the same code.
type writer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// accessSchema creates the access tables; Prepare runs it.
var accessSchema = []string{
	`CREATE TABLE IF NOT EXISTS "plinth_grants" (
	"id" TEXT PRIMARY KEY NOT NULL,
	"consumer" TEXT NOT NULL,
	"consumer_type" TEXT NOT NULL,
	"api" TEXT NOT NULL,
	"endpoint" TEXT NOT NULL,
	"methods" TEXT NOT NULL,
	"environment" TEXT NOT NULL,
	"expires_at" TEXT,
	"requested_by" TEXT NOT NULL,
	"authorised_by" TEXT NOT NULL,
	"enabled" INTEGER NOT NULL,
	"created_at" TEXT NOT NULL,
	"updated_at" TEXT NOT NULL,
	"contract" TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS "plinth_access_policies" (
	"domain" TEXT NOT NULL,
	"environment" TEXT NOT NULL,
	"read_groups" TEXT NOT NULL,
	"write_groups" TEXT NOT NULL,
	"reporting_groups" TEXT NOT NULL,
	"entities" TEXT NOT NULL,
	"write_implies_read" INTEGER NOT NULL,
	"updated_at" TEXT NOT NULL,
	PRIMARY KEY ("domain", "environment")
) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS "plinth_access_policies__by_environment" ON "plinth_access_policies" ("environment", "domain")`,
}

const grantCols = `"id", "consumer", "consumer_type", "api", "endpoint", "methods", "environment", "expires_at",
	"requested_by", "authorised_by", "enabled", "created_at", "updated_at", "contract"`

const (
	insertGrantSQL = `INSERT INTO "plinth_grants" (` + grantCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	getGrantSQL    = `SELECT ` + grantCols + ` FROM "plinth_grants" WHERE "id" = ?`
	enableGrantSQL = `UPDATE "plinth_grants" SET "enabled" = ?, "updated_at" = ? WHERE "id" = ? RETURNING ` + grantCols
	listGrantsSQL  = `SELECT ` + grantCols + ` FROM "plinth_grants" WHERE "id" > ? ORDER BY "id"`

	policyCols   = `"domain", "environment", "read_groups", "write_groups", "reporting_groups", "entities", "write_implies_read", "updated_at"`
	putPolicySQL = `INSERT INTO "plinth_access_policies" (` + policyCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT ("domain", "environment") DO UPDATE SET
		"read_groups" = excluded."read_groups",
		"write_groups" = excluded."write_groups",
		"reporting_groups" = excluded."reporting_groups",
		"entities" = excluded."entities",
		"write_implies_read" = excluded."write_implies_read",
		"updated_at" = excluded."updated_at"`
	deletePolicySQL = `DELETE FROM "plinth_access_policies" WHERE "domain" = ? AND "environment" = ?`
	listPoliciesSQL = `SELECT ` + policyCols + ` FROM "plinth_access_policies" WHERE "environment" = ? ORDER BY "domain"`
)

// prepareAccess creates the access tables when they are missing, and
// adds the contract column to a grants table made before it.
func (x *tx) prepareAccess(ctx context.Context) error {
	for _, q := range accessSchema {
		if _, err := x.tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	var n int
	if err := x.tx.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('plinth_grants') WHERE name = 'contract'`).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		_, err := x.tx.ExecContext(ctx, `ALTER TABLE "plinth_grants" ADD COLUMN "contract" TEXT NOT NULL DEFAULT ''`)
		return err
	}
	return nil
}

// CreateGrant stores a new grant; plinth.ErrConflict when its ID exists.
// A zero CreatedAt becomes plinth.Now() and a zero UpdatedAt the
// CreatedAt; times are kept at microsecond precision, in UTC. Inside a
// Write, use the Tx's CreateGrant (plinth.AccessTx): this one would wait
// for the transaction it is called from. The same holds for the Store's
// SetGrantEnabled, PutPolicy and DeletePolicy.
func (s *Store) CreateGrant(ctx context.Context, g plinth.Grant) error {
	return createGrant(ctx, s.write, g)
}

// CreateGrant is Store.CreateGrant within the write transaction.
func (x *tx) CreateGrant(ctx context.Context, g plinth.Grant) error {
	return createGrant(ctx, x.tx, g)
}

func createGrant(ctx context.Context, w writer, g plinth.Grant) error {
	if g.ID == "" {
		return errors.New("sqlite: create grant: the grant has no ID")
	}
	if g.CreatedAt.IsZero() {
		g.CreatedAt = plinth.Now()
	}
	if g.UpdatedAt.IsZero() {
		g.UpdatedAt = g.CreatedAt
	}
	methods, err := json.Marshal(nonNil(g.Methods))
	if err != nil {
		return fmt.Errorf("sqlite: create grant %q: %w", g.ID, err)
	}
	var expires any
	if !g.ExpiresAt.IsZero() {
		expires = accessTime(g.ExpiresAt)
	}
	_, err = w.ExecContext(ctx, insertGrantSQL, g.ID, g.Consumer, g.ConsumerType, g.API, g.Endpoint,
		string(methods), g.Environment, expires, g.RequestedBy, g.AuthorisedBy, g.Enabled,
		accessTime(g.CreatedAt), accessTime(g.UpdatedAt), g.Contract)
	if err != nil {
		if isKeyConflict(err) {
			return fmt.Errorf("sqlite: create grant %q: %w", g.ID, plinth.ErrConflict)
		}
		return fail(fmt.Sprintf("create grant %q", g.ID), err)
	}
	return nil
}

// Grant returns one grant; plinth.ErrNotFound when there is none.
func (s *Store) Grant(ctx context.Context, id string) (plinth.Grant, error) {
	rows, err := s.query(ctx, getGrantSQL, id)
	if err != nil {
		return plinth.Grant{}, fail(fmt.Sprintf("get grant %q", id), err)
	}
	return oneGrant(rows, "get", id)
}

// SetGrantEnabled enables or disables a grant, setting its UpdatedAt to
// plinth.Now(), and returns it; plinth.ErrNotFound when there is none.
func (s *Store) SetGrantEnabled(ctx context.Context, id string, enabled bool) (plinth.Grant, error) {
	return setGrantEnabled(ctx, s.write, id, enabled)
}

// SetGrantEnabled is Store.SetGrantEnabled within the write transaction.
func (x *tx) SetGrantEnabled(ctx context.Context, id string, enabled bool) (plinth.Grant, error) {
	return setGrantEnabled(ctx, x.tx, id, enabled)
}

func setGrantEnabled(ctx context.Context, w writer, id string, enabled bool) (plinth.Grant, error) {
	rows, err := w.QueryContext(ctx, enableGrantSQL, enabled, accessTime(plinth.Now()), id)
	if err != nil {
		return plinth.Grant{}, fail(fmt.Sprintf("update grant %q", id), err)
	}
	return oneGrant(rows, "update", id)
}

// oneGrant reads the only grant of rows and closes them.
func oneGrant(rows *sql.Rows, op, id string) (plinth.Grant, error) {
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return plinth.Grant{}, fail(fmt.Sprintf("%s grant %q", op, id), err)
		}
		return plinth.Grant{}, fmt.Errorf("sqlite: grant %q: %w", id, plinth.ErrNotFound)
	}
	g, err := scanGrant(rows.Scan)
	if err != nil {
		return plinth.Grant{}, fmt.Errorf("sqlite: %s grant %q: %w", op, id, err)
	}
	if err := rows.Close(); err != nil {
		return plinth.Grant{}, fail(fmt.Sprintf("%s grant %q", op, id), err)
	}
	return g, nil
}

// Grants lists up to limit grants (20 when limit <= 0) in ID order, after
// the ID after; more reports whether others follow.
func (s *Store) Grants(ctx context.Context, after string, limit int) ([]plinth.Grant, bool, error) {
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	rows, err := s.query(ctx, listGrantsSQL+limitSQL(limit+1), after)
	if err != nil {
		return nil, false, fail("list grants", err)
	}
	defer rows.Close()
	grants := []plinth.Grant{}
	more := false
	for rows.Next() {
		if len(grants) == limit {
			more = true
			break
		}
		g, err := scanGrant(rows.Scan)
		if err != nil {
			return nil, false, fmt.Errorf("sqlite: list grants: %w", err)
		}
		grants = append(grants, g)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fail("list grants", err)
	}
	return grants, more, nil
}

func scanGrant(scan func(...any) error) (plinth.Grant, error) {
	var (
		g                plinth.Grant
		methods          string
		expires          sql.NullString
		created, updated string
		err              error
	)
	if err := scan(&g.ID, &g.Consumer, &g.ConsumerType, &g.API, &g.Endpoint, &methods, &g.Environment, &expires,
		&g.RequestedBy, &g.AuthorisedBy, &g.Enabled, &created, &updated, &g.Contract); err != nil {
		return g, err
	}
	if g.Methods, err = decodeList(methods); err != nil {
		return g, fmt.Errorf("methods: %w", err)
	}
	if expires.Valid {
		if g.ExpiresAt, err = parseStoredTime(expires.String); err != nil {
			return g, fmt.Errorf("expires_at: %w", err)
		}
	}
	if g.CreatedAt, err = parseStoredTime(created); err != nil {
		return g, fmt.Errorf("created_at: %w", err)
	}
	if g.UpdatedAt, err = parseStoredTime(updated); err != nil {
		return g, fmt.Errorf("updated_at: %w", err)
	}
	return g, nil
}

// storedEntityPolicy is how an entity override is kept: without
// omitempty, so that a nil list (null) and an empty one ([]) stay apart.
type storedEntityPolicy struct {
	ReadGroups  []string `json:"readGroups"`
	WriteGroups []string `json:"writeGroups"`
}

// PutPolicy creates or replaces the policy of its domain and environment,
// setting its UpdatedAt to plinth.Now().
func (s *Store) PutPolicy(ctx context.Context, p plinth.AccessPolicy) error {
	return putPolicy(ctx, s.write, p)
}

// PutPolicy is Store.PutPolicy within the write transaction.
func (x *tx) PutPolicy(ctx context.Context, p plinth.AccessPolicy) error {
	return putPolicy(ctx, x.tx, p)
}

func putPolicy(ctx context.Context, w writer, p plinth.AccessPolicy) error {
	what := fmt.Sprintf("put policy %s/%s", p.Domain, p.Environment)
	if p.Domain == "" || p.Environment == "" {
		return fmt.Errorf("sqlite: %s: the policy needs a domain and an environment", what)
	}
	enc, err := encodePolicy(p)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	_, err = w.ExecContext(ctx, putPolicySQL, p.Domain, p.Environment, enc.read, enc.write, enc.reporting,
		enc.entities, p.WriteImpliesRead, accessTime(plinth.Now()))
	if err != nil {
		return fail(what, err)
	}
	return nil
}

// DeletePolicy removes a policy; plinth.ErrNotFound when there is none.
func (s *Store) DeletePolicy(ctx context.Context, domain, environment string) error {
	return deletePolicy(ctx, s.write, domain, environment)
}

// DeletePolicy is Store.DeletePolicy within the write transaction.
func (x *tx) DeletePolicy(ctx context.Context, domain, environment string) error {
	return deletePolicy(ctx, x.tx, domain, environment)
}

func deletePolicy(ctx context.Context, w writer, domain, environment string) error {
	res, err := w.ExecContext(ctx, deletePolicySQL, domain, environment)
	if err != nil {
		return fail(fmt.Sprintf("delete policy %s/%s", domain, environment), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(fmt.Sprintf("delete policy %s/%s", domain, environment), err)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: policy %s/%s: %w", domain, environment, plinth.ErrNotFound)
	}
	return nil
}

// Policies returns every policy of an environment, by domain (byte order).
func (s *Store) Policies(ctx context.Context, environment string) ([]plinth.AccessPolicy, error) {
	rows, err := s.query(ctx, listPoliciesSQL, environment)
	if err != nil {
		return nil, fail("list policies", err)
	}
	defer rows.Close()
	policies := []plinth.AccessPolicy{}
	for rows.Next() {
		var (
			p                                 plinth.AccessPolicy
			read, write, reporting, ents, upd string
		)
		if err := rows.Scan(&p.Domain, &p.Environment, &read, &write, &reporting, &ents, &p.WriteImpliesRead, &upd); err != nil {
			return nil, fail("list policies", err)
		}
		if err := decodePolicy(&p, read, write, reporting, ents); err != nil {
			return nil, fmt.Errorf("sqlite: policy %s/%s: %w", p.Domain, p.Environment, err)
		}
		if p.UpdatedAt, err = parseStoredTime(upd); err != nil {
			return nil, fmt.Errorf("sqlite: policy %s/%s: updated_at: %w", p.Domain, p.Environment, err)
		}
		policies = append(policies, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("list policies", err)
	}
	return policies, nil
}

// encodedPolicy holds the JSON columns of a policy.
type encodedPolicy struct {
	read, write, reporting, entities string
}

func encodePolicy(p plinth.AccessPolicy) (encodedPolicy, error) {
	var enc encodedPolicy
	for _, l := range []struct {
		dst   *string
		names []string
	}{{&enc.read, p.ReadGroups}, {&enc.write, p.WriteGroups}, {&enc.reporting, p.ReportingGroups}} {
		b, err := json.Marshal(nonNil(l.names))
		if err != nil {
			return enc, err
		}
		*l.dst = string(b)
	}
	ents := make(map[string]storedEntityPolicy, len(p.Entities))
	for name, ep := range p.Entities {
		ents[name] = storedEntityPolicy(ep)
	}
	b, err := json.Marshal(ents)
	if err != nil {
		return enc, err
	}
	enc.entities = string(b)
	return enc, nil
}

func decodePolicy(p *plinth.AccessPolicy, read, write, reporting, ents string) error {
	var err error
	if p.ReadGroups, err = decodeList(read); err != nil {
		return fmt.Errorf("read_groups: %w", err)
	}
	if p.WriteGroups, err = decodeList(write); err != nil {
		return fmt.Errorf("write_groups: %w", err)
	}
	if p.ReportingGroups, err = decodeList(reporting); err != nil {
		return fmt.Errorf("reporting_groups: %w", err)
	}
	var stored map[string]storedEntityPolicy
	if err := json.Unmarshal([]byte(ents), &stored); err != nil {
		return fmt.Errorf("entities: %w", err)
	}
	if len(stored) > 0 {
		p.Entities = make(map[string]plinth.EntityPolicy, len(stored))
		for name, ep := range stored {
			p.Entities[name] = plinth.EntityPolicy(ep)
		}
	}
	return nil
}

// decodeList reads a JSON array of strings; never nil.
func decodeList(s string) ([]string, error) {
	list := []string{}
	if err := json.Unmarshal([]byte(s), &list); err != nil {
		return nil, err
	}
	if list == nil { // the text was null
		list = []string{}
	}
	return list, nil
}

// nonNil returns list, or an empty list for nil.
func nonNil(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}

// accessTime formats a time of the access tables: UTC, microseconds.
func accessTime(t time.Time) string { return formatStoredTime(t.Truncate(time.Microsecond)) }
