package lambda

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	awslambda "github.com/aws/aws-lambda-go/lambda"
	"github.com/golang-jwt/jwt/v5"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/auth"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/spec"
	"github.com/plinth-data/plinth/sqlite"
)

var userSecret = []byte("user-secret-for-tests-0123456789abcdef")

const (
	testEnv     = plinth.EnvProduction
	readers     = "residents-readers"
	writers     = "residents-writers"
	methodARN42 = "arn:aws:execute-api:eu-west-2:123456789012:abcdef123/prod/GET/api/v1/residents/42"
)

// fixture is a real auth.Authorizer over a real SQLite store.
type fixture struct {
	store   *sqlite.Store
	authz   *auth.Authorizer
	handler *Authorizer
	logs    *bytes.Buffer // what the handler logged
}

// quiet makes h log into a buffer, which it returns.
func quiet(h *Authorizer) *bytes.Buffer {
	var buf bytes.Buffer
	h.log = slog.New(slog.NewJSONHandler(&buf, nil))
	return &buf
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "plinth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if err := st.PutPolicy(ctx, plinth.AccessPolicy{
		Domain:          "residents",
		Environment:     testEnv,
		ReadGroups:      []string{readers},
		WriteGroups:     []string{writers},
		ReportingGroups: []string{"residents-reporting"},
	}); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(ctx, auth.Config{
		Environment:   testEnv,
		UserSecret:    userSecret,
		ServiceSecret: []byte("service-secret-for-tests-0123456789ab"),
		AdminGroups:   []string{"plinth-admins"},
	}, st, ds)
	if err != nil {
		t.Fatal(err)
	}
	h := NewAuthorizer(a)
	return &fixture{store: st, authz: a, handler: h, logs: quiet(h)}
}

func (f *fixture) userToken(t *testing.T, ttl time.Duration, groups ...string) string {
	t.Helper()
	tok, err := f.authz.IssueUserToken(plinth.Principal{
		Subject: "a1b2c3d4-0000-4000-8000-000000000042",
		Email:   "sam.okafor@example.gov.uk",
		Name:    "Sam Okafor",
		Groups:  groups,
	}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// event loads a recorded event and puts authorization (the whole header
// value; "" removes the header) wherever the recording has one.
func event(t *testing.T, file, authorization string) events.APIGatewayCustomAuthorizerRequestTypeRequest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	for k := range ev.Headers {
		if strings.EqualFold(k, "authorization") {
			if authorization == "" {
				delete(ev.Headers, k)
			} else {
				ev.Headers[k] = authorization
			}
		}
	}
	for k := range ev.MultiValueHeaders {
		if strings.EqualFold(k, "authorization") {
			if authorization == "" {
				delete(ev.MultiValueHeaders, k)
			} else {
				ev.MultiValueHeaders[k] = []string{authorization}
			}
		}
	}
	return ev
}

// checkPolicy asserts the shape of a response and its effect.
func checkPolicy(t *testing.T, resp events.APIGatewayCustomAuthorizerResponse, err error, effect, arn string) {
	t.Helper()
	if err != nil {
		t.Fatalf("error %v, want a %s policy", err, effect)
	}
	doc := resp.PolicyDocument
	if doc.Version != "2012-10-17" || len(doc.Statement) != 1 {
		t.Fatalf("policy document %+v", doc)
	}
	s := doc.Statement[0]
	if s.Effect != effect || len(s.Action) != 1 || s.Action[0] != "execute-api:Invoke" ||
		len(s.Resource) != 1 || s.Resource[0] != arn {
		t.Fatalf("statement %+v, want %s execute-api:Invoke on %s", s, effect, arn)
	}
	if resp.PrincipalID == "" {
		t.Fatal("empty principalId")
	}
	// API Gateway rejects the response (500) when a context value is not
	// a string, number or boolean.
	for k, v := range resp.Context {
		switch v.(type) {
		case string, bool, int, int64, float64:
		default:
			t.Errorf("context %s = %#v (%T): API Gateway accepts only strings, numbers and booleans", k, v, v)
		}
	}
	// What API Gateway reads is the JSON.
	data, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Version":"2012-10-17"`, `"Effect":"` + effect + `"`, `"principalId":`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("response JSON %s lacks %s", data, want)
		}
	}
}

