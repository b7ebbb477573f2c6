package main

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/bundle"
)

func exportCommand() *cobra.Command {
	var to string
	var only []string
	cmd := &cobra.Command{
		Use:   "export --to DIR",
		Short: "Write the store's records to an export bundle (a folder of gzipped NDJSON and a manifest)",
		Long: `Write every record of the domains (or of those named with --domain) to a new
export bundle in DIR: one gzipped NDJSON file per entity, <domain>/<plural>.ndjson.gz,
each line a record exactly as the API returns it, read from one snapshot of the entity,
and manifest.json with the spec hash of each domain, the record count and SHA-256 of each
file, and the data class and provenance of the store (real when none is recorded).
DIR must not exist or be empty. plinth load reads the bundle into another store.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return fmt.Errorf("give the bundle's folder with --to DIR")
			}
			cfg, ds, err := loadConfigAndDomains(cmd)
			if err != nil {
				return err
			}
			pick, err := pickDomains(ds, only)
			if err != nil {
				return err
			}
			st, err := openStores(cmd.Context(), cfg, ds)
			if err != nil {
				return err
			}
			defer st.Close()
			logger := newLogger(cfg.LogLevel)
			m, err := bundle.Export(cmd.Context(), st, pick, to, bundle.ExportOptions{Meter: bundleMeter(logger)})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, d := range m.Domains {
				for _, e := range d.Entities {
					fmt.Fprintf(out, "%-40s %10d records  %12d bytes  sha256 %.16s…\n", e.File, e.Records, e.Bytes, e.SHA256)
				}
			}
			fmt.Fprintf(out, "bundle %s: %s data (%s)\n", to, m.Class, provenanceText(m.Provenance))
			return nil
		},
	}
	addConfigFlags(cmd, with(storeFlags, "log-level")...)
	cmd.Flags().StringVar(&to, "to", "", "folder to write the bundle to (new or empty)")
	cmd.Flags().StringArrayVar(&only, "domain", nil, "export only this domain (repeatable)")
	return cmd
}

// pickDomains returns the domains named in only (all when empty), or says
// which names are unknown.
func pickDomains(ds []*plinth.Domain, only []string) ([]*plinth.Domain, error) {
	if len(only) == 0 {
		return ds, nil
	}
	var out []*plinth.Domain
	var known []string
	for _, d := range ds {
		known = append(known, d.Name)
	}
	for _, name := range only {
		i := slices.Index(known, name)
		if i < 0 {
			return nil, fmt.Errorf("--domain %s: no such domain; the specs have %s", name, strings.Join(known, ", "))
		}
		if !slices.Contains(out, ds[i]) {
			out = append(out, ds[i])
		}
	}
	return out, nil
}

func provenanceText(p *plinth.Provenance) string {
	if p == nil {
		return "the store has no recorded provenance, so its data counts as real"
	}
	s := "from " + strings.TrimSpace(p.Source+" "+p.Detail)
	if !p.At.IsZero() {
		s += " at " + plinth.FormatTime(p.At)
	}
	return s
}

// meter shows a bundle's progress with the CLI's progress bar or log lines.
type meter struct{ p *progress }

func (m meter) Add(n int) { m.p.Add(n) }
func (m meter) Finish()   { m.p.Finish() }
func (m meter) Stop()     { m.p.Stop() }

func bundleMeter(logger *slog.Logger) bundle.MeterFunc {
	return func(what string, total int64) bundle.Meter { return meter{newProgress(total, what, logger)} }
}
