// Package mariadbtest gives Plinth's tests MariaDB databases of their own
// on the test server. Only tests import it.
package mariadbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the driver the databases are made with
)

// URLEnv names the environment variable that points tests at a MariaDB
// (or MySQL) server where they may create and drop databases.
const URLEnv = "PLINTH_TEST_MARIADB"

// DefaultURL is the server tests use when URLEnv is not set.
const DefaultURL = "mariadb://root@127.0.0.1:3306/test"

// Database creates a database with a unique name for one test and returns
// its URL (mariadb://…); it is dropped when the test ends. When the server
// cannot be reached the test is skipped, or fails when CI is "true".
func Database(t testing.TB) string {
	t.Helper()
	u, drop, err := CreateDatabase(context.Background())
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s", err)
		}
		t.Skipf("%s", err)
	}
	t.Cleanup(drop)
	return u
}

// CreateDatabase creates a uniquely named database on the test server
// and returns its URL and a function that drops it.
func CreateDatabase(ctx context.Context) (string, func(), error) {
	base := os.Getenv(URLEnv)
	if base == "" {
		base = DefaultURL
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, fmt.Errorf("%s must be a URL such as %s", URLEnv, DefaultURL)
	}
	db, err := Admin(u)
	if err != nil {
		return "", nil, err
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "plinth_test_" + hex.EncodeToString(b)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(cctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4"); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("MariaDB test server at %s: %w", u.Host, err)
	}
	drop := func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name)
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// Admin opens the server of a mariadb:// URL without a database.
func Admin(u *url.URL) (*sql.DB, error) {
	user := "root"
	pass := ""
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	dsn := user
	if pass != "" {
		dsn += ":" + pass
	}
	db, err := sql.Open("mysql", fmt.Sprintf("%s@tcp(%s)/?parseTime=true", dsn, u.Host))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("MariaDB test server at %s does not answer: %w", u.Host, err)
	}
	return db, nil
}
