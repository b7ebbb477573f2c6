package hub_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/hub"
	"github.com/plinth-data/plinth/plinthtest"
)

func serviceGrant() plinth.Grant {
	return plinth.Grant{Consumer: "probe", ConsumerType: "service", API: "residents", Endpoint: "/api/v1/residents",
		Methods: []string{"GET"}, Environment: "development", ExpiresAt: time.Now().Add(time.Hour), RequestedBy: "t", AuthorisedBy: "t"}
}

func residentsRequest() url.Values {
	return url.Values{"entities": {"residents"}, "operations": {"read"}, "environment": {"development"},
		"purpose": {"Check eligibility for housing benefit"}, "legalBasis": {"public-task"},
		"specialCondition": {"substantial-public-interest"}, "retentionDays": {"30"}, "durationDays": {"30"},
		"consumer": {"benefits-checker"}, "grantKind": {"service"}}
}

var requestPathRE = regexp.MustCompile(`^/hub/requests/([0-9a-f-]{36})$`)

// file files a request and returns its id.
func (u *user) file(form url.Values) string {
	u.e.t.Helper()
	u.get("/hub/apis/residents/request")
	p := u.post("/hub/apis/residents/request", form)
	m := requestPathRE.FindStringSubmatch(p.url)
	if p.status != 200 || m == nil {
		u.e.t.Fatalf("filing a request: %d at %s\n%.600s", p.status, p.url, p.body)
	}
	return m[1]
}

var contractRE = regexp.MustCompile(`(?s)<pre class="json"[^>]*>(.*?)</pre>`)

// signContract signs the request's contract as the Hub shows it and posts
// the signed file.
func (u *user) signContract(id, role string) page {
	u.e.t.Helper()
	u.get("/hub/requests/" + id) // for the CSRF token
	res, err := u.c.Get(u.base + "/hub/requests/" + id + "/contract.json")
	if err != nil {
		u.e.t.Fatal(err)
	}
	defer res.Body.Close()
	var buf strings.Builder
	_, _ = io_Copy(&buf, res)
	sc, err := hub.ParseContractFile([]byte(buf.String()))
	if err != nil {
		u.e.t.Fatalf("the Hub's contract file: %v\n%s", err, buf.String())
	}
	sc.Signatures = nil
	if err := sc.Sign(role, u.priv); err != nil {
		u.e.t.Fatal(err)
	}
	b, _ := sc.Encode()
	return u.post("/hub/requests/"+id+"/sign", url.Values{"signed": {string(b)}})
}

