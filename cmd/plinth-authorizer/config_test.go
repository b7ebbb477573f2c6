package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/plinth-data/plinth/auth"
	"github.com/plinth-data/plinth/config"
)

// serveAuthConfig builds the authorizer's configuration as plinth serve
// does: every setting has a flag, none given.
func serveAuthConfig(t *testing.T) auth.Config {
	t.Helper()
	fl := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	config.AddFlags(fl)
	if err := fl.Parse(nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(fl)
	if err != nil {
		t.Fatal(err)
	}
	ac, _, err := cfg.Auth()
	if err != nil {
		t.Fatal(err)
	}
	return ac
}

func lambdaAuthConfig(t *testing.T) auth.Config {
	t.Helper()
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	ac, err := authConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ac
}

// TestSameEnvironmentSameAuthConfig: given the same variables, serve and
// the Lambda authorizer build identical authorizer configurations, with
// serve's defaults for what is not set.
func TestSameEnvironmentSameAuthConfig(t *testing.T) {
	t.Chdir(t.TempDir()) // no plinth.yaml
	t.Setenv("PLINTH_ENV", "production")
	t.Setenv("PLINTH_AUTH_SECRET", testUserSecret)
	t.Setenv("PLINTH_TOKEN_SECRET", strings.Repeat("s", 32))
	t.Setenv("PLINTH_AUTH_ISSUER", "https://sso.example.gov.uk/")
	t.Setenv("PLINTH_AUTH_AUDIENCE", "plinth")
	t.Setenv("PLINTH_AUDITOR_GROUPS", "auditors, records-team")
	t.Setenv("PLINTH_AUTH_CLOCK_SKEW", "90s")
	t.Setenv("PLINTH_MAX_TOKEN_LIFETIME", "720h")
	want := auth.Config{
		Environment: "production", UserSecret: []byte(testUserSecret), ServiceSecret: []byte(strings.Repeat("s", 32)),
		Issuer: "https://sso.example.gov.uk/", Audience: "plinth",
		ClockSkew: 90 * time.Second, MaxServiceTokenLifetime: 720 * time.Hour,
		AdminGroups: []string{"plinth-admins"}, AuditorGroups: []string{"auditors", "records-team"},
	}
	serve, fn := serveAuthConfig(t), lambdaAuthConfig(t)
	if !reflect.DeepEqual(serve, want) || !reflect.DeepEqual(fn, want) {
		t.Fatalf("serve builds\n%+v\nthe authorizer builds\n%+v\nwant\n%+v", serve, fn, want)
	}
}

// TestAuthorizerReadsPlinthYAML: the file serve reads configures the
// authorizer too, and the environment beats it, as for serve.
func TestAuthorizerReadsPlinthYAML(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.WriteFile("plinth.yaml", []byte("environment: staging\nadminGroups: platform-admins\nauditorGroups: auditors\nauthClockSkew: 1m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PLINTH_AUTH_SECRET", testUserSecret)
	t.Setenv("PLINTH_AUDITOR_GROUPS", "from-env")
	ac := lambdaAuthConfig(t)
	if ac.Environment != "staging" || !reflect.DeepEqual(ac.AdminGroups, []string{"platform-admins"}) ||
		!reflect.DeepEqual(ac.AuditorGroups, []string{"from-env"}) || ac.ClockSkew != time.Minute {
		t.Fatalf("plinth.yaml not applied, or the environment does not beat it: %+v", ac)
	}
	if serve := serveAuthConfig(t); !reflect.DeepEqual(serve, ac) {
		t.Fatalf("serve builds %+v, the authorizer %+v", serve, ac)
	}
}

// TestAuthorizerRefusesWhatServeRefuses: no environment is an error (a
// function must not fall back to development), and staging without user
// authentication is refused as serve refuses it.
func TestAuthorizerRefusesWhatServeRefuses(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("PLINTH_TOKEN_SECRET", strings.Repeat("s", 32))
	if _, err := loadConfig(); err == nil || !strings.Contains(err.Error(), "PLINTH_ENV") {
		t.Fatalf("no environment: %v", err)
	}
	t.Setenv("PLINTH_ENV", "staging")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := authConfig(cfg); err == nil || !strings.Contains(err.Error(), "needs authentication") {
		t.Fatalf("staging without user authentication: %v", err)
	}
	t.Setenv("PLINTH_AUTH_SECRET", "short")
	if _, err := loadConfig(); err == nil || !strings.Contains(err.Error(), "at least 32 bytes") {
		t.Fatalf("a short secret: %v", err)
	}
}
