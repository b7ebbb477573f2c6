package main

import (
	"context"
	"fmt"
	"log/slog"
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

// newAuthorizer builds the authorizer from the configuration (see
// config.Config.Auth: devMode is true when tokens are signed with the
// development secrets of the data directory).
func newAuthorizer(ctx context.Context, cfg Config, access plinth.AccessStore, ds []*plinth.Domain) (a *auth.Authorizer, devMode bool, err error) {
	ac, devMode, err := cfg.Auth()
	if err != nil {
		return nil, false, err
	}
	a, err = auth.New(ctx, ac, access, ds)
	return a, devMode, err
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
