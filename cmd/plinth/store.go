package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/dynamodb"
	"github.com/plinth-data/plinth/postgres"
	"github.com/plinth-data/plinth/sqlite"
)

// openStore opens the store a URL names and prepares it for the domains.
func openStore(ctx context.Context, url string, ds []*plinth.Domain) (plinth.Store, error) {
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
		o.Check = environmentOf(ctx) != plinth.EnvDevelopment
		s, err := dynamodb.OpenOptions(ctx, o)
		if err != nil {
			return nil, err
		}
		st = s
	default:
		return nil, fmt.Errorf("store %q: use sqlite:///path/to/file.db, postgres://user@host:5432/database or dynamodb://region[?endpoint=…&prefix=…]", redactURL(url))
	}
	if err := st.Prepare(ctx, ds); err != nil {
		st.Close()
		return nil, fmt.Errorf("preparing the store: %w", err)
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

// checkOneStore refuses a configuration whose stores: map sends a domain
// to another store than the default: this build serves one store per
// process, and ignoring the map would put the domain's data in the wrong
// engine. (The planned routing store is described in docs/architecture.md.)
func checkOneStore(cfg Config, ds []*plinth.Domain) error {
	for _, d := range ds {
		if u := cfg.StoreURLFor(d.Name); u != cfg.StoreURL() {
			return fmt.Errorf("stores: %s is mapped to %s, another store than %s; serving domains from several stores in one process is not built yet: run the domain in a plinth serve of its own with --store %s and --domains naming only it",
				d.Name, redactURL(u), redactURL(cfg.StoreURL()), redactURL(u))
		}
	}
	return nil
}
