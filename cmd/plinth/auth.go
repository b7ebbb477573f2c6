package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/auth"
)

// developerGroup is the group of the development token and of the policies
// development mode creates.
const developerGroup = "plinth-developers"

// devTokenLifetime is how long the development token printed by serve lasts.
const devTokenLifetime = 12 * time.Hour

// accessStore returns the store's access side (grants and policies).
func accessStore(st plinth.Store) (plinth.AccessStore, error) {
	a, ok := st.(plinth.AccessStore)
	if !ok {
		return nil, fmt.Errorf("the store does not keep access grants and policies")
	}
	return a, nil
}

// newAuthorizer builds the authorizer from the configuration. In
// development with no authentication configured, user tokens are signed
// with the development secret of the data directory (devMode true): Plinth
// never serves anonymously.
func newAuthorizer(ctx context.Context, cfg Config, access plinth.AccessStore, ds []*plinth.Domain) (a *auth.Authorizer, devMode bool, err error) {
	ac, devMode, err := authConfig(cfg)
	if err != nil {
		return nil, false, err
	}
	a, err = auth.New(ctx, ac, access, ds)
	return a, devMode, err
}

// authConfig is the authorizer's configuration. In development a secret
// that is not configured comes from the data directory (see devSecrets), so
// tokens stay valid across restarts and plinth token issue signs with the
// same secret serve verifies with.
func authConfig(cfg Config) (ac auth.Config, devMode bool, err error) {
	ac = auth.Config{
		Environment:             cfg.Environment,
		JWKSURL:                 cfg.AuthJWKSURL,
		JWKSFile:                cfg.AuthJWKSFile,
		Issuer:                  cfg.AuthIssuer,
		Audience:                cfg.AuthAudience,
		ClockSkew:               cfg.AuthClockSkew,
		MaxServiceTokenLifetime: cfg.MaxTokenLifetime,
		AdminGroups:             cfg.AdminGroupList(),
		AuditorGroups:           splitList(cfg.AuditorGroups),
	}
	if cfg.AuthSecret != "" {
		ac.UserSecret = []byte(cfg.AuthSecret)
	}
	if !cfg.AuthConfigured() {
		if cfg.Environment != plinth.EnvDevelopment {
			return ac, false, fmt.Errorf("environment %s needs authentication: set authSecret (PLINTH_AUTH_SECRET), authJWKSURL or authJWKSFile", cfg.Environment)
		}
		devMode = true
		sec, err := devSecrets(cfg.DataDir)
		if err != nil {
			return ac, false, err
		}
		ac.UserSecret = sec.User
	}
	// Outside development, no tokenSecret means no service tokens.
	if cfg.TokenSecret != "" || cfg.Environment == plinth.EnvDevelopment {
		if ac.ServiceSecret, err = serviceSecret(cfg); err != nil {
			return ac, false, err
		}
	}
	return ac, devMode, nil
}

// serviceSecret is the key service tokens are signed with: tokenSecret, or
// in development the development secret of the data directory.
func serviceSecret(cfg Config) ([]byte, error) {
	if cfg.TokenSecret != "" {
		return []byte(cfg.TokenSecret), nil
	}
	if cfg.Environment != plinth.EnvDevelopment {
		return nil, fmt.Errorf("set tokenSecret (PLINTH_TOKEN_SECRET or --token-secret) to the secret the serving Plinth uses, so it can verify the token")
	}
	sec, err := devSecrets(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	return sec.Service, nil
}

// devSecretsFile is the file in the data directory that holds the
// development secrets.
const devSecretsFile = "development-secrets.json"

// secrets are the development secrets: one for user tokens, one for
// service tokens (they must differ).
type secrets struct {
	User    []byte `json:"userSecret"`
	Service []byte `json:"serviceSecret"`
}

// devSecrets returns the development secrets kept in dir, creating them
// (file mode 0600) the first time. Creation is atomic and never replaces
// a file another process made first.
func devSecrets(dir string) (secrets, error) {
	path := filepath.Join(dir, devSecretsFile)
	sec, err := readSecrets(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return sec, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return sec, fmt.Errorf("creating the data folder for the development secrets: %w", err)
	}
	sec = secrets{User: randomSecret(), Service: randomSecret()}
	data, _ := json.MarshalIndent(sec, "", "  ")
	tmp, err := os.CreateTemp(dir, devSecretsFile+".*")
	if err != nil {
		return sec, fmt.Errorf("writing the development secrets: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(append(data, '\n'))
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), 0o600) // CreateTemp makes 0600; be explicit
	}
	if werr != nil {
		return sec, fmt.Errorf("writing the development secrets: %w", werr)
	}
	// A hard link fails when the file exists: whoever links first wins,
	// and everyone then reads the same secrets.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return sec, fmt.Errorf("writing the development secrets: %w", err)
	}
	return readSecrets(path)
}

func readSecrets(path string) (secrets, error) {
	var sec secrets
	fi, err := os.Stat(path)
	if err != nil {
		return sec, err
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return sec, fmt.Errorf("%s is readable by others (mode %s): run chmod 600 %s, or delete it to make new development secrets", path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return sec, err
	}
	if err := json.Unmarshal(data, &sec); err != nil || len(sec.User) < 32 || len(sec.Service) < 32 || bytes.Equal(sec.User, sec.Service) {
		return sec, fmt.Errorf("%s is damaged: delete it, and Plinth makes new development secrets (tokens issued with the old ones stop working)", path)
	}
	return sec, nil
}

func randomSecret() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// loadPolicies writes the configured access policies into the store, and in
// development mode gives the developer group read and write access to every
// domain that has no development policy yet.
func loadPolicies(ctx context.Context, cfg Config, access plinth.AccessStore, ds []*plinth.Domain, devMode bool, logger *slog.Logger) error {
	for _, p := range cfg.Policies {
		if err := access.PutPolicy(ctx, p); err != nil {
			return fmt.Errorf("loading access policy for %s in %s: %w", p.Domain, p.Environment, err)
		}
	}
	if !devMode {
		return nil
	}
	existing, err := access.Policies(ctx, plinth.EnvDevelopment)
	if err != nil {
		return err
	}
	has := map[string]bool{}
	for _, p := range existing {
		has[p.Domain] = true
	}
	for _, d := range ds {
		if has[d.Name] {
			continue
		}
		group := []string{developerGroup}
		p := plinth.AccessPolicy{Domain: d.Name, Environment: plinth.EnvDevelopment,
			ReadGroups: group, WriteGroups: group, WriteImpliesRead: true, ReportingGroups: group}
		if err := access.PutPolicy(ctx, p); err != nil {
			return err
		}
		logger.Info("development access policy created", "domain", d.Name, "group", developerGroup)
	}
	return nil
}

// developerToken issues the short-lived token serve prints in development.
func developerToken(a *auth.Authorizer, cfg Config) (string, plinth.Principal, error) {
	p := plinth.Principal{
		Subject: "developer",
		Email:   "developer@example.org",
		Name:    "Plinth developer",
		Groups:  append([]string{developerGroup}, cfg.AdminGroupList()...),
	}
	tok, err := a.IssueUserToken(p, devTokenLifetime)
	return tok, p, err
}