func checkUnauthorized(t *testing.T, resp events.APIGatewayCustomAuthorizerResponse, err error) {
	t.Helper()
	if err == nil || err.Error() != "Unauthorized" || !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("got %+v, %v; want the error \"Unauthorized\"", resp, err)
	}
}

func TestReaderGetIsAllowed(t *testing.T) {
	f := newFixture(t)
	tok := f.userToken(t, time.Hour, readers, "all-staff")
	ev := event(t, "get-resident.json", "Bearer "+tok)
	resp, err := f.handler.Handle(context.Background(), ev)
	checkPolicy(t, resp, err, "Allow", methodARN42)
	if resp.PrincipalID != "a1b2c3d4-0000-4000-8000-000000000042" {
		t.Errorf("principalId %q", resp.PrincipalID)
	}
	want := map[string]any{
		"email":   "sam.okafor@example.gov.uk",
		"name":    "Sam Okafor",
		"groups":  readers + ",all-staff",
		"tokenId": "",
		"status":  200,
		"route":   "/api/v1/residents/{id}",
		"domain":  "residents",
	}
	for k, v := range want {
		if resp.Context[k] != v {
			t.Errorf("context %s = %#v, want %#v", k, resp.Context[k], v)
		}
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `"msg":"authorizer: allowed"`) || !strings.Contains(logs, "c5a3e6b0-1f2d-4e8a-9b7c-6d5e4f3a2b10") {
		t.Errorf("the decision was not logged with the request id: %s", logs)
	}
	if strings.Contains(logs, tok[strings.LastIndexByte(tok, '.')+1:]) {
		t.Error("the token was logged")
	}
}

func TestReadOnlyGroupPatchIsDenied(t *testing.T) {
	f := newFixture(t)
	ev := event(t, "patch-resident.json", "Bearer "+f.userToken(t, time.Hour, readers))
	resp, err := f.handler.Handle(context.Background(), ev)
	checkPolicy(t, resp, err, "Deny", strings.Replace(methodARN42, "/GET/", "/PATCH/", 1))
	if resp.Context["status"] != 403 {
		t.Errorf("context status %v, want 403", resp.Context["status"])
	}
	if resp.PrincipalID != "a1b2c3d4-0000-4000-8000-000000000042" {
		t.Errorf("principalId %q", resp.PrincipalID)
	}

	// The same token may PATCH once its holder is in a write group.
	ev = event(t, "patch-resident.json", "Bearer "+f.userToken(t, time.Hour, writers))
	resp, err = f.handler.Handle(context.Background(), ev)
	checkPolicy(t, resp, err, "Allow", strings.Replace(methodARN42, "/GET/", "/PATCH/", 1))
}

func TestBadTokensAreUnauthorized(t *testing.T) {
	f := newFixture(t)
	valid := f.userToken(t, time.Hour, readers)
	forged := valid[:strings.LastIndexByte(valid, '.')+1] + "c2lnbmF0dXJlLWZyb20tc29tZXdoZXJlLWVsc2U"
	cases := map[string]string{
		"missing":      "",
		"garbage":      "Bearer not-a-jwt",
		"no scheme":    "Basic c2FtOnBhc3N3b3Jk",
		"empty bearer": "Bearer ",
		"expired":      "Bearer " + expiredToken(t),
		"forged":       "Bearer " + forged,
		"truncated":    valid[:10],
	}
	for name, header := range cases {
		t.Run(name, func(t *testing.T) {
			resp, err := f.handler.Handle(context.Background(), event(t, "get-resident.json", header))
			checkUnauthorized(t, resp, err)
		})
	}
}

