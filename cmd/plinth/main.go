// Command plinth serves domain specs as Platform APIs and runs the tooling
// around them. `plinth serve` with no arguments serves the shipped domains on
// an embedded SQLite store with dummy demo data.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/secretsmanager"
	"github.com/plinth-data/plinth/spec"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Secrets (store URL, token keys) from AWS Secrets Manager when
	// PLINTH_SECRETS_ARN names a secret, before any configuration is read.
	if err := secretsmanager.ApplyEnv(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "plinth:", err)
		os.Exit(1)
	}
	root := rootCommand()
	if args, ok := lambdaBootstrap(os.Args); ok {
		root.SetArgs(args)
	}
	err := runProfiled(func() error { return root.ExecuteContext(ctx) })
	if err != nil {
		if code, ok := err.(exitCode); ok {
			os.Exit(int(code))
		}
		fmt.Fprintln(os.Stderr, "plinth:", err)
		os.Exit(1)
	}
}

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "plinth",
		Short:         "Plinth publishes data domains as Platform APIs",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCommand(), validateCommand(), openAPICommand(), seedCommand(), schemaCommand(), tokenCommand(), accessCommand(), auditCommand(), supportCommand(), relayCommand(), eventsCommand())
	root.AddCommand(storeCommand())
	root.AddCommand(adviseCommand())
	root.AddCommand(exportCommand())
	root.AddCommand(loadCommand())
	root.AddCommand(obfuscateCommand())
	root.AddCommand(migrateCommand(), legacyCommand())
	root.AddCommand(lakeCommand())
	root.AddCommand(contractCommand())
	root.AddCommand(doctorCommand())
	root.AddCommand(lambdaCommand())
	return root
}

// newLogger logs JSON lines to stderr, masked so that no personal data
// reaches them (plinth.MaskLogs): every command's logger, the background
// workers' and net/http's error log are made from it.
func newLogger(level string) *slog.Logger {
	l := newLoggerTo(os.Stderr, level)
	// Libraries that log through slog's or the log package's default
	// logger are masked too.
	slog.SetDefault(l)
	return l
}

func newLoggerTo(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(plinth.MaskLogs(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}), nil))
}

// configuredDomains loads the domains the configuration names (flag,
// PLINTH_DOMAINS or plinth.yaml), so validate and openapi check the specs
// serve would serve.
func configuredDomains(cmd *cobra.Command) ([]*plinth.Domain, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	return loadDomains(cfg.Domains)
}

// openConfigured loads the configuration and the domains it names and
// opens (and prepares) the configured store: what most commands start with.
func openConfigured(cmd *cobra.Command) (Config, []*plinth.Domain, plinth.Store, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return cfg, nil, nil, err
	}
	ds, err := loadDomains(cfg.Domains)
	if err != nil {
		return cfg, nil, nil, err
	}
	st, err := openStores(cmd.Context(), cfg, ds)
	return cfg, ds, st, err
}

func validateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check domain specs and report every problem with file and line",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ds, err := configuredDomains(cmd)
			if err != nil {
				return err
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			for _, d := range ds {
				for _, e := range d.Entities {
					fmt.Fprintf(cmd.OutOrStdout(), "ok  %s: /api/v1/%s (%d fields, %d filters)\n", d.Name, e.Plural, len(e.Fields), len(e.Filters))
				}
				if strings.HasPrefix(cfg.StoreURLFor(d.Name), "dynamodb://") {
					for _, w := range spec.DynamoDBWarnings(d) {
						fmt.Fprintf(cmd.OutOrStdout(), "warn %s\n", w)
					}
				}
			}
			return nil
		},
	}
	addConfigFlags(cmd, "domains", "store")
	return cmd
}

func openAPICommand() *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "openapi",
		Short: "Print the OpenAPI 3.1 document of the domains",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ds, err := configuredDomains(cmd)
			if err != nil {
				return err
			}
			doc, err := openAPIDocument(ds, server, "development")
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(append(doc, '\n'))
			return err
		},
	}
	addConfigFlags(cmd, "domains")
	cmd.Flags().StringVar(&server, "server", "http://127.0.0.1:8080", "server URL to put in the document")
	return cmd
}

func openAPIDocument(ds []*plinth.Domain, serverURL, env string) ([]byte, error) {
	return spec.OpenAPI(ds, spec.OpenAPIInfo{Title: "Plinth Platform APIs", Version: version, ServerURL: serverURL, Environment: env})
}
