package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/config"
	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
)

// doctorConfig is a staging configuration with authentication, a data
// folder of its own and the given store.
func doctorConfig(t *testing.T, store string) Config {
	cfg := config.Default()
	cfg.Environment = plinth.EnvStaging
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Store = store
	cfg.AuthSecret = strings.Repeat("u", 32)
	cfg.TokenSecret = strings.Repeat("t", 32)
	cfg.AuthPreviousSecrets = strings.Repeat("p", 32)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// prepared opens and prepares cfg's store as serve would, classes it and
// creates the streams in the embedded NATS of the data folder.
func prepared(t *testing.T, cfg Config) {
	t.Helper()
	ctx := withEnvironment(context.Background(), cfg.Environment)
	ds, err := loadDomains(cfg.Domains)
	if err != nil {
		t.Fatal(err)
	}
	st, err := openStore(ctx, cfg.StoreURL(), ds)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := classEmptyStore(ctx, cfg, st); err != nil {
		t.Fatal(err)
	}
	bus, err := openEventBus(cfg, "", newLogger("error"))
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	if _, err := plinthnats.NewPublisher(ctx, bus.nc, cfg.Environment, ds, streamRetention(cfg)); err != nil {
		t.Fatal(err)
	}
}

// doctorRun runs the checks and returns the report and the failures.
func doctorRun(t *testing.T, cfg Config) (string, int) {
	t.Helper()
	var out bytes.Buffer
	failed := runDoctor(withEnvironment(t.Context(), cfg.Environment), cfg, &out)
	t.Logf("doctor:\n%s", out.String())
	return out.String(), failed
}

// wantLine fails unless the report has a line of that status and check
// containing text.
func wantLine(t *testing.T, report, status, name, text string) {
	t.Helper()
	for _, line := range strings.Split(report, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == status && strings.HasPrefix(strings.TrimSpace(line[6:]), name) && strings.Contains(line, text) {
			return
		}
	}
	t.Fatalf("no %q line for %s containing %q in:\n%s", status, name, text, report)
}

// TestDoctorHealthy: a prepared PostgreSQL store in staging with its
// streams passes every check, including the schema plan and the clock.
func TestDoctorHealthy(t *testing.T) {
	cfg := doctorConfig(t, pgtest.Database(t))
	prepared(t, cfg)
	report, failed := doctorRun(t, cfg)
	if failed != 0 {
		t.Fatalf("%d checks failed on a healthy configuration", failed)
	}
	for _, c := range [][2]string{{"store", "answers"}, {"schema", "matches the specs"}, {"auth", "rotation window open: 1 previous"},
		{"data class", "allowed in staging"}, {"audit", "trial write rolled back"}, {"clock", "from this machine's"},
		{"bus", "JetStream answers"}, {"stream", "PLINTH_STAGING_RESIDENTS"}, {"lake", "does not exist yet"}} {
		wantLine(t, report, statusOK, c[0], c[1])
	}
	// The trial audit record was rolled back: nothing was written.
	ctx := t.Context()
	st, err := connectStore(ctx, cfg.StoreURL(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n, err := st.(plinth.AuditStore).CountUnchainedAudit(ctx); err != nil || n != 0 {
		t.Fatalf("audit records left by doctor: %d %v", n, err)
	}
}

// TestDoctorFailures: each failure that can be caused for real is
// reported with a fix, and the command exits non-zero.
func TestDoctorFailures(t *testing.T) {
	t.Run("wrong store URL", func(t *testing.T) {
		cfg := doctorConfig(t, "postgres://postgres@127.0.0.1:5432/plinth_doctor_no_such_database")
		report, failed := doctorRun(t, cfg)
		wantLine(t, report, statusFail, "store", "plinth_doctor_no_such_database")
		wantLine(t, report, statusSkip, "schema", "not reachable")
		if failed == 0 || !strings.Contains(report, "fix: check the store URL") {
			t.Fatalf("failed %d", failed)
		}
	})
	t.Run("schema not current", func(t *testing.T) {
		report, _ := doctorRun(t, doctorConfig(t, pgtest.Database(t)))
		wantLine(t, report, statusFail, "schema", "change(s) pending")
	})
	t.Run("unreachable NATS port", func(t *testing.T) {
		cfg := doctorConfig(t, "sqlite://"+filepath.Join(t.TempDir(), "p.db"))
		prepared(t, cfg)
		cfg.NATSURL = "nats://" + freePort(t)
		report, failed := doctorRun(t, cfg)
		wantLine(t, report, statusFail, "bus", "127.0.0.1")
		if failed != 1 {
			t.Fatalf("%d failures, want only the bus", failed)
		}
	})
	t.Run("missing streams", func(t *testing.T) {
		cfg := doctorConfig(t, "sqlite://"+filepath.Join(t.TempDir(), "p.db"))
		prepared(t, cfg)
		os.RemoveAll(filepath.Join(cfg.DataDir, "nats"))
		report, _ := doctorRun(t, cfg)
		wantLine(t, report, statusFail, "stream", "PLINTH_STAGING_CONTACTS does not exist")
	})
	t.Run("stream retention differs from the setting", func(t *testing.T) {
		cfg := doctorConfig(t, "sqlite://"+filepath.Join(t.TempDir(), "p.db"))
		prepared(t, cfg)
		cfg.StreamMaxAge, cfg.StreamMaxBytes = 24*time.Hour, 0
		report, failed := doctorRun(t, cfg)
		wantLine(t, report, statusWarn, "stream", "configured: 24h0m0s, none")
		if failed != 0 {
			t.Fatalf("%d failures for a retention serve applies on start", failed)
		}
		// Serve's start applies it; then doctor is content.
		prepared(t, cfg)
		report, _ = doctorRun(t, cfg)
		wantLine(t, report, statusOK, "stream", "max age 24h0m0s, max bytes none")
	})
	t.Run("read-only lake folder", func(t *testing.T) {
		cfg := doctorConfig(t, "sqlite://"+filepath.Join(t.TempDir(), "p.db"))
		prepared(t, cfg)
		cfg.Lake = filepath.Join(t.TempDir(), "lake")
		readOnlyFolder(t, cfg.Lake)
		report, failed := doctorRun(t, cfg)
		wantLine(t, report, statusFail, "lake", cfg.Lake)
		if failed != 1 {
			t.Fatalf("%d failures, want only the lake", failed)
		}
	})
	t.Run("real data in development", func(t *testing.T) {
		cfg := doctorConfig(t, "sqlite://"+filepath.Join(t.TempDir(), "p.db"))
		cfg.Environment, cfg.AuthSecret, cfg.TokenSecret, cfg.AuthPreviousSecrets = plinth.EnvDevelopment, "", "", ""
		prepared(t, cfg)
		st, err := connectStore(t.Context(), cfg.StoreURL(), true)
		if err != nil {
			t.Fatal(err)
		}
		err = plinth.SetStoreProvenance(t.Context(), st, plinth.Provenance{Class: plinth.ClassReal, Source: plinth.SourceMigrate, Detail: "the legacy system", At: plinth.Now()})
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		report, _ := doctorRun(t, cfg)
		wantLine(t, report, statusFail, "data class", "development serves only dummy data")
	})
}

// TestDoctorExitStatus: the command exits 1 on a failure and 0 when all
// is well, as a deployment script needs.
func TestDoctorExitStatus(t *testing.T) {
	dir := t.TempDir()
	out, err := run(t, dir, nil, "doctor", "--store", "postgres://postgres@127.0.0.1:1/none")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(out, "check(s) failed") {
		t.Fatalf("doctor on a wrong store: %v\n%s", err, out)
	}
	if _, err := run(t, dir, nil, "doctor", "--env", "nowhere"); err == nil {
		t.Fatal("doctor accepted a bad environment")
	}
}

// readOnlyFolder makes a folder nobody can write into: as root, whom
// permissions do not stop, with the immutable attribute.
func readOnlyFolder(t *testing.T, dir string) {
	if err := os.MkdirAll(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		return
	}
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		t.Fatalf("chattr +i %s: %v %s", dir, err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", dir).Run() })
}

// TestRelayConfigTakesOutboxRetention: the relay of serve, plinth relay
// and the other stores' relays purges by the outboxRetention setting.
func TestRelayConfigTakesOutboxRetention(t *testing.T) {
	cfg := config.Default()
	cfg.OutboxRetention = 36 * time.Hour
	if rc := relayConfig(cfg, newLogger("error")); rc.Retention != 36*time.Hour || rc.Logger == nil {
		t.Fatalf("relay config %+v", rc)
	}
}
