package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/auth"
	"github.com/plinth-data/plinth/postgres"
)

// checkStore checks one store: reachable, schema current, authentication
// (on the default store, which keeps grants and policies), data class,
// audit trail and clock.
func (d *doctor) checkStore(ctx context.Context, url string, ds []*plinth.Domain) {
	where := redactURL(url)
	st, ok := d.reachStore(ctx, url)
	if !ok {
		for _, name := range []string{"schema", "auth", "data class", "audit", "clock"} {
			d.add(check{name: name, status: statusSkip, detail: where + ": the store is not reachable"})
		}
		return
	}
	defer st.Close()
	schemaOK := d.checkSchema(ctx, st, where, ds)
	if url == d.cfg.StoreURL() {
		d.checkAuth(ctx, st)
	}
	if schemaOK {
		d.checkClass(ctx, st, where, ds)
		d.checkAudit(ctx, st, where)
	} else {
		d.add(check{name: "data class", status: statusSkip, detail: where + ": the schema is not current"})
		d.add(check{name: "audit", status: statusSkip, detail: where + ": the schema is not current"})
	}
	d.checkClock(ctx, st, where)
}

// reachStore opens the store without preparing it and pings it.
func (d *doctor) reachStore(ctx context.Context, url string) (plinth.Store, bool) {
	where := redactURL(url)
	if path, ok := strings.CutPrefix(url, "sqlite://"); ok && path != "" {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			d.add(check{name: "store", status: statusFail, detail: fmt.Sprintf("%s does not exist: serve would start a new, empty store there", where),
				fix: "point store (PLINTH_STORE, --store) at the existing file, or run plinth serve once to create it"})
			return nil, false
		}
	}
	st, err := connectStore(ctx, url, true)
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = st.Ping(pctx)
		cancel()
		if err != nil {
			st.Close()
		}
	}
	if err != nil {
		d.add(check{name: "store", status: statusFail, detail: fmt.Sprintf("%s: %v", where, err),
			fix: "check the store URL (PLINTH_STORE, --store, stores: in plinth.yaml): host, port, database, user and password, and that the server runs and accepts this machine"})
		return nil, false
	}
	d.add(check{name: "store", status: statusOK, detail: where + " answers"})
	return st, true
}

// checkSchema says whether Prepare would change nothing: PostgreSQL plans
// it, DynamoDB verifies its tables; SQLite evolves additively on start.
func (d *doctor) checkSchema(ctx context.Context, st plinth.Store, where string, ds []*plinth.Domain) bool {
	switch s := st.(type) {
	case *postgres.Store:
		plan, err := s.Plan(ctx, ds)
		switch {
		case err != nil:
			d.add(check{name: "schema", status: statusFail, detail: fmt.Sprintf("%s: %v", where, err), fix: "give the store's user the right to read the catalogue (it owns Plinth's schemas)"})
			return false
		case len(plan.Refusals) > 0:
			d.add(check{name: "schema", status: statusFail, detail: fmt.Sprintf("%s: %d change(s) refused: %s", where, len(plan.Refusals), plan.Refusals[0]),
				fix: "plinth schema diff lists them with how to migrate; serve refuses to start until they are resolved"})
			return false
		case !plan.Empty():
			d.add(check{name: "schema", status: statusFail, detail: fmt.Sprintf("%s: %d change(s) pending, first: %s", where, len(plan.Steps), plan.Steps[0].Comment),
				fix: "review them with plinth schema diff and apply them with plinth schema apply (serve also applies additive changes on start)"})
			return false
		}
		d.add(check{name: "schema", status: statusOK, detail: where + " matches the specs"})
		return true
	}
	if strings.HasPrefix(where, "dynamodb://") {
		// Opened with table checks on, so Prepare verifies and creates nothing.
		if err := st.Prepare(ctx, ds); err != nil {
			d.add(check{name: "schema", status: statusFail, detail: fmt.Sprintf("%s: %v", where, err),
				fix: "create or update the tables with plinth schema apply, or plinth schema dynamodb --format terraform in your infrastructure code"})
			return false
		}
		d.add(check{name: "schema", status: statusOK, detail: where + ": the tables match the specs"})
		return true
	}
	d.add(check{name: "schema", status: statusOK, detail: where + ": SQLite changes only additively, applied by serve on start"})
	return true
}