func TestAccessRequestBecomesASignedContractAndGrants(t *testing.T) {
	e := newEnv(t)
	ann := e.signIn("ann", "staff")
	bob := e.signIn("bob", "social-care-owners")
	ann.addKey()
	bob.addKey()

	id := ann.file(residentsRequest())
	if p := ann.get("/hub/requests/" + id); !strings.Contains(p.body, "pending") || strings.Contains(p.body, "/decision") {
		t.Fatalf("the requester's view: %.500s", p.body)
	}
	// The requester cannot approve their own request, even by posting.
	if p := ann.post("/hub/requests/"+id+"/decision", url.Values{"decision": {"approve"}, "comment": {"fine"}}); p.status != http.StatusForbidden {
		t.Fatalf("self-approval: %d", p.status)
	}
	// Someone outside the owner groups cannot see or decide it.
	eve := e.signIn("eve", "staff")
	if p := eve.get("/hub/requests/" + id); p.status != http.StatusForbidden {
		t.Fatalf("a stranger saw the request: %d", p.status)
	}
	if p := bob.get("/hub/requests"); !strings.Contains(p.body, id) {
		t.Fatal("the owner's list lacks the request")
	}
	bob.get("/hub/requests/" + id)
	if p := bob.post("/hub/requests/"+id+"/decision", url.Values{"decision": {"approve"}}); p.status != http.StatusUnprocessableEntity {
		t.Fatalf("approval without a comment: %d", p.status)
	}
	p := bob.post("/hub/requests/"+id+"/decision", url.Values{"decision": {"approve"}, "comment": {"Purpose and basis are sound"}})
	mustContain(t, p, "approved", "Sign as approver", "plinth.data-contract/v1")

	// A tampered file is refused and changes nothing.
	tampered := strings.Replace(signedFileFor(t, bob, id, hub.RoleApprover), "Check eligibility", "Check eligibilitx", 1)
	if p := bob.post("/hub/requests/"+id+"/sign", url.Values{"signed": {tampered}}); p.status != http.StatusUnprocessableEntity {
		t.Fatalf("a tampered contract was taken: %d", p.status)
	}
	// A party cannot sign for the other.
	if p := ann.signContractAs(id, hub.RoleApprover, bob); p.status != http.StatusUnprocessableEntity && p.status != http.StatusForbidden {
		t.Fatalf("the requester posted the approver's signature: %d", p.status)
	}
	if p := bob.signContract(id, hub.RoleApprover); p.status != 200 || !strings.Contains(p.body, "Sign as") && !strings.Contains(p.body, "approved") {
		t.Fatalf("approver signing: %d\n%.400s", p.status, p.body)
	}
	grants := grantCount(t, e)
	// The requester signs as the browser does: the raw signature over the
	// terms the page carries.
	p = ann.signRaw(id)
	mustContain(t, p, "Contract in force", "shown only once")
	tokens := regexp.MustCompile(`<td>(GET|POST|PATCH|DELETE)</td><td><code>([^<]+)</code></td><td><code>[^<]+</code></td><td><textarea[^>]*>([^<]+)</textarea>`).FindAllStringSubmatch(p.body, -1)
	// read on residents: list and view, one grant each.
	if len(tokens) != 2 || grantCount(t, e)-grants != 2 {
		t.Fatalf("%d tokens shown, %d grants made; want 2", len(tokens), grantCount(t, e)-grants)
	}
	var listToken string
	for _, m := range tokens {
		if m[2] == "/api/v1/residents" {
			listToken = m[3]
		}
	}
	// The grant lets the consumer call the API, limited to what it names.
	if s := call(t, e, "GET", "/api/v1/residents?limit=1", listToken); s != 200 {
		t.Fatalf("the granted call: %d", s)
	}
	if s := call(t, e, "POST", "/api/v1/residents", listToken); s != http.StatusForbidden {
		t.Fatalf("a method the contract does not name: %d", s)
	}
	gs, _, _ := e.store.Grants(context.Background(), "", 100)
	for _, g := range gs {
		if g.Consumer == "benefits-checker" && (g.ExpiresAt.After(time.Now().Add(31*24*time.Hour)) || g.Contract != "contract-"+id || g.AuthorisedBy != "bob@example.gov.uk") {
			t.Errorf("grant %s: expires %v, contract %q, authorised by %q; want the contract's expiry, ID and approver", g.ID, g.ExpiresAt, g.Contract, g.AuthorisedBy)
		}
	}
	// The owners' access review shows each grant with its contract; others may not see it.
	review := bob.get("/hub/apis/residents/access")
	mustContain(t, review, "benefits-checker", `<a href="/hub/requests/`+id+`">contract-`+id+`</a>`, "<code>/api/v1/residents/{id}</code>", "active")
	if p := ann.get("/hub/apis/residents/access"); p.status != http.StatusForbidden {
		t.Fatalf("the requester saw the access review: %d", p.status)
	}

	// The contract the Hub keeps verifies offline.
	file := signedFileFor(t, ann, id, "")
	sc, err := hub.ParseContractFile([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := sc.Verify(); err != nil || !v.Complete {
		t.Fatalf("the stored contract: %+v %v", v, err)
	}

	// Revoking disables the grants: the call is denied within the cache's life.
	ann.get("/hub/requests/" + id)
	if p := ann.post("/hub/requests/"+id+"/revoke", nil); !strings.Contains(p.body, "revoked") {
		t.Fatalf("revoke: %d", p.status)
	}
	plinthtest.Eventually(t, 5*time.Second, func() bool {
		return call(t, e, "GET", "/api/v1/residents?limit=1", listToken) == http.StatusUnauthorized || call(t, e, "GET", "/api/v1/residents?limit=1", listToken) == http.StatusForbidden
	}, "the revoked grant still works")

	// Every step is in the audit trail.
	var steps []string
	for _, r := range e.hubAudit() {
		if r.Decision == "allow" {
			steps = append(steps, r.Reason)
		}
	}
	all := strings.Join(steps, "\n")
	for _, want := range []string{"signed in", "key registered", "access request " + id + " filed", "request " + id + ": approve",
		"contract of request " + id + " signed", "contract of request " + id + " revoked", "access review of residents viewed"} {
		if !strings.Contains(all, want) {
			t.Errorf("no audit record of %q in:\n%s", want, all)
		}
	}
}

func TestRequestsAreCheckedAndCSRFProtected(t *testing.T) {
	e := newEnv(t)
	ann := e.signIn("ann", "staff")
	ann.get("/hub/apis/residents/request")
	form := residentsRequest()
	form.Del("specialCondition")
	p := ann.post("/hub/apis/residents/request", form)
	if p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, "Article 9") || !strings.Contains(p.body, "Check eligibility") {
		t.Fatalf("a request reaching special fields without an Article 9 condition: %d\n%.500s", p.status, p.body)
	}
	for field, bad := range map[string]string{"legalBasis": "because", "retentionDays": "0", "environment": "production", "operations": "delete", "entities": "nobody"} {
		f := residentsRequest()
		f.Set(field, bad)
		if p := ann.post("/hub/apis/residents/request", f); p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, field) && field != "entities" {
			t.Errorf("%s=%s: %d", field, bad, p.status)
		}
	}
	// No CSRF token, or another session's: refused, nothing filed.
	bob := e.signIn("bob", "staff")
	for _, token := range []string{"", bob.csrf} {
		f := residentsRequest()
		f.Set("csrf", token)
		if p := ann.post("/hub/apis/residents/request", f); p.status != http.StatusForbidden {
			t.Fatalf("csrf %q: %d", token, p.status)
		}
	}
	if p := ann.get("/hub/requests"); strings.Count(p.body, "/hub/requests/") != 0 {
		t.Fatalf("a refused request was stored:\n%.600s", p.body)
	}
	// Approving needs the requester's key.
	id := ann.file(residentsRequest())
	owner := e.signIn("olive", "social-care-owners")
	owner.addKey()
	owner.get("/hub/requests/" + id)
	if p := owner.post("/hub/requests/"+id+"/decision", url.Values{"decision": {"approve"}, "comment": {"ok"}}); p.status != http.StatusConflict || !strings.Contains(p.body, "requester has no signing key") {
		t.Fatalf("approval without the requester's key: %d", p.status)
	}
	if p := owner.post("/hub/requests/"+id+"/decision", url.Values{"decision": {"reject"}, "comment": {"Use the reporting API instead"}}); !strings.Contains(p.body, "rejected") {
		t.Fatalf("reject: %d", p.status)
	}
	if p := owner.post("/hub/requests/"+id+"/decision", url.Values{"decision": {"approve"}, "comment": {"changed my mind"}}); p.status != http.StatusConflict {
		t.Fatalf("deciding twice: %d", p.status)
	}
}

