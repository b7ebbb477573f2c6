package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, name, text string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadLayers: a flag beats the environment, which beats the file,
// which beats the default; IsSet tells given settings from defaults.
func TestLoadLayers(t *testing.T) {
	t.Chdir(t.TempDir())
	writeFile(t, DefaultFile, "logLevel: debug\nauthClockSkew: 1m\nadminGroups: from-file\n")
	t.Setenv("PLINTH_AUTH_CLOCK_SKEW", "2m")
	t.Setenv("PLINTH_ADMIN_GROUPS", "from-env")
	fl := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlags(fl, "admin-groups")
	if err := fl.Parse([]string{"--admin-groups", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(fl)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogLevel != "debug" || cfg.AuthClockSkew != 2*time.Minute || cfg.AdminGroups != "from-flag" || cfg.Listen != Default().Listen {
		t.Fatalf("layers applied wrongly: %+v", cfg)
	}
	for name, want := range map[string]bool{"logLevel": true, "authClockSkew": true, "adminGroups": true, "listen": false, "environment": false} {
		if cfg.IsSet(name) != want {
			t.Errorf("IsSet(%s) = %t, want %t", name, !want, want)
		}
	}
	// Without flags (the Lambda authorizer) the file and the environment
	// still apply.
	if cfg, err := Load(nil); err != nil || cfg.AdminGroups != "from-env" || cfg.LogLevel != "debug" {
		t.Fatalf("Load(nil): %v %+v", err, cfg)
	}
}

// TestLoadFileNamedByEnvironment: PLINTH_CONFIG names the file, which must
// then exist; a misspelt key and a bad value are errors naming it.
func TestLoadFileNamedByEnvironment(t *testing.T) {
	t.Chdir(t.TempDir())
	writeFile(t, "other.yaml", "domains: specs\n")
	t.Setenv(FileEnv, "other.yaml")
	if cfg, err := Load(nil); err != nil || cfg.Domains != "specs" {
		t.Fatalf("PLINTH_CONFIG: %v %+v", err, cfg)
	}
	t.Setenv(FileEnv, "missing.yaml")
	if _, err := Load(nil); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("a missing named file: %v", err)
	}
	writeFile(t, "other.yaml", "domain: specs\n")
	t.Setenv(FileEnv, "other.yaml")
	if _, err := Load(nil); err == nil || !strings.Contains(err.Error(), "other.yaml") || !strings.Contains(err.Error(), "domain") {
		t.Fatalf("a misspelt key: %v", err)
	}
	t.Setenv(FileEnv, "")
	t.Setenv("PLINTH_MAX_TOKEN_LIFETIME", "a year")
	if _, err := Load(nil); err == nil || !strings.Contains(err.Error(), "PLINTH_MAX_TOKEN_LIFETIME") {
		t.Fatalf("a bad duration: %v", err)
	}
}

// TestRetentionSettings: stream and outbox retention have defaults and
// come from the file, the environment and flags; 0 is no limit, a negative
// value is refused.
func TestRetentionSettings(t *testing.T) {
	t.Chdir(t.TempDir())
	d := Default()
	if d.StreamMaxAge != 7*24*time.Hour || d.StreamMaxBytes != 1<<30 || d.OutboxRetention != 7*24*time.Hour {
		t.Fatalf("defaults: %s %d %s", d.StreamMaxAge, d.StreamMaxBytes, d.OutboxRetention)
	}
	writeFile(t, DefaultFile, "streamMaxAge: 72h\nstreamMaxBytes: 0\n")
	t.Setenv("PLINTH_OUTBOX_RETENTION", "48h")
	fl := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlags(fl)
	if err := fl.Parse([]string{"--stream-max-bytes", "5000000"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(fl)
	if err != nil || cfg.StreamMaxAge != 72*time.Hour || cfg.StreamMaxBytes != 5000000 || cfg.OutboxRetention != 48*time.Hour {
		t.Fatalf("loaded: %v %+v", err, cfg)
	}
	t.Setenv("PLINTH_STREAM_MAX_BYTES", "-1")
	if _, err := Load(nil); err == nil || !strings.Contains(err.Error(), "stream max bytes") {
		t.Fatalf("negative size cap: %v", err)
	}
	os.Unsetenv("PLINTH_STREAM_MAX_BYTES")
	t.Setenv("PLINTH_OUTBOX_RETENTION", "0s")
	if _, err := Load(nil); err == nil || !strings.Contains(err.Error(), "outbox retention") {
		t.Fatalf("zero outbox retention: %v", err)
	}
}