// expiredToken is a user token, signed with the right secret as the SSO
// would, that expired an hour ago.
func expiredToken(t *testing.T) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":    "a1b2c3d4-0000-4000-8000-000000000042",
		"email":  "sam.okafor@example.gov.uk",
		"groups": []string{readers},
		"iat":    now.Add(-9 * time.Hour).Unix(),
		"exp":    now.Add(-time.Hour).Unix(),
	}).SignedString(userSecret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestServiceTokenOnAnotherEndpointIsDenied(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, g, err := f.authz.IssueServiceToken(ctx, plinth.Grant{
		Consumer:     "housing-benefits-listener",
		ConsumerType: "listener",
		API:          "residents",
		Endpoint:     "/api/v1/residents/{id}",
		Methods:      []string{"GET"},
		Environment:  testEnv,
		ExpiresAt:    time.Now().Add(24 * time.Hour),
		RequestedBy:  "benefits-team@example.gov.uk",
		AuthorisedBy: "data-protection@example.gov.uk",
		Enabled:      true,
	})
	if err != nil {
		t.Fatal(err)
	}

	// Its own endpoint is allowed, and the context names the token.
	resp, err := f.handler.Handle(ctx, event(t, "get-resident.json", "Bearer "+tok))
	checkPolicy(t, resp, err, "Allow", methodARN42)
	if resp.Context["tokenId"] != g.ID || resp.Context["consumer"] != "housing-benefits-listener" {
		t.Errorf("context %v, want tokenId %s and consumer housing-benefits-listener", resp.Context, g.ID)
	}

	// The list endpoint is another template: denied, not a prefix match.
	resp, err = f.handler.Handle(ctx, event(t, "list-residents.json", "Bearer "+tok))
	checkPolicy(t, resp, err, "Deny", "arn:aws:execute-api:eu-west-2:123456789012:abcdef123/prod/GET/api/v1/residents")
	if resp.Context["status"] != 403 || resp.Context["tokenId"] != g.ID {
		t.Errorf("context %v, want status 403 and tokenId %s", resp.Context, g.ID)
	}

	// And so is another method on its endpoint.
	resp, err = f.handler.Handle(ctx, event(t, "patch-resident.json", "Bearer "+tok))
	checkPolicy(t, resp, err, "Deny", strings.Replace(methodARN42, "/GET/", "/PATCH/", 1))
}

func TestStagePrefixIsStripped(t *testing.T) {
	f := newFixture(t)
	// Called on the execute-api endpoint: path "/prod/api/v1/residents/42".
	ev := event(t, "get-resident-execute-api.json", "Bearer "+f.userToken(t, time.Hour, readers))
	if !strings.HasPrefix(ev.Path, "/prod/") {
		t.Fatalf("recording has path %q", ev.Path)
	}
	resp, err := f.handler.Handle(context.Background(), ev)
	checkPolicy(t, resp, err, "Allow", methodARN42)
	if resp.Context["route"] != "/api/v1/residents/{id}" {
		t.Errorf("route %v", resp.Context["route"])
	}
}

func TestHeaderNameIsCaseInsensitive(t *testing.T) {
	f := newFixture(t)
	value := "Bearer " + f.userToken(t, time.Hour, readers)

	t.Run("lower-case authorization in headers", func(t *testing.T) {
		ev := event(t, "get-resident.json", "")
		ev.Headers["authorization"] = value
		ev.MultiValueHeaders = nil
		resp, err := f.handler.Handle(context.Background(), ev)
		checkPolicy(t, resp, err, "Allow", methodARN42)
	})
	t.Run("only in multiValueHeaders", func(t *testing.T) {
		ev := event(t, "get-resident.json", "")
		ev.MultiValueHeaders["AUTHORIZATION"] = []string{value}
		resp, err := f.handler.Handle(context.Background(), ev)
		checkPolicy(t, resp, err, "Allow", methodARN42)
	})
	t.Run("recorded lower-case event", func(t *testing.T) {
		ev := event(t, "get-resident-execute-api.json", value)
		if _, ok := ev.Headers["authorization"]; !ok {
			t.Fatal("recording has no lower-case authorization header")
		}
		resp, err := f.handler.Handle(context.Background(), ev)
		checkPolicy(t, resp, err, "Allow", methodARN42)
	})
	t.Run("two different values", func(t *testing.T) {
		ev := event(t, "get-resident.json", value)
		ev.MultiValueHeaders["Authorization"] = []string{value, "Bearer " + f.userToken(t, time.Hour, writers)}
		resp, err := f.handler.Handle(context.Background(), ev)
		checkUnauthorized(t, resp, err)
	})
}

func TestStoreDownDenies(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, _, err := f.authz.IssueServiceToken(ctx, plinth.Grant{
		Consumer: "contacts-sync", ConsumerType: "service", API: "residents",
		Endpoint: "/api/v1/residents/{id}", Methods: []string{"GET"}, Environment: testEnv,
		ExpiresAt: time.Now().Add(time.Hour), RequestedBy: "a@example.gov.uk", AuthorisedBy: "b@example.gov.uk",
	})
	if err != nil {
		t.Fatal(err)
	}
	// The grant is not cached yet, and the store cannot be read: 503,
	// which API Gateway can only express as a Deny (403).
	f.store.Close()
	resp, err := f.handler.Handle(ctx, event(t, "get-resident.json", "Bearer "+tok))
	checkPolicy(t, resp, err, "Deny", methodARN42)
	if resp.Context["status"] != 503 {
		t.Errorf("context %v, want status 503", resp.Context)
	}
}

// TestThroughLambdaRuntime feeds the recorded JSON, as bytes, through the
// aws-lambda-go handler that lambda.Start would run, and reads the JSON it
// answers.
func TestThroughLambdaRuntime(t *testing.T) {
	f := newFixture(t)
	rt := awslambda.NewHandler(f.handler.Handle)
	invoke := func(file, token string) (map[string]any, error) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.ReplaceAll(data, []byte("Bearer REPLACED-BY-THE-TEST"), []byte(token))
		out, err := rt.Invoke(context.Background(), data)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("response %s: %v", out, err)
		}
		return m, nil
	}

	m, err := invoke("get-resident-execute-api.json", "Bearer "+f.userToken(t, time.Hour, readers))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Statement":[{"Action":["execute-api:Invoke"],"Effect":"Allow","Resource":["` + methodARN42 + `"]}],"Version":"2012-10-17"}`
	if got, _ := json.Marshal(m["policyDocument"]); string(got) != want {
		t.Errorf("policyDocument %s\nwant           %s", got, want)
	}
	if m["principalId"] != "a1b2c3d4-0000-4000-8000-000000000042" {
		t.Errorf("principalId %v", m["principalId"])
	}
	ctx, _ := m["context"].(map[string]any)
	if ctx["groups"] != readers || ctx["email"] != "sam.okafor@example.gov.uk" || ctx["status"] != float64(200) {
		t.Errorf("context %v", ctx)
	}

	m, err = invoke("patch-resident.json", "Bearer "+f.userToken(t, time.Hour, readers))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(m["policyDocument"]); !strings.Contains(string(got), `"Effect":"Deny"`) {
		t.Errorf("PATCH by a reader: policyDocument %s", got)
	}

	if _, err := invoke("list-residents.json", "Bearer garbage"); err == nil || err.Error() != "Unauthorized" {
		t.Errorf("garbage token: error %v, want Unauthorized", err)
	}
}

