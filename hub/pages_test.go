package hub_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

func TestSignInIsRequiredAndUsesTheAuthorizer(t *testing.T) {
	e := newEnv(t)
	anon := e.user("anon")
	if p := anon.get("/hub/apis/residents"); p.url != "/hub/signin" || !strings.Contains(p.body, `name="next" value="/hub/apis/residents"`) {
		t.Fatalf("an anonymous visit was not sent to sign in: %s\n%.300s", p.url, p.body)
	}
	// The sign-in form's own CSRF token is required.
	if p := anon.post("/hub/signin", url.Values{"token": {e.userToken("ann", "staff")}, "csrf": {"forged"}}); p.status != http.StatusForbidden {
		t.Fatalf("sign-in with a forged CSRF token: %d", p.status)
	}
	anon.get("/hub/signin")
	if p := anon.post("/hub/signin", url.Values{"token": {"not.a.token"}}); p.status != http.StatusUnauthorized || !strings.Contains(p.body, "role=\"alert\"") {
		t.Fatalf("a bad token: %d\n%.400s", p.status, p.body)
	}
	// A service token is not a person.
	tok, _, err := e.authz.IssueServiceToken(t.Context(), serviceGrant())
	if err != nil {
		t.Fatal(err)
	}
	if p := anon.post("/hub/signin", url.Values{"token": {tok}}); p.status != http.StatusUnauthorized || !strings.Contains(p.body, "service token cannot sign in") {
		t.Fatalf("a service token signed in: %d", p.status)
	}
	// A POST without a session changes nothing.
	if p := anon.post("/hub/keys", url.Values{"publicKey": {"x"}}); p.status != http.StatusUnauthorized {
		t.Fatalf("POST without a session: %d", p.status)
	}
	u := e.signIn("ann", "staff")
	res, _ := u.c.Get(e.url + "/hub")
	res.Body.Close()
	var found bool
	for _, c := range u.c.Jar.Cookies(mustURL(e.url + "/hub")) {
		found = found || c.Name == "plinth_hub_session"
	}
	if !found {
		t.Fatal("no session cookie")
	}
	denied := 0
	for _, r := range e.hubAudit() {
		if r.Decision == "deny" {
			denied++
		}
	}
	if denied < 4 {
		t.Fatalf("%d refused steps audited; want at least 4 (forged CSRF, bad token, service token, no session)", denied)
	}
}

func TestSessionCookieIsHttpOnlyAndSameSite(t *testing.T) {
	e := newEnv(t)
	u := e.user("ann")
	u.get("/hub/signin")
	form := url.Values{"token": {e.userToken("ann", "staff")}, "csrf": {u.csrf}}
	c := &http.Client{Jar: u.c.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.PostForm(e.url+"/hub/signin", form)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var cookie string
	for _, v := range res.Header.Values("Set-Cookie") {
		if strings.HasPrefix(v, "plinth_hub_session=") {
			cookie = v
		}
	}
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/hub"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("session cookie %q lacks %s", cookie, want)
		}
	}
}

func TestCatalogueAndSearch(t *testing.T) {
	e := newEnv(t)
	u := e.signIn("ann", "staff")
	p := u.get("/hub")
	mustContain(t, p, `href="/hub/apis/residents"`, `href="/hub/apis/contacts"`, "Adult and Children&#39;s Social Care",
		"social-care-data@example.gov.uk", "http://example.test", "/srv/lake/residents/", "special category", "2 of 2 APIs")
	p = u.get("/hub?q=" + url.QueryEscape("contactInformation"))
	mustContain(t, p, "1 of 2 APIs", `href="/hub/apis/contacts"`)
	if strings.Contains(p.body, `href="/hub/apis/residents"`) {
		t.Error("search for contact words listed residents")
	}
	p = u.get("/hub?q=nothing-like-this")
	mustContain(t, p, "0 of 2 APIs", "No API matches")
	// Search text is escaped, not markup.
	p = u.get("/hub?q=" + url.QueryEscape(`<script>x</script>`))
	if strings.Contains(p.body, "<script>x") {
		t.Fatal("search text reached the page unescaped")
	}
}

func TestAPIPageRendersDocsAndCompliance(t *testing.T) {
	e := newEnv(t)
	u := e.signIn("ann", "staff")
	p := u.get("/hub/apis/residents")
	if p.status != 200 {
		t.Fatalf("status %d", p.status)
	}
	mustContain(t, p,
		"social-care-owners",                      // who approves
		"<code>dateOfBirth</code>", "pii-special", // fields and PII classes
		"ResidentCreatedEvent", "plinth.development.residents.residents.created", // events and subjects
		"/srv/lake/residents/",                                                   // lake location
		"Authorizer", "Audit trail", "Change events", "dummy data (seed: seed 1", // compliance
		`id="op-listResidents"`, "<code>last_name</code>", `href="#schema-Resident"`, `id="schema-ResidentCreate"`, // the OpenAPI document
		"<code>/api/v1/reports/residents</code>")
	if strings.Contains(p.body, "listContacts") {
		t.Error("the residents page shows the contacts API")
	}
	// Nothing is loaded from elsewhere: no CDN, no external font.
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllStringSubmatch(p.body, -1) {
		if !strings.HasPrefix(m[1], "/hub") && m[1] != "data:," { // data:, is the empty favicon
			t.Errorf("the page loads or links %s outside the Hub", m[1])
		}
	}
	csp := pageHeader(t, u, "/hub/apis/residents", "Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	// Accessible structure: one h1, a skip link, every input labelled.
	if strings.Count(p.body, "<h1") != 1 || !strings.Contains(p.body, `href="#main"`) || !strings.Contains(p.body, `lang="en-GB"`) {
		t.Error("headings, skip link or language missing")
	}
	form := u.get("/hub/apis/residents/request")
	for _, m := range regexp.MustCompile(`<(?:input|select|textarea)[^>]* id="([^"]+)"`).FindAllStringSubmatch(form.body, -1) {
		if !strings.Contains(form.body, `for="`+m[1]+`"`) {
			t.Errorf("the request form's %s has no label", m[1])
		}
	}
	if p := u.get("/hub/apis/nothing"); p.status != 404 {
		t.Errorf("an unknown API: %d", p.status)
	}
	if p := u.get("/hub/static/hub.css"); p.status != 200 || !strings.Contains(p.body, "focus-visible") {
		t.Errorf("the stylesheet: %d", p.status)
	}
}

func pageHeader(t *testing.T, u *user, path, name string) string {
	res, err := u.c.Get(u.base + path)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.Header.Get(name)
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// A user of a hundred and more groups signs in (the session cookie keeps only
// the groups that own an API here) and keeps their owner's rights.
func TestSignInWithManyGroups(t *testing.T) {
	e := newEnv(t)
	groups := []string{"social-care-owners"}
	for i := range 150 { // 6 kB of groups: more than a cookie holds
		groups = append(groups, fmt.Sprintf("organisation-wide-distribution-group-%03d", i))
	}
	u := e.signIn("bob", groups...)
	if p := u.get("/hub/apis/residents/access"); p.status != http.StatusOK {
		t.Fatalf("the owner with many groups reviewing access: %d", p.status)
	}
}
