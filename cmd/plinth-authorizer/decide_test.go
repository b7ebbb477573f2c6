package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/golang-jwt/jwt/v5"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/dynamodb"
	"github.com/plinth-data/plinth/lambda"
	"github.com/plinth-data/plinth/plinthtest/ddbtest"
	"github.com/plinth-data/plinth/spec"
	"github.com/plinth-data/plinth/sqlite"
)

const testUserSecret = "user-secret-for-the-authorizer-tests-0123"

// preparedStore makes an SQLite store holding Plinth's tables, as serve
// leaves it, and returns its URL.
func preparedStore(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "plinth.db")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	return "sqlite://" + path
}

// userToken signs a user token with testUserSecret that expired (or
// expires) at exp.
func userToken(t *testing.T, exp time.Time, groups ...string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "a1b2c3d4-0000-4000-8000-000000000042", "email": "sam@example.gov.uk",
		"groups": groups, "iat": exp.Add(-time.Hour).Unix(), "exp": exp.Unix(),
	}).SignedString([]byte(testUserSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// call asks the authorizer about GET path with token, and returns the
// effect ("Allow", "Deny") or "Unauthorized".
func call(t *testing.T, h *lambda.Authorizer, path, token string) string {
	t.Helper()
	arn := "arn:aws:execute-api:eu-west-2:123456789012:abcdef123/prod/GET" + path
	resp, err := h.Handle(context.Background(), events.APIGatewayCustomAuthorizerRequestTypeRequest{
		Type: "REQUEST", MethodArn: arn, Resource: path, Path: path, HTTPMethod: "GET",
		Headers:        map[string]string{"Authorization": "Bearer " + token},
		RequestContext: events.APIGatewayCustomAuthorizerRequestTypeRequestContext{AccountID: "123456789012"},
	})
	if errors.Is(err, lambda.ErrUnauthorized) {
		return "Unauthorized"
	}
	if err != nil || len(resp.PolicyDocument.Statement) != 1 {
		t.Fatalf("GET %s: %+v, %v", path, resp, err)
	}
	return resp.PolicyDocument.Statement[0].Effect
}

// TestAuthorizerDecidesLikeServe: the Lambda authorizer honours the
// settings serve honours, with serve's defaults. Before package config it
// read its environment itself and ignored auditor groups, the clock skew,
// and the default admin group.
func TestAuthorizerDecidesLikeServe(t *testing.T) {
	t.Chdir(t.TempDir()) // no plinth.yaml
	t.Setenv("PLINTH_ENV", "staging")
	t.Setenv("PLINTH_STORE", preparedStore(t))
	t.Setenv("PLINTH_AUTH_SECRET", testUserSecret)
	t.Setenv("PLINTH_AUDITOR_GROUPS", "records-auditors")
	t.Setenv("PLINTH_AUTH_CLOCK_SKEW", "5m")
	// Outside development every domain's cloudAccount label needs its
	// account id, so the authorizer can check the API's account.
	if _, err := setup(context.Background()); err == nil || !strings.Contains(err.Error(), "PLINTH_CLOUD_ACCOUNTS=") {
		t.Fatalf("no account ids for the labels: %v", err)
	}
	t.Setenv("PLINTH_CLOUD_ACCOUNTS", "social-care-production=123456789012,customer-services-production=210987654321")
	h, err := setup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, c := range []struct {
		name, path, token, want string
	}{
		{"auditor searches the audit trail", "/admin/v1/audit", userToken(t, now.Add(time.Hour), "records-auditors"), "Allow"},
		{"auditor elsewhere on the admin API", "/admin/v1/tokens", userToken(t, now.Add(time.Hour), "records-auditors"), "Deny"},
		{"default admin group", "/admin/v1/tokens", userToken(t, now.Add(time.Hour), "plinth-admins"), "Allow"},
		{"expired within the clock skew", "/admin/v1/audit", userToken(t, now.Add(-2*time.Minute), "records-auditors"), "Allow"},
		{"expired beyond the clock skew", "/admin/v1/audit", userToken(t, now.Add(-10*time.Minute), "records-auditors"), "Unauthorized"},
	} {
		if got := call(t, h, c.path, c.token); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

// The authorizer reads grants and policies from a DynamoDB store too.
func TestAuthorizerOnDynamoDB(t *testing.T) {
	ctx := context.Background()
	url := ddbtest.URL(t)
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	st, err := dynamodb.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if err := st.PutPolicy(ctx, plinth.AccessPolicy{Domain: "residents", Environment: "staging", ReadGroups: []string{"residents-readers"}}); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	t.Setenv("PLINTH_ENV", "staging")
	t.Setenv("PLINTH_STORE", url)
	t.Setenv("PLINTH_AUTH_SECRET", testUserSecret)
	t.Setenv("PLINTH_CLOUD_ACCOUNTS", "social-care-production=123456789012,customer-services-production=210987654321")
	h, err := setup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if got := call(t, h, "/api/v1/residents/42", userToken(t, now.Add(time.Hour), "residents-readers")); got != "Allow" {
		t.Fatalf("reader: %s", got)
	}
	if got := call(t, h, "/api/v1/residents/42", userToken(t, now.Add(time.Hour), "someone-else")); got != "Deny" {
		t.Fatalf("no group: %s", got)
	}
}
