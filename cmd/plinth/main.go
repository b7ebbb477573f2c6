// Command plinth serves domain specs as Platform APIs and runs the tooling
// around them. `plinth serve` with no arguments serves the shipped domains on
// an embedded SQLite store with dummy demo data.
package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/spec"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rootCommand().ExecuteContext(ctx); err != nil {
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
	return root
}

// loadDomains loads the specs in dir, or the shipped ones when dir is empty.
func loadDomains(dir string) ([]*plinth.Domain, error) {
	var ds []*plinth.Domain
	var err error
	if dir == "" {
		ds, err = spec.LoadFS(domains.FS, ".")
	} else {
		// Read the folder here, so that messages name it as the user did
		// (spec.LoadFS knows it only as ".").
		entries, rerr := os.ReadDir(dir)
		if rerr != nil {
			return nil, fmt.Errorf("reading domain specs: %w", rerr)
		}
		if !slices.ContainsFunc(entries, func(e os.DirEntry) bool {
			return !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml"))
		}) {
			return nil, fmt.Errorf("no domain specs (*.yaml) found in %s", dir)
		}
		ds, err = spec.LoadFS(os.DirFS(dir), ".")
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Path = filepath.Join(dir, pe.Path)
		}
		if se, ok := err.(*spec.Error); ok {
			// Name files as the user wrote the folder.
			for i, p := range se.Problems {
				se.Problems[i] = strings.TrimPrefix(dir+"/"+p, "./")
			}
		}
	}
	if se, ok := err.(*spec.Error); ok {
		return nil, fmt.Errorf("the domain specs have %d problem(s):\n%s", len(se.Problems), se)
	}
	return ds, err
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

func validateCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check domain specs and report every problem with file and line",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ds, err := loadDomains(dir)
			if err != nil {
				return err
			}
			for _, d := range ds {
				for _, e := range d.Entities {
					fmt.Fprintf(cmd.OutOrStdout(), "ok  %s: /api/v1/%s (%d fields, %d filters)\n", d.Name, e.Plural, len(e.Fields), len(e.Filters))
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "domains", "", "folder of domain specs (default: the shipped domains)")
	return cmd
}

func openAPICommand() *cobra.Command {
	var dir, server string
	cmd := &cobra.Command{
		Use:   "openapi",
		Short: "Print the OpenAPI 3.1 document of the domains",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ds, err := loadDomains(dir)
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
	cmd.Flags().StringVar(&dir, "domains", "", "folder of domain specs (default: the shipped domains)")
	cmd.Flags().StringVar(&server, "server", "http://127.0.0.1:8080", "server URL to put in the document")
	return cmd
}

func openAPIDocument(ds []*plinth.Domain, serverURL, env string) ([]byte, error) {
	return spec.OpenAPI(ds, spec.OpenAPIInfo{Title: "Plinth Platform APIs", Version: version, ServerURL: serverURL, Environment: env})
}
