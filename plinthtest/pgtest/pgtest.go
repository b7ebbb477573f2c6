// Package pgtest gives Plinth's tests PostgreSQL databases of their own on
// the test server. Only tests import it.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// URLEnv names the environment variable that points tests at a
// PostgreSQL server where they may create and drop databases.
const URLEnv = "PLINTH_TEST_POSTGRES"

// DefaultURL is the server tests use when URLEnv is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test"

// Database creates a database with a unique name for one test and
// returns its URL; the database is dropped when the test ends. When the
// server cannot be reached the test is skipped, or fails when the
// environment variable CI is "true".
func Database(t testing.TB) string {
	t.Helper()
	dbURL, drop, err := CreateDatabase(context.Background())
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s", err)
		}
		t.Skipf("%s", err)
	}
	t.Cleanup(drop)
	return dbURL
}

// CreateDatabase creates a database with a unique name on the test
// server (URLEnv, else DefaultURL) and returns its URL and a
// function that drops it. It is for fixtures that outlive one test, such as
// a benchmark data set shared by a whole test binary (drop it in TestMain).
func CreateDatabase(ctx context.Context) (dbURL string, drop func(), err error) {
	base := os.Getenv(URLEnv)
	if base == "" {
		base = DefaultURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", nil, fmt.Errorf("%s must be a URL such as %s", URLEnv, DefaultURL)
	}
	admin := func(ctx context.Context, sql string) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cfg, err := pgx.ParseConfig(base)
		if err != nil {
			return err
		}
		if cfg.ConnectTimeout == 0 {
			cfg.ConnectTimeout = 5 * time.Second
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		_, err = conn.Exec(ctx, sql)
		return err
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "plinth_test_" + hex.EncodeToString(b[:])
	if err := admin(ctx, "CREATE DATABASE "+name); err != nil {
		password, _ := u.User.Password()
		msg := err.Error()
		if password != "" {
			msg = strings.ReplaceAll(msg, password, "xxxxx")
		}
		return "", nil, fmt.Errorf("cannot create a test database on the PostgreSQL server at %s (set %s to the URL of a server where tests may create databases, such as %s): %s",
			u.Host, URLEnv, DefaultURL, msg)
	}
	dbu := *u
	dbu.Path = "/" + name
	drop = func() {
		if err := admin(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "postgres: dropping test database %s: %s\n", name, err)
		}
	}
	return dbu.String(), drop, nil
}