// checkAuth builds the authorizer as serve would: secrets, JWKS (fetched),
// rotation keys.
func (d *doctor) checkAuth(ctx context.Context, st plinth.Store) {
	access, err := accessStore(st)
	if err == nil {
		var ac auth.Config
		var devMode bool
		ac, devMode, err = d.cfg.AuthReadOnly()
		if err == nil {
			var a *auth.Authorizer
			if a, err = auth.New(ctx, ac, access, d.ds); err == nil {
				a.Close()
				d.add(check{name: "auth", status: statusOK, detail: authSummary(d.cfg, ac, devMode)})
				return
			}
		}
	}
	d.add(check{name: "auth", status: statusFail, detail: err.Error(),
		fix: "set authSecret (PLINTH_AUTH_SECRET) or authJWKSURL / authJWKSFile, and tokenSecret for service tokens; docs/operations.md covers rotation"})
}

func authSummary(cfg Config, ac auth.Config, devMode bool) string {
	var parts []string
	switch {
	case devMode:
		parts = append(parts, "development secrets of the data folder")
	case ac.UserSecret != nil:
		parts = append(parts, "HS256 user tokens")
	}
	if cfg.AuthJWKSURL != "" || cfg.AuthJWKSFile != "" {
		parts = append(parts, "RS256/ES256 user tokens through a JWKS")
	}
	if ac.ServiceSecret != nil {
		parts = append(parts, "service tokens")
	} else {
		parts = append(parts, "no service tokens (no tokenSecret)")
	}
	if n := len(ac.PreviousUserSecrets) + len(ac.PreviousServiceSecrets); n > 0 {
		parts = append(parts, fmt.Sprintf("rotation window open: %d previous key(s) still accepted", n))
	}
	return strings.Join(parts, "; ")
}

// checkClass applies serve's data class rule to the store.
func (d *doctor) checkClass(ctx context.Context, st plinth.Store, where string, ds []*plinth.Domain) {
	p, err := plinth.ClassOf(ctx, st, ds)
	if err == nil {
		err = plinth.CheckServe(d.cfg.Environment, p)
	}
	if err != nil {
		d.add(check{name: "data class", status: statusFail, detail: fmt.Sprintf("%s: %v", where, err),
			fix: "serve this store in the environment its data belongs to, or serve another store here (plinth store info shows its class)"})
		return
	}
	d.add(check{name: "data class", status: statusOK, detail: fmt.Sprintf("%s holds %s: allowed in %s", where, p, d.cfg.Environment)})
}

// checkAudit appends an audit record in a transaction it rolls back: the
// audit log exists and takes writes, and nothing is kept.
func (d *doctor) checkAudit(ctx context.Context, st plinth.Store, where string) {
	if _, ok := st.(plinth.AuditStore); !ok {
		d.add(check{name: "audit", status: statusFail, detail: where + " cannot keep an audit trail", fix: "use a store that keeps one (sqlite, postgres, dynamodb)"})
		return
	}
	tried := false
	err := st.Write(ctx, func(tx plinth.Tx) error {
		at, ok := tx.(plinth.AuditTx)
		if !ok {
			return errRollback
		}
		tried = true
		if _, err := at.AppendAudit(ctx, plinth.AuditRecord{Environment: d.cfg.Environment, Operation: "admin",
			Decision: plinth.DecisionAllow, Reason: "plinth doctor: trial write, rolled back"}); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		d.add(check{name: "audit", status: statusFail, detail: fmt.Sprintf("%s: appending an audit record: %v", where, err),
			fix: "give the store's user the right to write Plinth's audit tables; in production serve refuses requests it cannot audit"})
		return
	}
	detail := where + ": an audit record can be appended (trial write rolled back)"
	if !tried {
		detail = where + ": keeps an audit trail (its writes carry no trial record)"
	}
	d.add(check{name: "audit", status: statusOK, detail: detail})
}

// maxClockSkew is where a difference between the store's clock and this
// machine's becomes a failure: token times, audit times and retention all
// assume they agree.
const maxClockSkew = 5 * time.Second

// checkClock compares the store server's clock with the local one.
func (d *doctor) checkClock(ctx context.Context, st plinth.Store, where string) {
	s, ok := st.(interface {
		ServerTime(context.Context) (time.Time, error)
	})
	if !ok {
		d.add(check{name: "clock", status: statusSkip, detail: where + ": the store has no clock of its own to compare (a local file, or a managed service)"})
		return
	}
	before := time.Now()
	t, err := s.ServerTime(ctx)
	after := time.Now()
	if err != nil {
		d.add(check{name: "clock", status: statusFail, detail: fmt.Sprintf("%s: %v", where, err), fix: "check the store's connection"})
		return
	}
	skew := t.Sub(before.Add(after.Sub(before) / 2))
	detail := fmt.Sprintf("%s: the store's clock is %s from this machine's", where, skew.Round(time.Millisecond))
	if skew > maxClockSkew || skew < -maxClockSkew {
		d.add(check{name: "clock", status: statusFail, detail: detail, fix: "run NTP (chrony or systemd-timesyncd) on both machines"})
		return
	}
	d.add(check{name: "clock", status: statusOK, detail: detail})
}
