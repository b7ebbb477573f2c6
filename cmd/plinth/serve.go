package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/config"
	plinthhttp "github.com/plinth-data/plinth/http"
	"github.com/plinth-data/plinth/postgres"
)

func serveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the domains as Platform APIs",
		Long: `Serve every loaded domain as a Platform API.

With no configuration it uses an embedded SQLite file in ./plinth-data, loads
the shipped residents and contacts domains and, in development, fills an
empty store with dummy demo data.

Each environment serves only the class of data it may hold (plinth store
info shows a store's): development only dummy data, staging dummy or
obfuscated data, production any, with authentication and auditing on. An
empty store is classed by the first serve: dummy in development and
staging, real in production.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, cmd.OutOrStdout())
		},
	}
	addConfigFlags(cmd)
	return cmd
}

func serve(ctx context.Context, cfg Config, out io.Writer) error {
	ctx = withEnvironment(ctx, cfg.Environment)
	logger := newLogger(cfg.LogLevel)
	limit := setMemoryLimit(cfg, os.Getenv)
	setGCPercent(os.Getenv)
	guardCtx, stopGuard := context.WithCancel(ctx)
	defer stopGuard()
	go guardHeadroom(guardCtx, headroomBase(cfg, limit), headroomCheck)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w (choose another address with --listen)", cfg.Listen, err)
	}
	defer ln.Close()
	base := cfg.PublicURL
	if base == "" {
		base = "http://" + ln.Addr().String()
	}
	a, err := openApp(ctx, cfg, base, logger)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.runBackground(a.background, &a.wg); err != nil {
		return err
	}
	srv := newHTTPServer(a.handler, logger)
	devToken := ""
	if a.devMode {
		if devToken, _, err = developerToken(a.authz, cfg); err != nil {
			return err
		}
	}
	printWelcome(out, base, cfg, a.ds, devToken)
	logger.Info("serving", "address", ln.Addr().String(), "environment", cfg.Environment, "store", redactURL(cfg.StoreURL()))

	errc := make(chan error, 1)
	// Whole answers (records, list pages) leave in one write each.
	go func() { errc <- srv.Serve(plinthhttp.CoalescingListener(ln)) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Graceful shutdown: stop accepting, let requests in flight finish.
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		// Requests still running after the grace period are cut off
		// before the audit writer and the store close underneath them.
		srv.Close()
		return fmt.Errorf("shutting down: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// checkStoreClass refuses a store holding data the environment may not
// serve (plinth.CheckServe), and returns the store's provenance.
func checkStoreClass(ctx context.Context, cfg Config, st plinth.Store, ds []*plinth.Domain, logger *slog.Logger) (plinth.Provenance, error) {
	p, err := plinth.ClassOf(ctx, st, ds)
	if err != nil {
		return p, err
	}
	if err := plinth.CheckServe(cfg.Environment, p); err != nil {
		return p, err
	}
	logger.Info("data class", "class", p.Class, "source", p.Source, "detail", p.Detail, "recorded", p.Recorded())
	return p, nil
}

// classEmptyStore records the class of an empty store that serve is not
// filling with demo data: what the first environment that serves it holds,
// dummy in development and staging (records written there are made up),
// real in production.
func classEmptyStore(ctx context.Context, cfg Config, st plinth.Store) error {
	class := plinth.ClassDummy
	if cfg.Environment == plinth.EnvProduction {
		class = plinth.ClassReal
	}
	return plinth.SetStoreProvenance(ctx, st, plinth.Provenance{Class: class, Source: plinth.SourceServe,
		Detail: "an empty store, first served in " + cfg.Environment, At: plinth.Now()})
}

// Limits of the HTTP server, which README.md states (section Limits).
const (
	// maxHeaderBytes bounds the request line and headers; beyond it
	// net/http answers 431 Request Header Fields Too Large.
	maxHeaderBytes    = 64 << 10
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 2 * time.Minute
)

// newHTTPServer is the HTTP server serve runs handler on.
func newHTTPServer(handler http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		MaxHeaderBytes:    maxHeaderBytes,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ConnContext:       plinthhttp.ConnContext,
		// net/http's own messages (TLS handshakes, bad requests) as JSON
		// lines too.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// printWelcome tells a new user what is running and what to try.
func printWelcome(out io.Writer, base string, cfg Config, ds []*plinth.Domain, devToken string) {
	fmt.Fprintf(out, "\nPlinth is serving %d domain(s) in %s on %s\n", len(ds), cfg.Environment, redactURL(cfg.StoreURL()))
	for _, d := range ds {
		for _, e := range d.Entities {
			fmt.Fprintf(out, "  %-12s %s/api/v1/%s\n", d.Name, base, e.Plural)
		}
	}
	auth := ""
	if devToken != "" {
		fmt.Fprintf(out, "\nNo authentication is configured, so tokens are signed with the development\n")
		fmt.Fprintf(out, "secrets in %s, kept across restarts.\n", filepath.Join(cfg.DataDir, config.DevSecretsFile))
		fmt.Fprintf(out, "Development token (valid %d hours, groups %s, %s):\n\n", int(devTokenLifetime.Hours()), developerGroup, cfg.AdminGroups)
		fmt.Fprintf(out, "  export PLINTH_TOKEN=%s\n", devToken)
		auth = `-H "Authorization: Bearer $PLINTH_TOKEN" `
	}
	fmt.Fprintf(out, "\nTry:\n")
	if findEntity(ds, "residents") != nil {
		fmt.Fprintf(out, "  curl %s'%s/api/v1/residents?limit=3'\n", auth, base)
		fmt.Fprintf(out, "  curl %s'%s/api/v1/residents?last_name=son&limit=3'\n", auth, base)
		fmt.Fprintf(out, "  curl %s'%s/api/v1/residents/1'\n", auth, base)
	}
	fmt.Fprintf(out, "  curl '%s/api/v1/healthcheck/ping'\n", base)
	fmt.Fprintf(out, "\nOpenAPI: %s/api/v1/openapi.json   Metrics: %s/metrics   Stop: Ctrl+C\n", base, base)
	fmt.Fprintf(out, "Developer Hub: %s/hub (sign in with a user token%s)\n\n", base, map[bool]string{true: ", such as the development token above", false: ""}[devToken != ""])
}

func findEntity(ds []*plinth.Domain, plural string) *plinth.Entity {
	for _, d := range ds {
		for _, e := range d.Entities {
			if e.Plural == plural {
				return e
			}
		}
	}
	return nil
}

// sweepSupport removes expired break-glass support roles every minute.
func sweepSupport(ctx context.Context, pg *postgres.Store, logger *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		revoked, err := pg.SweepSupport(ctx)
		if err != nil && ctx.Err() == nil {
			logger.Error("sweeping expired support roles", "error", err)
		}
		for _, role := range revoked {
			logger.Info("expired support role removed", "role", role)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// purgeTombstones removes deletions older than the retention every hour;
// an incremental report asking for deletions since before then gets 410.
func purgeTombstones(ctx context.Context, st plinth.Store, retention time.Duration, logger *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		n, err := st.PurgeTombstones(ctx, time.Now().Add(-retention))
		if err != nil && ctx.Err() == nil {
			logger.Error("purging old deletions", "error", err)
		} else if n > 0 {
			logger.Info("old deletions purged", "count", n, "retention", retention.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
