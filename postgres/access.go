package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/plinth-data/plinth"
)

// The store keeps service-token grants and access policies in the schema
// "plinth", which Plan and Prepare create with the domains' schemas:
//
//   - plinth.grants: one row per grant, keyed by its ID (text COLLATE "C",
//     so pages come in the byte order Go sorts strings); methods as text[];
//     times as timestamptz (microseconds); expires_at NULL when the grant
//     has no expiry (a zero ExpiresAt).
//   - plinth.access_policies: one row per domain and environment, the group
//     lists and entity overrides as jsonb.
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

// writer is what the pool and a write transaction share: the Store's
// access writes run on the first, the Tx's on the second, through the same
// code.
type writer interface {
	execer
	querier
}

// systemSchema holds the tables plinth keeps for itself.
const systemSchema = "plinth"

// accessTable is one of the fixed tables of the system schema.
type accessTable struct {
	name    string   // unquoted, in systemSchema
	what    string   // for the plan
	cols    []string // every column, to recognise the table
	create  []string // the DDL
	comment string
	// added are columns later versions added ("name type"): a table made
	// before gets them.
	added []string
	// indexOptions are the storage parameters some of its indexes must
	// have (index name → "name = value, …"): an index made before with
	// others is given them.
	indexOptions map[string]string
}

var accessTables = []accessTable{
	{
		name: "grants",
		what: "service-token grants",
		cols: []string{"id", "consumer", "consumer_type", "api", "endpoint", "methods", "environment", "expires_at",
			"requested_by", "authorised_by", "enabled", "created_at", "updated_at"},
		create: []string{`CREATE TABLE IF NOT EXISTS "plinth"."grants" (
	"id" text COLLATE "C" PRIMARY KEY,
	"consumer" text NOT NULL,
	"consumer_type" text NOT NULL,
	"api" text NOT NULL,
	"endpoint" text NOT NULL,
	"methods" text[] NOT NULL,
	"environment" text NOT NULL,
	"expires_at" timestamptz,
	"requested_by" text NOT NULL,
	"authorised_by" text NOT NULL,
	"enabled" boolean NOT NULL,
	"created_at" timestamptz NOT NULL,
	"updated_at" timestamptz NOT NULL,
	"contract" text NOT NULL DEFAULT ''
)`,
			`COMMENT ON TABLE "plinth"."grants" IS 'Service-token grants: what each consumer may call. Kept by plinth.'`,
		},
		added: []string{`"contract" text NOT NULL DEFAULT ''`},
	},
	{
		name: "access_policies",
		what: "access policies (the user groups of each domain and environment)",
		cols: []string{"domain", "environment", "read_groups", "write_groups", "reporting_groups", "entities",
			"write_implies_read", "updated_at"},
		create: []string{`CREATE TABLE IF NOT EXISTS "plinth"."access_policies" (
	"domain" text COLLATE "C" NOT NULL,
	"environment" text COLLATE "C" NOT NULL,
	"read_groups" jsonb NOT NULL,
	"write_groups" jsonb NOT NULL,
	"reporting_groups" jsonb NOT NULL,
	"entities" jsonb NOT NULL,
	"write_implies_read" boolean NOT NULL,
	"updated_at" timestamptz NOT NULL,
	PRIMARY KEY ("domain", "environment")
)`,
			`CREATE INDEX IF NOT EXISTS "access_policies__by_environment" ON "plinth"."access_policies" ("environment", "domain")`,
			`COMMENT ON TABLE "plinth"."access_policies" IS 'Which user groups may use each domain''s API in each environment. Kept by plinth.'`,
		},
	},
}

