package hub_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/plinth-data/plinth/dynamodb"
	"github.com/plinth-data/plinth/hub"
	"github.com/plinth-data/plinth/plinthtest/ddbtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
)

// newPostgresEnv is the env on a PostgreSQL database of its own, with a
// second Hub replica on the same store.
func newPostgresEnv(t *testing.T, opts ...func(*hub.Config)) (*env, string) {
	t.Helper()
	st, err := postgres.Open(context.Background(), pgtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, st, opts...)
	_, h := e.replica(nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return e, srv.URL
}

// fileConcurrently signs a user in at base and files n requests, without
// the test helpers that stop the test (it runs in a goroutine).
func fileConcurrently(e *env, base, subject string, n int) error {
	jar, _ := cookiejar.New(nil)
	u := &user{e: e, base: base, c: &http.Client{Jar: jar}, sub: subject}
	get := func(path string) (page, error) {
		res, err := u.c.Get(base + path)
		if err != nil {
			return page{}, err
		}
		return u.read(res), nil
	}
	post := func(path string, form url.Values) (page, error) {
		form.Set("csrf", u.csrf)
		res, err := u.c.PostForm(base+path, form)
		if err != nil {
			return page{}, err
		}
		return u.read(res), nil
	}
	if _, err := get("/hub/signin"); err != nil {
		return err
	}
	if p, err := post("/hub/signin", url.Values{"token": {e.userToken(subject, "staff")}}); err != nil || p.url != "/hub" {
		return fmt.Errorf("sign-in of %s: %v at %s", subject, err, p.url)
	}
	for i := range n {
		if _, err := get("/hub/apis/residents/request"); err != nil {
			return err
		}
		p, err := post("/hub/apis/residents/request", residentsRequest())
		if err != nil {
			return err
		}
		if p.status != http.StatusOK || !requestPathRE.MatchString(p.url) {
			return fmt.Errorf("request %d of %s: %d at %s: %.300s", i, subject, p.status, p.url, p.body)
		}
	}
	return nil
}

// Steps that two Hub replicas take at the same time on one PostgreSQL
// store all commit: the state is swapped in (compare-and-set) and a step
// that lost the race runs again, so no request is lost.
func TestConcurrentStepsOnPostgreSQLLoseNothing(t *testing.T) {
	e, second := newPostgresEnv(t)
	concurrentFilings(t, e, second, 6, 4)
}

// concurrentFilings has users sign in at one replica or the other and
// file requests at the same time; every request must be kept, and
// audited once.
func concurrentFilings(t *testing.T, e *env, second string, users, each int) {
	errs := make(chan error, users)
	var wg sync.WaitGroup
	for i := range users {
		base := e.url
		if i%2 == 1 {
			base = second
		}
		wg.Go(func() { errs <- fileConcurrently(e, base, fmt.Sprintf("user%d", i), each) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range users {
		u := e.signIn(fmt.Sprintf("user%d", i), "staff")
		p := u.get("/hub/requests")
		if got := requestPathRE2.FindAllString(p.body, -1); len(got) != each {
			t.Errorf("user%d sees %d requests of their %d", i, len(got), each)
		}
	}
	filed := 0
	for _, r := range e.hubAudit() {
		if r.Status == http.StatusSeeOther && strings.HasPrefix(r.Reason, "access request ") {
			filed++
		}
	}
	if filed != users*each {
		t.Errorf("%d filings audited, want %d", filed, users*each)
	}
}

var requestPathRE2 = regexp.MustCompile(`<a href="/hub/requests/[0-9a-f-]{36}">`)

// A session begun on one replica is good on another (the cookie is sealed
// with the key they share), and signing out on either ends it on both.
// A Hub with another key refuses the cookie; an earlier key still opens
// it during a rotation.
func TestSessionsWorkAcrossReplicas(t *testing.T) {
	e, second := newPostgresEnv(t)
	ann := e.signIn("ann", "staff")
	ann.base = second
	if p := ann.get("/hub/keys"); p.status != http.StatusOK || p.url != "/hub/keys" {
		t.Fatalf("the second replica with the first's session: %d at %s", p.status, p.url)
	}
	// The CSRF token of a page from one replica is good on the other.
	ann.base = e.url
	ann.get("/hub/apis/residents/request")
	ann.base = second
	if p := ann.post("/hub/apis/residents/request", residentsRequest()); !requestPathRE.MatchString(p.url) {
		t.Fatalf("a form from one replica posted to the other: %d at %s", p.status, p.url)
	}

	// Another key: not signed in. The old key second: still signed in.
	rotated := e.cfg
	rotated.SessionKeys = [][]byte{[]byte("another-key-another-key-another-key!")}
	_, other := e.replicaWith(rotated)
	ann.base = other
	if p := ann.get("/hub/keys"); p.url != "/hub/signin" {
		t.Fatalf("a Hub with another session key let the session in: %d at %s", p.status, p.url)
	}
	rotated.SessionKeys = append(rotated.SessionKeys, e.cfg.SessionKeys[0])
	_, during := e.replicaWith(rotated)
	ann.base = during
	if p := ann.get("/hub/keys"); p.url != "/hub/keys" {
		t.Fatalf("a Hub with the earlier key second refused the session: %d at %s", p.status, p.url)
	}

	// Signing out on the second replica ends the session on the first too,
	// also for a copy of the cookie kept elsewhere.
	copied := e.user("ann")
	for _, c := range ann.c.Jar.Cookies(mustURL(e.url + "/hub")) {
		copied.c.Jar.SetCookies(mustURL(e.url+"/hub"), []*http.Cookie{c})
	}
	ann.base = second
	ann.get("/hub")
	if p := ann.post("/hub/signout", nil); p.url != "/hub/signin" {
		t.Fatalf("signing out: %d at %s", p.status, p.url)
	}
	if p := copied.get("/hub/keys"); p.url != "/hub/signin" {
		t.Fatalf("the first replica still takes a signed-out session: %d at %s", p.status, p.url)
	}
}

// The same on DynamoDB (minidyn in tests): its transactions lock nothing
// read, so only the swap's condition keeps concurrent steps from
// overwriting each other.
func TestConcurrentStepsOnDynamoDBLoseNothing(t *testing.T) {
	st, err := dynamodb.Open(context.Background(), ddbtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, st)
	_, h := e.replica(nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	concurrentFilings(t, e, srv.URL, 4, 3)
}