// panicker is a Decider that panics.
type panicker struct{}

func (panicker) Decide(context.Context, plinth.AuthRequest) plinth.Decision { panic("boom") }

func TestPanickingDeciderDenies(t *testing.T) {
	h := NewAuthorizer(panicker{})
	logs := quiet(h)
	resp, err := h.Handle(context.Background(), event(t, "get-resident.json", "Bearer x.y.z"))
	checkPolicy(t, resp, err, "Deny", methodARN42)
	if resp.PrincipalID != "anonymous" {
		t.Errorf("principalId %q, want anonymous", resp.PrincipalID)
	}
	if !strings.Contains(logs.String(), "panicked") || !strings.Contains(logs.String(), "boom") {
		t.Errorf("the panic was not logged: %s", logs)
	}
}

func TestMalformedEvents(t *testing.T) {
	f := newFixture(t)
	value := "Bearer " + f.userToken(t, time.Hour, readers)

	ev := event(t, "get-resident.json", value)
	ev.HTTPMethod, ev.RequestContext.HTTPMethod = "", ""
	resp, err := f.handler.Handle(context.Background(), ev)
	checkPolicy(t, resp, err, "Deny", methodARN42)

	ev = event(t, "get-resident.json", value)
	ev.Path, ev.RequestContext.Path = "", ""
	resp, err = f.handler.Handle(context.Background(), ev)
	checkPolicy(t, resp, err, "Deny", methodARN42)

	// A path package auth does not know, such as one whose stage prefix
	// was not recognised, is denied rather than left to a router.
	ev = event(t, "get-resident.json", value)
	ev.Path = "/v2/api/v1/residents/42"
	resp, err = f.handler.Handle(context.Background(), ev)
	checkPolicy(t, resp, err, "Deny", methodARN42)
	if resp.Context["status"] != 403 {
		t.Errorf("unknown route: context %v", resp.Context)
	}

	// Without a method ARN there is no policy to return.
	ev = event(t, "get-resident.json", value)
	ev.MethodArn = ""
	if _, err := f.handler.Handle(context.Background(), ev); err == nil || errors.Is(err, ErrUnauthorized) {
		t.Errorf("no methodArn: error %v", err)
	}
}