// planAccess adds to p what it takes to create the access tables. A
// table of that name that lacks any of the columns was not made by plinth
// and is refused. schemaPlanned reports whether p already creates the
// system schema (for a domain of that name).
func planAccess(ctx context.Context, q querier, p *Plan, tables []*table, schemaPlanned bool) error {
	for _, t := range tables {
		for _, at := range systemTables() {
			if t.schema == systemSchema && t.name == at.name {
				p.Refusals = append(p.Refusals, fmt.Sprintf("%s: entity %q of domain %q would be stored in the table plinth keeps its %s in; give the entity another plural or the domain another name",
					t.label, t.e.Name, t.e.Domain.Name, at.what))
			}
		}
	}
	var n int
	if err := q.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", systemSchema).Scan(&n); err != nil {
		return err
	}
	if n == 0 && !schemaPlanned {
		p.Steps = append(p.Steps, Step{Comment: "create the schema plinth keeps its own tables in",
			SQL: []string{"CREATE SCHEMA IF NOT EXISTS " + quote(systemSchema)}})
	}
	for _, at := range systemTables() {
		label := systemSchema + "." + at.name
		var have []string
		if n > 0 {
			rows, err := q.Query(ctx, `SELECT a.attname FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace ns ON ns.oid = c.relnamespace
WHERE ns.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped`, systemSchema, at.name)
			if err != nil {
				return err
			}
			if have, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return err
			}
		}
		if len(have) == 0 {
			p.Steps = append(p.Steps, Step{Table: label, Comment: "create the table of " + at.what, SQL: at.create})
			continue
		}
		var missing []string
		for _, c := range at.cols {
			if !slices.Contains(have, c) {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			p.Refusals = append(p.Refusals, fmt.Sprintf("%s: the table exists but has no column %s, so plinth did not make it; move it away so that plinth can keep its %s there",
				label, strings.Join(missing, ", "), at.what))
			continue
		}
		for _, col := range at.added {
			if name, _, _ := strings.Cut(col, " "); !slices.Contains(have, strings.Trim(name, `"`)) {
				p.Steps = append(p.Steps, Step{Table: label, Comment: "add the column " + name + " to the table of " + at.what,
					SQL: []string{"ALTER TABLE " + quote(systemSchema) + "." + quote(at.name) + " ADD COLUMN IF NOT EXISTS " + col}})
			}
		}
		if err := planIndexOptions(ctx, q, p, label, at); err != nil {
			return err
		}
	}
	return nil
}

// planIndexOptions adds to p the steps that give at's existing indexes
// the storage parameters they must have (accessTable.indexOptions).
func planIndexOptions(ctx context.Context, q querier, p *Plan, label string, at accessTable) error {
	for _, index := range slices.Sorted(maps.Keys(at.indexOptions)) {
		var have []string
		err := q.QueryRow(ctx, `SELECT coalesce(c.reloptions, '{}') FROM pg_class c
JOIN pg_namespace ns ON ns.oid = c.relnamespace WHERE ns.nspname = $1 AND c.relname = $2`, systemSchema, index).Scan(&have)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // CREATE INDEX IF NOT EXISTS makes it with them
		} else if err != nil {
			return err
		}
		want := at.indexOptions[index]
		for _, o := range strings.Split(want, ",") {
			if !slices.Contains(have, strings.ReplaceAll(o, " ", "")) {
				p.Steps = append(p.Steps, Step{Table: label, Comment: "set the storage parameters of the index " + index + " of the table of " + at.what,
					SQL: []string{"ALTER INDEX " + quote(systemSchema) + "." + quote(index) + " SET (" + want + ")"}})
				break
			}
		}
	}
	return nil
}

// systemTables are the fixed tables of the system schema, in the order
// they are created.
func systemTables() []accessTable {
	return slices.Concat(accessTables, auditTables, outboxTables, checkpointTables, changeTables)
}

const grantCols = `id, consumer, consumer_type, api, endpoint, methods, environment, expires_at,
	requested_by, authorised_by, enabled, created_at, updated_at, contract`

