package hub_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/hub"
	"github.com/plinth-data/plinth/lake"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/sqlite"
)

// The access review charts actual access from the audit trail, the
// lake's archive included (records trimmed from the store still count),
// and flags grants unused for 90 days.
func TestAccessReviewChartsAndUnusedGrants(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/plinth.db")
	if err != nil {
		t.Fatal(err)
	}
	archive := lake.NewAuditArchive(lake.Dir(t.TempDir()))
	e := newEnvOn(t, st, func(c *hub.Config) {
		c.AuditSearch = func(ctx context.Context, q plinth.AuditQuery, fn func(plinth.AuditRecord) error) error {
			return audit.SearchAllWithArchive(ctx, st, archive, q, fn)
		}
	})
	now := time.Now().UTC()
	old := now.Add(-100 * 24 * time.Hour)
	grant := func(id, consumer string) {
		g := serviceGrant()
		g.ID, g.Consumer, g.CreatedAt, g.UpdatedAt, g.Enabled, g.ExpiresAt = id, consumer, old, old, true, now.Add(30*24*time.Hour)
		if err := st.CreateGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	grant("g-idle", "idle-listener")
	grant("g-busy", "busy-listener")
	rec := func(at time.Time, op, decision string, count int, p plinth.Principal) plinth.AuditRecord {
		return plinth.AuditRecord{Time: at, CorrelationID: "c", Environment: "development", Domain: "residents", Entity: "residents",
			Operation: op, Method: "GET", Route: "/api/v1/residents", Principal: p, Decision: decision, Status: 200, Count: count}
	}
	busy := plinth.Principal{Subject: "busy-listener", TokenID: "g-busy", Consumer: "busy-listener"}
	// The busy grant's use 10 days ago goes to the archive and leaves the
	// store (which keeps its newest record); today's stay in the store.
	mallory := plinth.Principal{Subject: "mallory", Email: "mallory@example.org"}
	if _, err := st.AppendAudit(ctx, []plinth.AuditRecord{rec(now.Add(-10*24*time.Hour), "list", "allow", 5, busy),
		rec(now.Add(-9*24*time.Hour), "view", "deny", 0, mallory)}); err != nil {
		t.Fatal(err)
	}
	chained := func(n int) {
		plinthtest.Eventually(t, 5*time.Second, func() bool {
			recs, _, err := st.AuditRecords(ctx, plinth.AuditQuery{Limit: 100})
			return err == nil && len(recs) >= n
		}, "%d audit records chained", n)
	}
	chained(2)
	if _, err := archive.Archive(ctx, st, 0, nil); err != nil {
		t.Fatal(err)
	}
	through, err := archive.TrimThrough(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := st.TrimAudit(ctx, through); err != nil || n == 0 {
		t.Fatalf("trimming the archived records from the store: %d, %v", n, err)
	}
	_, err = st.AppendAudit(ctx, []plinth.AuditRecord{
		rec(now, "report", "allow", 7, busy),
		rec(now, "list", "deny", 0, plinth.Principal{Subject: "eve", Email: "eve@example.org"}),
		rec(now, "hub", "allow", 0, plinth.Principal{Subject: "bob"}), // not access to the data
	})
	if err != nil {
		t.Fatal(err)
	}
	chained(4)

	bob := e.signIn("bob", "social-care-owners")
	p := bob.get("/hub/apis/residents/access")
	mustContain(t, p,
		"12 records returned in the last 30 days",
		"12 records with special-category fields in the last 30 days",
		"2 denied requests in the last 30 days",
		"4 requests in the last 30 days",
		`role="img" aria-labelledby="chart-requests-t chart-requests-d"`,
		"busy-listener (service token)", "eve@example.org",
		"unused for 90 days: revoke it",
	)
	rows := regexp.MustCompile(`(?s)<tr><th scope="row">(idle|busy)-listener</th>.*?</tr>`).FindAllString(p.body, -1)
	if len(rows) != 2 {
		t.Fatalf("%d grant rows on the review page", len(rows))
	}
	for _, row := range rows {
		flagged := strings.Contains(row, "unused for 90 days")
		if strings.Contains(row, "idle-listener") != flagged {
			t.Errorf("the 90-day flag is wrong on: %s", row)
		}
	}
	if strings.Contains(p.body, "<script") {
		t.Error("the review page runs a script")
	}
}
