package hub_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/hub"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
)

func exceptionForm(hours string) url.Values {
	return url.Values{"consumer": {"legacy-housing-system"}, "purpose": {"INC-42: the legacy system reads addresses nightly and cannot call APIs yet"},
		"legalBasis": {"public-task"}, "specialCondition": {"substantial-public-interest"}, "hours": {hours}}
}

var (
	roleRE     = regexp.MustCompile(`Role:\s+(support_[a-z0-9_]+)`)
	passwordRE = regexp.MustCompile(`Password:\s+(\S+)`)
)

// An exception for a legacy application: the owner approves it, the
// requester opens it once, and it becomes a real read-only PostgreSQL
// login on the domain's schema, recorded in the audit trail.
func TestExceptionBecomesASupportGrant(t *testing.T) {
	dbURL := pgtest.Database(t)
	st, err := postgres.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, st, func(c *hub.Config) { c.Support = st })
	ann := e.signIn("ann", "staff")
	ann.get("/hub/apis/residents/exception")
	if p := ann.post("/hub/apis/residents/exception", exceptionForm("99")); p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, "hours must be a whole number from 1 to 8") {
		t.Fatalf("an exception of 99 hours: %d\n%.400s", p.status, p.body)
	}
	p := ann.post("/hub/apis/residents/exception", exceptionForm("1"))
	m := requestPathRE.FindStringSubmatch(p.url)
	if m == nil {
		t.Fatalf("filing an exception: %d at %s\n%.400s", p.status, p.url, p.body)
	}
	id := m[1]
	if p := ann.post("/hub/requests/"+id+"/open", nil); p.status != http.StatusConflict {
		t.Fatalf("opening an exception not yet approved: %d", p.status)
	}
	bob := e.signIn("bob", "social-care-owners")
	bob.get("/hub/requests/" + id)
	if p := bob.post("/hub/requests/"+id+"/decision", url.Values{"decision": {"approve"}, "comment": {"Until the API client ships"}}); !strings.Contains(p.body, "<strong>approved</strong>") {
		t.Fatalf("approving the exception: %d\n%.600s", p.status, p.body)
	}
	if p := bob.post("/hub/requests/"+id+"/open", nil); p.status != http.StatusForbidden {
		t.Fatalf("the approver opened the requester's exception: %d", p.status)
	}
	ann.get("/hub/requests/" + id)
	p = ann.post("/hub/requests/"+id+"/open", nil)
	role, pw := roleRE.FindStringSubmatch(p.body), passwordRE.FindStringSubmatch(p.body)
	if p.status != http.StatusOK || role == nil || pw == nil {
		t.Fatalf("opening the exception: %d\n%.800s", p.status, p.body)
	}
	t.Cleanup(func() { _ = st.RevokeSupport(context.Background(), role[1], "hub test") })

	// The role reads the domain's data and cannot write it.
	cc, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cc.User, cc.Password = role[1], pw[1]
	conn, err := pgx.ConnectConfig(context.Background(), cc)
	if err != nil {
		t.Fatalf("connecting as the exception's role: %v", err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM residents.residents`).Scan(&n); err != nil {
		t.Fatalf("reading as the exception's role: %v", err)
	}
	if _, err := conn.Exec(context.Background(), `DELETE FROM residents.residents`); err == nil {
		t.Fatal("the exception's role could delete")
	}

	// Once only; the request shows the grant; the grant is audited.
	if p := ann.post("/hub/requests/"+id+"/open", nil); p.status != http.StatusConflict {
		t.Fatalf("opening the exception twice: %d", p.status)
	}
	mustContain(t, ann.get("/hub/requests/"+id), "<strong>opened</strong>", "support grant <code>"+role[1]+"</code>")
	recs, _, err := st.AuditRecords(context.Background(), plinth.AuditQuery{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		found = found || (r.Operation == "support" && strings.Contains(r.Reason, "exception "+id))
	}
	if !found {
		e.hubAudit() // wait for the chainer, then look again
		recs, _, _ = st.AuditRecords(context.Background(), plinth.AuditQuery{Limit: 500})
		for _, r := range recs {
			found = found || (r.Operation == "support" && strings.Contains(r.Reason, "exception "+id))
		}
	}
	if !found {
		t.Error("the support grant of the exception is not in the audit trail")
	}
}

// A request for an endpoint the API lacks is answered by the owners.
func TestEndpointRequestIsAnswered(t *testing.T) {
	e := newEnv(t)
	ann := e.signIn("ann", "staff")
	ann.get("/hub/apis/contacts/endpoint")
	if p := ann.post("/hub/apis/contacts/endpoint", url.Values{"purpose": {"x"}}); p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, "need is required") {
		t.Fatalf("an endpoint request without its need: %d", p.status)
	}
	p := ann.post("/hub/apis/contacts/endpoint", url.Values{"need": {"Search contacts by postcode"}, "purpose": {"Find who to call about a flood"}})
	m := requestPathRE.FindStringSubmatch(p.url)
	if m == nil {
		t.Fatalf("filing an endpoint request: %d at %s", p.status, p.url)
	}
	// The exception form is not offered where the store grants no direct access.
	if p := ann.get("/hub/apis/contacts"); strings.Contains(p.body, "/exception") {
		t.Error("the API page offers exceptions on a store without support access")
	}
	carol := e.signIn("carol", "admins") // contacts names no owners: the admins decide
	mustContain(t, carol.get("/hub/requests"), m[1])
	carol.get("/hub/requests/" + m[1])
	p = carol.post("/hub/requests/"+m[1]+"/decision", url.Values{"decision": {"approve"}, "comment": {"Planned for the next release"}})
	mustContain(t, p, "<strong>planned</strong>", "Planned for the next release", "Search contacts by postcode")
	mustContain(t, ann.get("/hub/requests"), "endpoint", "planned")
}
