package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestDevelopmentSecretsAreStable: two configurations built on one data
// directory sign with the same secrets, kept in a file only its owner reads.
func TestDevelopmentSecretsAreStable(t *testing.T) {
	cfg := Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "plinth-data")
	first, devMode, err := cfg.Auth()
	if err != nil || !devMode {
		t.Fatalf("Auth: devMode %t, %v", devMode, err)
	}
	second, _, err := cfg.Auth()
	if err != nil {
		t.Fatal(err)
	}
	if len(first.UserSecret) < 32 || len(first.ServiceSecret) < 32 || bytes.Equal(first.UserSecret, first.ServiceSecret) {
		t.Fatalf("weak or equal development secrets: %d and %d bytes", len(first.UserSecret), len(first.ServiceSecret))
	}
	if !bytes.Equal(first.UserSecret, second.UserSecret) || !bytes.Equal(first.ServiceSecret, second.ServiceSecret) {
		t.Fatal("a second start made up new secrets")
	}
	fi, err := os.Stat(filepath.Join(cfg.DataDir, DevSecretsFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets file mode %s, want 0600", fi.Mode().Perm())
	}
	// token issue signs service tokens with the secret serve verifies with.
	issued, err := cfg.ServiceSecret()
	if err != nil || !bytes.Equal(issued, first.ServiceSecret) {
		t.Fatalf("token issue's secret differs from serve's: %v", err)
	}
	// A configured secret wins; outside development nothing is made up.
	cfg.TokenSecret = strings.Repeat("s", 32)
	if ac, _, _ := cfg.Auth(); string(ac.ServiceSecret) != cfg.TokenSecret {
		t.Fatal("tokenSecret was not used")
	}
	prod := Default()
	prod.Environment, prod.DataDir, prod.AuthSecret = "production", t.TempDir(), strings.Repeat("u", 32)
	if ac, _, err := prod.Auth(); err != nil || ac.ServiceSecret != nil {
		t.Fatalf("production without tokenSecret: %v, service secret %q", err, ac.ServiceSecret)
	}
	if _, err := os.Stat(filepath.Join(prod.DataDir, DevSecretsFile)); err == nil {
		t.Fatal("production wrote development secrets")
	}

	// Processes starting together agree on one set.
	dir := filepath.Join(t.TempDir(), "data")
	var wg sync.WaitGroup
	got := make([]Secrets, 8)
	errs := make([]error, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = DevSecrets(dir)
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || !bytes.Equal(got[i].User, got[0].User) || !bytes.Equal(got[i].Service, got[0].Service) {
			t.Fatalf("concurrent starts disagree: %v", errs[i])
		}
	}
	// A file others can read is refused rather than trusted.
	os.Chmod(filepath.Join(dir, DevSecretsFile), 0o644)
	if _, err := DevSecrets(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable secrets file was used: %v", err)
	}
}

// TestAuthReadOnlyNeverMakesSecrets: the Lambda authorizer reads the
// development secrets serve made, and says what to set when there are none
// rather than inventing secrets no token is signed with.
func TestAuthReadOnlyNeverMakesSecrets(t *testing.T) {
	cfg := Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "plinth-data")
	if _, _, err := cfg.AuthReadOnly(); err == nil || !strings.Contains(err.Error(), "PLINTH_AUTH_SECRET") {
		t.Fatalf("no secrets and no authentication: %v", err)
	}
	if _, err := os.Stat(cfg.DataDir); err == nil {
		t.Fatal("AuthReadOnly made the data folder")
	}
	made, _, err := cfg.Auth()
	if err != nil {
		t.Fatal(err)
	}
	read, devMode, err := cfg.AuthReadOnly()
	if err != nil || !devMode || !bytes.Equal(read.UserSecret, made.UserSecret) || !bytes.Equal(read.ServiceSecret, made.ServiceSecret) {
		t.Fatalf("AuthReadOnly does not verify with serve's secrets: devMode %t, %v", devMode, err)
	}
}

// TestPreviousSecrets: the rotation window's earlier keys reach the
// authorizer's configuration; short ones are refused naming the setting.
func TestPreviousSecrets(t *testing.T) {
	t.Chdir(t.TempDir())
	u1, u2, s1 := strings.Repeat("a", 32), strings.Repeat("b", 40), strings.Repeat("c", 32)
	t.Setenv("PLINTH_ENV", "production")
	t.Setenv("PLINTH_AUTH_SECRET", strings.Repeat("u", 32))
	t.Setenv("PLINTH_TOKEN_SECRET", strings.Repeat("t", 32))
	t.Setenv("PLINTH_AUTH_PREVIOUS_SECRETS", u1+", "+u2)
	t.Setenv("PLINTH_TOKEN_PREVIOUS_SECRETS", s1)
	cfg, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	ac, _, err := cfg.Auth()
	if err != nil || len(ac.PreviousUserSecrets) != 2 || string(ac.PreviousUserSecrets[1]) != u2 ||
		len(ac.PreviousServiceSecrets) != 1 || string(ac.PreviousServiceSecrets[0]) != s1 {
		t.Fatalf("auth config: %v %q %q", err, ac.PreviousUserSecrets, ac.PreviousServiceSecrets)
	}
	t.Setenv("PLINTH_TOKEN_PREVIOUS_SECRETS", s1+",short")
	if _, err := Load(nil); err == nil || !strings.Contains(err.Error(), "token previous secrets") {
		t.Fatalf("a short previous secret: %v", err)
	}
}