func TestRequestPath(t *testing.T) {
	cases := []struct{ path, rcPath, stage, resource, want string }{
		{"/api/v1/residents/42", "", "prod", "/api/v1/residents/{id}", "/api/v1/residents/42"},
		{"/prod/api/v1/residents/42", "", "prod", "/api/v1/residents/{id}", "/api/v1/residents/42"},
		{"", "/prod/api/v1/residents/42", "prod", "/api/v1/residents/{id}", "/api/v1/residents/42"},
		{"/production/api/v1/residents", "", "prod", "/api/v1/residents", "/production/api/v1/residents"},
		{"/prod", "", "prod", "/", "/"},
		{"/api/v1/residents", "", "$default", "/api/v1/residents", "/api/v1/residents"},
		// A stage named like the first route segment.
		{"/api/v1/residents/42", "", "api", "/api/v1/residents/{id}", "/api/v1/residents/42"},
		{"/api/api/v1/residents/42", "", "api", "/api/v1/residents/{id}", "/api/v1/residents/42"},
	}
	for _, c := range cases {
		ev := events.APIGatewayCustomAuthorizerRequestTypeRequest{Path: c.path, Resource: c.resource}
		ev.RequestContext.Path, ev.RequestContext.Stage = c.rcPath, c.stage
		if got := requestPath(ev); got != c.want {
			t.Errorf("path %q stage %q resource %q: got %q, want %q", c.path, c.stage, c.resource, got, c.want)
		}
	}
}

// The request's AWS account must be the domain's when one is required: a
// valid token used against a copy of the API in another account is denied.
func TestWrongAccountIsDenied(t *testing.T) {
	f := newFixture(t)
	tok := f.userToken(t, time.Hour, readers)
	ev := event(t, "get-resident.json", "Bearer "+tok) // accountId 123456789012
	f.handler.RequireAccounts(map[string]string{"residents": "123456789012"})
	resp, err := f.handler.Handle(context.Background(), ev)
	checkPolicy(t, resp, err, "Allow", methodARN42)

	f.handler.RequireAccounts(map[string]string{"residents": "999999999999", "contacts": "123456789012"})
	resp, err = f.handler.Handle(context.Background(), ev)
	checkPolicy(t, resp, err, "Deny", methodARN42)
	if r, _ := resp.Context["reason"].(string); !strings.Contains(r, "999999999999") || resp.Context["status"] != 403 {
		t.Errorf("context %v", resp.Context)
	}
	ev.RequestContext.AccountID = ""
	resp, err = f.handler.Handle(context.Background(), ev)
	checkPolicy(t, resp, err, "Deny", methodARN42)

	// Another domain's account does not matter.
	f.handler.RequireAccounts(map[string]string{"contacts": "999999999999"})
	resp, err = f.handler.Handle(context.Background(), event(t, "get-resident.json", "Bearer "+tok))
	checkPolicy(t, resp, err, "Allow", methodARN42)
}
