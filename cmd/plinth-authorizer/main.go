// Command plinth-authorizer is the AWS Lambda entry point of Plinth's API
// Gateway REQUEST authorizer (package lambda). It reads its configuration
// as plinth serve does (package config): plinth.yaml in the working
// directory or the file PLINTH_CONFIG names, then the PLINTH_* variables,
// with serve's names and defaults, so both decide alike. It uses:
//
//	PLINTH_ENV                development, staging or production (required)
//	PLINTH_STORE              store holding grants and access policies (required):
//	                          postgres://user:password@host:5432/db or sqlite:///path/file.db
//	PLINTH_DOMAINS            folder of domain specs (default: the shipped domains)
//	PLINTH_AUTH_SECRET        HS256 secret of user tokens
//	PLINTH_AUTH_JWKS_URL      JWKS of user tokens (RS256/ES256), instead of or besides the secret
//	PLINTH_AUTH_JWKS_FILE     a JWKS file instead of the URL (e.g. shipped in the zip)
//	PLINTH_AUTH_ISSUER        expected iss of user tokens (optional)
//	PLINTH_AUTH_AUDIENCE      expected aud of user tokens (optional)
//	PLINTH_AUTH_CLOCK_SKEW    leeway for token times (default 30s)
//	PLINTH_TOKEN_SECRET       secret of service tokens
//	PLINTH_MAX_TOKEN_LIFETIME longest service-token lifetime (default 8760h)
//	PLINTH_ADMIN_GROUPS       groups allowed on the admin API (default plinth-admins)
//	PLINTH_AUDITOR_GROUPS     groups allowed to search the audit trail (default plinth-auditors)
//	PLINTH_DATA_DIR           in development without authentication, the folder
//	                          holding serve's development-secrets.json (read, never made)
//	PLINTH_LOG_LEVEL          debug, info, warn or error (default info)
//
// Staging and production need PLINTH_AUTH_SECRET or a JWKS, as serve does.
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
	"github.com/plinth-data/plinth/config"
	"github.com/plinth-data/plinth/dynamodb"
	"github.com/plinth-data/plinth/lambda"
	"github.com/plinth-data/plinth/postgres"
	"github.com/plinth-data/plinth/secretsmanager"
	"github.com/plinth-data/plinth/sqlite"
)

func main() {
	slog.SetDefault(slog.New(plinth.MaskLogs(slog.NewJSONHandler(os.Stderr, nil), nil)))
	h, err := setup(context.Background())
	if err != nil {
		slog.Error("plinth-authorizer: cannot start", "error", err.Error())
		os.Exit(1)
	}
	awslambda.Start(h.Handle)
}

// setup builds the handler from the configuration.
func setup(ctx context.Context) (*lambda.Authorizer, error) {
	if err := secretsmanager.ApplyEnv(ctx); err != nil {
		return nil, err
	}
	cfg, err := loadConfig()
	if err != nil {
		return nil, err
	}
	slog.SetDefault(slog.New(plinth.MaskLogs(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel(cfg.LogLevel)}), nil)))
	ds, err := cfg.LoadDomains()
	if err != nil {
		return nil, err
	}
	ac, err := authConfig(cfg)
	if err != nil {
		return nil, err
	}
	store, err := openStore(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	accounts, err := cfg.AccountIDs(ds)
	if err != nil {
		return nil, err
	}
	a, err := auth.New(ctx, ac, store, ds)
	if err != nil {
		return nil, err
	}
	return lambda.NewAuthorizer(a).RequireAccounts(accounts), nil
}

// loadConfig reads plinth.yaml and the PLINTH_* variables as serve does
// (package config), and insists on an environment: a function deployed
// without one must not fall back to development and its policies.
func loadConfig() (config.Config, error) {
	cfg, err := config.Load(nil)
	if err != nil {
		return cfg, err
	}
	if !cfg.IsSet("environment") {
		return cfg, fmt.Errorf("PLINTH_ENV is not set (development, staging or production)")
	}
	return cfg, nil
}

// authConfig is the authorizer's configuration, built as serve builds it;
// development secrets are read but never made (see Config.AuthReadOnly).
func authConfig(cfg config.Config) (auth.Config, error) {
	ac, _, err := cfg.AuthReadOnly()
	return ac, err
}

func logLevel(name string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(name)) // Config.Check allowed only valid names
	return l
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
	case strings.HasPrefix(url, "dynamodb://"):
		// Grants and policies are items of the system table; the
		// authorizer only reads them.
		return dynamodb.Open(ctx, url)
	case strings.HasPrefix(url, "sqlite://") && len(url) > len("sqlite://"):
		s, err := sqlite.Open(ctx, strings.TrimPrefix(url, "sqlite://"))
		if err != nil {
			return nil, err
		}
		return s, nil
	default:
		// No default: SQLite in the data folder of a Lambda package is
		// never the store serve writes grants into.
		return nil, fmt.Errorf("set the store (PLINTH_STORE, or store in plinth.yaml) to postgres://user:password@host:5432/db, dynamodb://region[?prefix=…] or sqlite:///path/file.db")
	}
}
