package http_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/auth"
	"github.com/plinth-data/plinth/datasafety"
	"github.com/plinth-data/plinth/domains"
	plinthhttp "github.com/plinth-data/plinth/http"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
	"github.com/plinth-data/plinth/spec"
)

// BenchmarkViewPostgresAudit measures the view endpoint on PostgreSQL with
// and without the audit trail (issue 5 asks for at most 10% overhead).
func BenchmarkViewPostgresAudit(b *testing.B) {
	const residents = 20_000
	ctx := context.Background()
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		b.Fatal(err)
	}
	st, err := postgres.Open(ctx, pgtest.Database(b))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.Prepare(ctx, ds); err != nil {
		b.Fatal(err)
	}
	var e *plinth.Entity
	for _, d := range ds {
		for _, en := range d.Entities {
			if en.Plural == "residents" {
				e = en
			}
		}
	}
	g := datasafety.NewGenerator(9)
	for done := 0; done < residents; done += 1000 {
		if err := st.BulkInsert(ctx, e, g.Records(e, 1000)); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.PutPolicy(ctx, plinth.AccessPolicy{Domain: "residents", Environment: "development", ReadGroups: []string{"readers"}}); err != nil {
		b.Fatal(err)
	}
	authz, err := auth.New(ctx, auth.Config{Environment: "development", UserSecret: []byte("bench-secret-bench-secret-bench-secret")}, st, ds)
	if err != nil {
		b.Fatal(err)
	}
	defer authz.Close()
	tok, _ := authz.IssueUserToken(plinth.Principal{Subject: "bench", Groups: []string{"readers"}}, time.Hour)
	for _, c := range []struct {
		audited bool
		conns   int
	}{{false, 2}, {true, 2}, {false, 16}, {true, 16}} {
		audited := c.audited
		b.Run(fmt.Sprintf("audit=%t/conns=%d", audited, c.conns), func(b *testing.B) {
			cfg := plinthhttp.Config{Store: st, Domains: ds, Logger: discardLogger(), Authorizer: authz, Access: st, Environment: "development", Unprotected: !audited}
			if audited {
				auditor := audit.New(st, audit.Config{Environment: "development", FailClosed: true, Logger: discardLogger()})
				defer auditor.Close()
				cfg.Auditor = auditor
			}
			srv := httptest.NewServer(mustServer(b, cfg))
			defer srv.Close()
			a := &api{t: b, url: srv.URL}
			b.SetParallelism(max(1, c.conns/runtime.GOMAXPROCS(0)))
			benchGetAuth(b, a, "Bearer "+tok, func(r *rand.Rand) string {
				return fmt.Sprintf("/api/v1/residents/%d", 1+r.IntN(residents))
			})
		})
	}
}
