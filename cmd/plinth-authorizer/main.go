// Command plinth-authorizer is the AWS Lambda entry point of Plinth's API
// Gateway REQUEST authorizer (package lambda). It is configured by
// environment variables:
//
//	PLINTH_ENV            development, staging or production (required)
//	PLINTH_STORE          store holding grants and access policies (required):
//	                      postgres://user:password@host:5432/db or sqlite:///path/file.db
//	PLINTH_DOMAINS        folder of domain specs (default: the shipped domains)
//	PLINTH_AUTH_SECRET    HS256 secret of user tokens
//	PLINTH_AUTH_JWKS_URL  JWKS of user tokens (RS256/ES256), instead of or besides the secret
//	PLINTH_AUTH_JWKS_FILE a JWKS file instead of the URL (e.g. shipped in the zip)
//	PLINTH_AUTH_ISSUER    expected iss of user tokens (optional)
//	PLINTH_AUTH_AUDIENCE  expected aud of user tokens (optional)
//	PLINTH_TOKEN_SECRET   secret of service tokens
//	PLINTH_ADMIN_GROUPS   comma-separated groups allowed on the admin API
//
// Build: GOOS=linux GOARCH=arm64 CGO_ENABLED=0 go build -tags lambda.norpc
// -o bootstrap ./cmd/plinth-authorizer, zip bootstrap, and deploy it on the
// provided.al2023 runtime. The store must already hold Plinth's tables
// (plinth serve creates them): the authorizer only reads grants and access
// policies. A configuration error stops the function at start; API Gateway
// then answers 500 to every call, so nothing is let in.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	awslambda "github.com/aws/aws-lambda-go/lambda"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/auth"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/lambda"
	"github.com/plinth-data/plinth/postgres"
	"github.com/plinth-data/plinth/spec"
	"github.com/plinth-data/plinth/sqlite"
)

func main() {
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	h, err := setup(context.Background())
	if err != nil {
		slog.Error("plinth-authorizer: cannot start", "error", err.Error())
		os.Exit(1)
	}
	awslambda.Start(h.Handle)
}

// setup builds the handler from the environment.
func setup(ctx context.Context) (*lambda.Authorizer, error) {
	env := os.Getenv("PLINTH_ENV")
	if env == "" {
		return nil, fmt.Errorf("PLINTH_ENV is not set (development, staging or production)")
	}
	var ds []*plinth.Domain
	var err error
	if dir := os.Getenv("PLINTH_DOMAINS"); dir != "" {
		ds, err = spec.LoadFS(os.DirFS(dir), ".")
	} else {
		ds, err = spec.LoadFS(domains.FS, ".")
	}
	if err != nil {
		return nil, err
	}
	store, err := openStore(ctx, os.Getenv("PLINTH_STORE"))
	if err != nil {
		return nil, err
	}
	cfg := auth.Config{
		Environment:   env,
		UserSecret:    secret("PLINTH_AUTH_SECRET"),
		JWKSURL:       os.Getenv("PLINTH_AUTH_JWKS_URL"),
		JWKSFile:      os.Getenv("PLINTH_AUTH_JWKS_FILE"),
		Issuer:        os.Getenv("PLINTH_AUTH_ISSUER"),
		Audience:      os.Getenv("PLINTH_AUTH_AUDIENCE"),
		ServiceSecret: secret("PLINTH_TOKEN_SECRET"),
		AdminGroups:   splitList(os.Getenv("PLINTH_ADMIN_GROUPS")),
	}
	if cfg.UserSecret == nil && cfg.JWKSURL == "" && cfg.JWKSFile == "" && cfg.ServiceSecret == nil {
		return nil, fmt.Errorf("no tokens could be verified: set PLINTH_AUTH_SECRET, PLINTH_AUTH_JWKS_URL or PLINTH_TOKEN_SECRET")
	}
	a, err := auth.New(ctx, cfg, store, ds)
	if err != nil {
		return nil, err
	}
	return lambda.NewAuthorizer(a), nil
}

// openStore opens the access store a URL names. The authorizer only reads
// grants and policies; the schema belongs to plinth serve.
func openStore(ctx context.Context, url string) (plinth.AccessStore, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		s, err := postgres.Open(ctx, url)
		if err != nil {
			return nil, err
		}
		return s, nil
	case strings.HasPrefix(url, "sqlite://") && len(url) > len("sqlite://"):
		s, err := sqlite.Open(ctx, strings.TrimPrefix(url, "sqlite://"))
		if err != nil {
			return nil, err
		}
		return s, nil
	default:
		return nil, fmt.Errorf("PLINTH_STORE must be postgres://user:password@host:5432/db or sqlite:///path/file.db")
	}
}

// secret is the value of an environment variable as a key; nil (the kind of
// token is not accepted) when the variable is unset or empty.
func secret(name string) []byte {
	if v := os.Getenv(name); v != "" {
		return []byte(v)
	}
	return nil
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