const (
	insertGrantSQL = `INSERT INTO plinth.grants (` + grantCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
	ON CONFLICT (id) DO NOTHING`
	getGrantSQL    = `SELECT ` + grantCols + ` FROM plinth.grants WHERE id = $1`
	enableGrantSQL = `UPDATE plinth.grants SET enabled = $2, updated_at = $3 WHERE id = $1 RETURNING ` + grantCols
	listGrantsSQL  = `SELECT ` + grantCols + ` FROM plinth.grants WHERE id > $1 ORDER BY id LIMIT $2`

	policyCols   = `domain, environment, read_groups, write_groups, reporting_groups, entities, write_implies_read, updated_at`
	putPolicySQL = `INSERT INTO plinth.access_policies (` + policyCols + `)
	VALUES ($1, $2, $3::jsonb, $4::jsonb, $5::jsonb, $6::jsonb, $7, $8)
	ON CONFLICT (domain, environment) DO UPDATE SET
		read_groups = excluded.read_groups,
		write_groups = excluded.write_groups,
		reporting_groups = excluded.reporting_groups,
		entities = excluded.entities,
		write_implies_read = excluded.write_implies_read,
		updated_at = excluded.updated_at`
	deletePolicySQL = `DELETE FROM plinth.access_policies WHERE domain = $1 AND environment = $2`
	listPoliciesSQL = `SELECT ` + policyCols + ` FROM plinth.access_policies WHERE environment = $1 ORDER BY domain`
)

// CreateGrant stores a new grant; plinth.ErrConflict when its ID exists.
// A zero CreatedAt becomes plinth.Now() and a zero UpdatedAt the
// CreatedAt; times are kept at microsecond precision.
func (s *Store) CreateGrant(ctx context.Context, g plinth.Grant) error {
	return s.createGrant(ctx, s.pool, g)
}

// CreateGrant is Store.CreateGrant within the write transaction.
func (x *tx) CreateGrant(ctx context.Context, g plinth.Grant) error {
	return x.s.createGrant(ctx, x.tx, g)
}

func (s *Store) createGrant(ctx context.Context, w writer, g plinth.Grant) error {
	what := fmt.Sprintf("create grant %q", g.ID)
	if g.ID == "" {
		return errors.New("postgres: create grant: the grant has no ID")
	}
	if g.CreatedAt.IsZero() {
		g.CreatedAt = plinth.Now()
	}
	if g.UpdatedAt.IsZero() {
		g.UpdatedAt = g.CreatedAt
	}
	var expires any
	if !g.ExpiresAt.IsZero() {
		expires = micro(g.ExpiresAt)
	}
	tag, err := w.Exec(ctx, insertGrantSQL, g.ID, g.Consumer, g.ConsumerType, g.API, g.Endpoint, nonNil(g.Methods),
		g.Environment, expires, g.RequestedBy, g.AuthorisedBy, g.Enabled, micro(g.CreatedAt), micro(g.UpdatedAt), g.Contract)
	if err == nil && tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: %s: %w", what, plinth.ErrConflict)
	}
	return s.wrap(what, err)
}

// Grant returns one grant; plinth.ErrNotFound when there is none.
func (s *Store) Grant(ctx context.Context, id string) (plinth.Grant, error) {
	var g plinth.Grant
	err := s.read(ctx, fmt.Sprintf("get grant %q", id), func() (err error) {
		g, err = scanGrant(s.pool.QueryRow(ctx, getGrantSQL, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: grant %q: %w", id, plinth.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return plinth.Grant{}, err
	}
	return g, nil
}

// SetGrantEnabled enables or disables a grant, setting its UpdatedAt to
// plinth.Now(), and returns it; plinth.ErrNotFound when there is none.
func (s *Store) SetGrantEnabled(ctx context.Context, id string, enabled bool) (plinth.Grant, error) {
	return s.setGrantEnabled(ctx, s.pool, id, enabled)
}

// SetGrantEnabled is Store.SetGrantEnabled within the write transaction.
func (x *tx) SetGrantEnabled(ctx context.Context, id string, enabled bool) (plinth.Grant, error) {
	return x.s.setGrantEnabled(ctx, x.tx, id, enabled)
}

func (s *Store) setGrantEnabled(ctx context.Context, w writer, id string, enabled bool) (plinth.Grant, error) {
	g, err := scanGrant(w.QueryRow(ctx, enableGrantSQL, id, enabled, plinth.Now()))
	if errors.Is(err, pgx.ErrNoRows) {
		return plinth.Grant{}, fmt.Errorf("postgres: grant %q: %w", id, plinth.ErrNotFound)
	}
	if err != nil {
		return plinth.Grant{}, s.wrap(fmt.Sprintf("update grant %q", id), err)
	}
	return g, nil
}

// Grants lists up to limit grants (20 when limit <= 0) in ID order, after
// the ID after; more reports whether others follow.
func (s *Store) Grants(ctx context.Context, after string, limit int) ([]plinth.Grant, bool, error) {
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	var grants []plinth.Grant
	err := s.read(ctx, "list grants", func() error {
		grants = []plinth.Grant{}
		rows, err := s.pool.Query(ctx, listGrantsSQL, after, limit+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			g, err := scanGrant(rows)
			if err != nil {
				return err
			}
			grants = append(grants, g)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, false, err
	}
	if len(grants) > limit {
		return grants[:limit], true, nil
	}
	return grants, false, nil
}

func scanGrant(row pgx.Row) (plinth.Grant, error) {
	var (
		g       plinth.Grant
		expires *time.Time
	)
	err := row.Scan(&g.ID, &g.Consumer, &g.ConsumerType, &g.API, &g.Endpoint, &g.Methods, &g.Environment, &expires,
		&g.RequestedBy, &g.AuthorisedBy, &g.Enabled, &g.CreatedAt, &g.UpdatedAt, &g.Contract)
	if err != nil {
		return plinth.Grant{}, err
	}
	g.Methods = nonNil(g.Methods)
	if expires != nil {
		g.ExpiresAt = expires.UTC()
	}
	g.CreatedAt, g.UpdatedAt = g.CreatedAt.UTC(), g.UpdatedAt.UTC()
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
	return s.putPolicy(ctx, s.pool, p)
}

// PutPolicy is Store.PutPolicy within the write transaction.
func (x *tx) PutPolicy(ctx context.Context, p plinth.AccessPolicy) error {
	return x.s.putPolicy(ctx, x.tx, p)
}

func (s *Store) putPolicy(ctx context.Context, w writer, p plinth.AccessPolicy) error {
	what := fmt.Sprintf("put policy %s/%s", p.Domain, p.Environment)
	if p.Domain == "" || p.Environment == "" {
		return fmt.Errorf("postgres: %s: the policy needs a domain and an environment", what)
	}
	var lists [3]string
	for i, l := range [][]string{p.ReadGroups, p.WriteGroups, p.ReportingGroups} {
		b, err := json.Marshal(nonNil(l))
		if err != nil {
			return fmt.Errorf("postgres: %s: %w", what, err)
		}
		lists[i] = string(b)
	}
	ents := make(map[string]storedEntityPolicy, len(p.Entities))
	for name, ep := range p.Entities {
		ents[name] = storedEntityPolicy(ep)
	}
	entities, err := json.Marshal(ents)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	_, err = w.Exec(ctx, putPolicySQL, p.Domain, p.Environment, lists[0], lists[1], lists[2], string(entities),
		p.WriteImpliesRead, plinth.Now())
	return s.wrap(what, err)
}

// DeletePolicy removes a policy; plinth.ErrNotFound when there is none.
func (s *Store) DeletePolicy(ctx context.Context, domain, environment string) error {
	return s.deletePolicy(ctx, s.pool, domain, environment)
}

// DeletePolicy is Store.DeletePolicy within the write transaction.
func (x *tx) DeletePolicy(ctx context.Context, domain, environment string) error {
	return x.s.deletePolicy(ctx, x.tx, domain, environment)
}

func (s *Store) deletePolicy(ctx context.Context, w writer, domain, environment string) error {
	tag, err := w.Exec(ctx, deletePolicySQL, domain, environment)
	if err != nil {
		return s.wrap(fmt.Sprintf("delete policy %s/%s", domain, environment), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: policy %s/%s: %w", domain, environment, plinth.ErrNotFound)
	}
	return nil
}

// Policies returns every policy of an environment, by domain (byte order).
func (s *Store) Policies(ctx context.Context, environment string) ([]plinth.AccessPolicy, error) {
	var policies []plinth.AccessPolicy
	err := s.read(ctx, "list policies of "+environment, func() error {
		policies = []plinth.AccessPolicy{}
		rows, err := s.pool.Query(ctx, listPoliciesSQL, environment)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				p                            plinth.AccessPolicy
				read, write, reporting, ents []byte
			)
			if err := rows.Scan(&p.Domain, &p.Environment, &read, &write, &reporting, &ents, &p.WriteImpliesRead, &p.UpdatedAt); err != nil {
				return err
			}
			if err := decodePolicy(&p, read, write, reporting, ents); err != nil {
				return fmt.Errorf("policy %s/%s: %w", p.Domain, p.Environment, err)
			}
			p.UpdatedAt = p.UpdatedAt.UTC()
			policies = append(policies, p)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return policies, nil
}

func decodePolicy(p *plinth.AccessPolicy, read, write, reporting, ents []byte) error {
	for _, l := range []struct {
		name string
		src  []byte
		dst  *[]string
	}{{"read_groups", read, &p.ReadGroups}, {"write_groups", write, &p.WriteGroups}, {"reporting_groups", reporting, &p.ReportingGroups}} {
		if err := json.Unmarshal(l.src, l.dst); err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
		*l.dst = nonNil(*l.dst)
	}
	var stored map[string]storedEntityPolicy
	if err := json.Unmarshal(ents, &stored); err != nil {
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

// nonNil returns list, or an empty list for nil.
func nonNil(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}

// micro is t in UTC, truncated to the microseconds PostgreSQL keeps.
func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
