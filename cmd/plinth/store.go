package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/dynamodb"
	"github.com/plinth-data/plinth/postgres"
	"github.com/plinth-data/plinth/sqlite"
	"github.com/plinth-data/plinth/storemux"
)

// openStore opens the store a URL names and prepares it for the domains.
func openStore(ctx context.Context, url string, ds []*plinth.Domain) (plinth.Store, error) {
	st, err := connectStore(ctx, url, environmentOf(ctx) != plinth.EnvDevelopment)
	if err != nil {
		return nil, err
	}
	if err := st.Prepare(ctx, ds); err != nil {
		st.Close()
		return nil, fmt.Errorf("preparing the store: %w", err)
	}
	return st, nil
}

// connectStore opens the store at url without preparing it. checkTables
// makes a DynamoDB store's Prepare verify its tables instead of creating
// them.
func connectStore(ctx context.Context, url string, checkTables bool) (plinth.Store, error) {
	var st plinth.Store
	switch {
	case strings.HasPrefix(url, "sqlite://"):
		path := strings.TrimPrefix(url, "sqlite://")
		if path == "" {
			return nil, fmt.Errorf("store %q: give a file path, such as sqlite://plinth-data/plinth.db", url)
		}
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			return nil, err
		}
		st = s
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		s, err := postgres.Open(ctx, url)
		if err != nil {
			return nil, err
		}
		st = s
	case strings.HasPrefix(url, "dynamodb://"):
		o, err := dynamodb.ParseURL(url)
		if err != nil {
			return nil, err
		}
		// Tables are created on start only in development; elsewhere they
		// come from `plinth schema apply` or infrastructure code, and a
		// store that does not match refuses to start.
		o.Check = checkTables
		s, err := dynamodb.OpenOptions(ctx, o)
		if err != nil {
			return nil, err
		}
		st = s
	default:
		return nil, fmt.Errorf("store %q: use sqlite:///path/to/file.db, postgres://user@host:5432/database or dynamodb://region[?endpoint=…&prefix=…]", redactURL(url))
	}
	return st, nil
}

// redactURL hides the password of a store URL, for messages.
func redactURL(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		userinfo := rest[:at]
		if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
			rest = user + ":***" + rest[at:]
		}
	}
	return scheme + "://" + rest
}

type environmentKey struct{}

// withEnvironment records the configured environment for openStore.
func withEnvironment(ctx context.Context, env string) context.Context {
	return context.WithValue(ctx, environmentKey{}, env)
}

// environmentOf is the environment openStore opens for; "" when no
// configuration was loaded, which stores treat as not development.
func environmentOf(ctx context.Context) string {
	env, _ := ctx.Value(environmentKey{}).(string)
	return env
}

// openStores opens the configured store, and, when plinth.yaml's stores:
// map sends domains elsewhere, their stores too, behind one routing store
// (storemux): each prepared for its own domains.
func openStores(ctx context.Context, cfg Config, ds []*plinth.Domain) (plinth.Store, error) {
	byURL := map[string][]*plinth.Domain{}
	var defDomains []*plinth.Domain
	for _, d := range ds {
		if u := cfg.StoreURLFor(d.Name); u != cfg.StoreURL() {
			byURL[u] = append(byURL[u], d)
		} else {
			defDomains = append(defDomains, d)
		}
	}
	if len(byURL) == 0 {
		return openStore(ctx, cfg.StoreURL(), ds)
	}
	def, err := openStore(ctx, cfg.StoreURL(), defDomains)
	if err != nil {
		return nil, err
	}
	full, ok := def.(storemux.Store)
	if !ok {
		def.Close()
		return nil, fmt.Errorf("store %s cannot be the default store of several", redactURL(cfg.StoreURL()))
	}
	by := map[string]plinth.Store{}
	var opened []plinth.Store
	for u, part := range byURL {
		st, err := openStore(ctx, u, part)
		if err != nil {
			def.Close()
			for _, o := range opened {
				o.Close()
			}
			return nil, fmt.Errorf("the store of %s: %w", part[0].Name, err)
		}
		opened = append(opened, st)
		for _, d := range part {
			by[d.Name] = st
		}
	}
	return storemux.New(full, by), nil
}