// signedFileFor returns the request's contract file, signed as role by u
// when role is set.
func signedFileFor(t *testing.T, u *user, id, role string) string {
	t.Helper()
	res, err := u.c.Get(u.base + "/hub/requests/" + id + "/contract.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var buf strings.Builder
	_, _ = io_Copy(&buf, res)
	if role == "" {
		return buf.String()
	}
	sc, err := hub.ParseContractFile([]byte(buf.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Sign(role, u.priv); err != nil {
		t.Fatal(err)
	}
	b, _ := sc.Encode()
	return string(b)
}

// signContractAs posts a file signed by other's key from u's session.
func (u *user) signContractAs(id, role string, other *user) page {
	u.get("/hub/requests/" + id)
	return u.post("/hub/requests/"+id+"/sign", url.Values{"signed": {signedFileFor(u.e.t, other, id, role)}})
}

var termsRE = regexp.MustCompile(`data-terms="([^"]+)"`)

// signRaw signs the terms the request page carries and posts only the
// signature, as sign.js does.
func (u *user) signRaw(id string) page {
	u.e.t.Helper()
	p := u.get("/hub/requests/" + id)
	m := termsRE.FindStringSubmatch(p.body)
	if m == nil {
		u.e.t.Fatalf("no terms on the page:\n%.800s", p.body)
	}
	terms := html.UnescapeString(m[1])
	if _, err := hub.ParseContractFile([]byte(`{"contract":` + terms + `,"signatures":[]}`)); err != nil {
		u.e.t.Fatalf("the page's terms are not the canonical contract: %v", err)
	}
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(u.priv, []byte(terms)))
	// A signature over other bytes is refused first.
	if p := u.post("/hub/requests/"+id+"/sign", url.Values{"signature": {base64.StdEncoding.EncodeToString(ed25519.Sign(u.priv, []byte(terms+" ")))}}); p.status != http.StatusUnprocessableEntity {
		u.e.t.Fatalf("a signature over other bytes: %d", p.status)
	}
	return u.post("/hub/requests/"+id+"/sign", url.Values{"signature": {sig}})
}

func grantCount(t *testing.T, e *env) int {
	gs, _, err := e.store.Grants(context.Background(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	return len(gs)
}

func call(t *testing.T, e *env, method, path, token string) int {
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// Group contracts add their group to the access policy; revoking one takes
// away only what neither another contract nor the policy itself justifies,
// and the sweep ends contracts past their expiry.
func TestGroupContractsAndTheUnionOfJustifications(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.store.PutPolicy(ctx, plinth.AccessPolicy{Domain: "residents", Environment: "development",
		ReadGroups: []string{"readers"}, WriteGroups: []string{}, ReportingGroups: []string{}}); err != nil {
		t.Fatal(err)
	}
	ann := e.signIn("ann", "staff")
	bob := e.signIn("bob", "social-care-owners")
	ann.addKey()
	bob.addKey()
	inForce := func(group string, days string) string {
		f := residentsRequest()
		f.Set("grantKind", "group")
		f.Set("group", group)
		f.Set("durationDays", days)
		id := ann.file(f)
		bob.get("/hub/requests/" + id)
		bob.post("/hub/requests/"+id+"/decision", url.Values{"decision": {"approve"}, "comment": {"ok"}})
		bob.signContract(id, hub.RoleApprover)
		if p := ann.signRaw(id); !strings.Contains(p.body, "Contract in force") || !strings.Contains(p.body, "access policy") {
			t.Fatalf("group contract %s: %d\n%.500s", id, p.status, p.body)
		}
		return id
	}
	mayRead := func(group string) int {
		return call(t, e, "GET", "/api/v1/residents?limit=1", e.userToken("someone-"+group, group))
	}
	if s := mayRead("benefits-team"); s != http.StatusForbidden {
		t.Fatalf("before any contract: %d", s)
	}
	first := inForce("benefits-team", "30")
	second := inForce("benefits-team", "1")
	readers := inForce("readers", "30")
	plinthtest.Eventually(t, 5*time.Second, func() bool { return mayRead("benefits-team") == 200 }, "the group contract gave no access")

	revoke := func(id string) {
		ann.get("/hub/requests/" + id)
		if p := ann.post("/hub/requests/"+id+"/revoke", nil); !strings.Contains(p.body, "revoked") {
			t.Fatalf("revoke %s: %d", id, p.status)
		}
	}
	// The second contract still justifies benefits-team; the policy itself justifies readers.
	revoke(first)
	revoke(readers)
	pol := policyOf(t, e)
	if !slices.Contains(pol.ReadGroups, "benefits-team") || !slices.Contains(pol.ReadGroups, "readers") {
		t.Fatalf("revoking took away what is still justified: read groups %v", pol.ReadGroups)
	}
	// The sweep ends the second contract after its expiry (one day), once,
	// also when two replicas sweep at the same time.
	other, _ := e.replica(nil)
	counts := make(chan int, 2)
	var wg sync.WaitGroup
	for _, h := range []*hub.Server{e.hub, other} {
		wg.Go(func() {
			n, err := h.SweepExpired(ctx, time.Now().Add(25*time.Hour))
			if err != nil {
				t.Errorf("sweep: %v", err)
			}
			counts <- n
		})
	}
	wg.Wait()
	if n := <-counts + <-counts; n != 1 {
		t.Fatalf("two sweeps ended %d contracts; want one", n)
	}
	expired := 0
	for _, r := range e.hubAudit() {
		if strings.HasSuffix(r.Reason, second+" expired") {
			expired++
		}
	}
	if expired != 1 {
		t.Errorf("%d audit records of the expiry; want one", expired)
	}
	pol = policyOf(t, e)
	if slices.Contains(pol.ReadGroups, "benefits-team") || !slices.Contains(pol.ReadGroups, "readers") {
		t.Fatalf("after expiry: read groups %v; want readers only", pol.ReadGroups)
	}
	plinthtest.Eventually(t, 5*time.Second, func() bool { return mayRead("benefits-team") == http.StatusForbidden }, "the expired contract's group still reads")
	if p := ann.get("/hub/requests/" + second); !strings.Contains(p.body, "<strong>expired</strong>") {
		t.Fatalf("the swept request is not shown expired")
	}
}

func policyOf(t *testing.T, e *env) plinth.AccessPolicy {
	t.Helper()
	pols, err := e.store.Policies(context.Background(), "development")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pols {
		if p.Domain == "residents" {
			return p
		}
	}
	t.Fatal("no residents policy")
	return plinth.AccessPolicy{}
}
