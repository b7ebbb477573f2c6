package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth/bundle"
)

func loadCommand() *cobra.Command {
	var from string
	var only []string
	var allowSpecChange bool
	var batch int
	cmd := &cobra.Command{
		Use:   "load --from DIR",
		Short: "Load an export bundle into the store, validated, resumable",
		Long: `Load the export bundle in DIR (written by plinth export) into the store.

Refused before anything is written: a bundle whose data class the environment does not
accept (development: dummy only; staging: dummy or obfuscated; production: any), a
domain whose spec hash differs from the target's spec (unless --allow-spec-change), a
file that does not match its checksum, and any record that is not valid against the
target's spec or would not be stored exactly as written (the message names the file,
line, entity and field).

Records keep their data and keys; version, createdAt and updatedAt are set anew
(version 1, the load's time). Records go in through the bulk path in batches, each
with a checkpoint of the last line loaded, so a load that is interrupted resumes where
it stopped when run again; keys the store already holds are left as they are. The
store's provenance records the bundle's class and where it came from.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return fmt.Errorf("give the bundle's folder with --from DIR")
			}
			cfg, ds, err := loadConfigAndDomains(cmd)
			if err != nil {
				return err
			}
			// Refuse by the manifest before opening (and preparing) the store.
			m, err := bundle.ReadManifest(from)
			if err != nil {
				return err
			}
			if err := bundle.CheckEnvironment(cfg.Environment, m.Class); err != nil {
				return fmt.Errorf("refused in %s: %w", cfg.Environment, err)
			}
			st, err := openStores(cmd.Context(), cfg, ds)
			if err != nil {
				return err
			}
			defer st.Close()
			logger := newLogger(cfg.LogLevel)
			defer bulkGC()() // decoding every record (twice: check, then load) allocates much, briefly
			res, err := bundle.Load(cmd.Context(), st, ds, from, bundle.LoadOptions{Environment: cfg.Environment,
				Domains: only, AllowSpecChange: allowSpecChange, Batch: batch, Meter: bundleMeter(logger)})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, e := range res.Entities {
				fmt.Fprintf(out, "%-30s %10d records: %d inserted, %d already there, %d loaded before (resumed)\n",
					e.Domain+"/"+e.Plural, e.Records, e.Inserted, e.Skipped, e.Resumed)
			}
			fmt.Fprintf(out, "the store now holds %s data: %s\n", res.Provenance.Class, res.Provenance.Detail)
			return nil
		},
	}
	addConfigFlags(cmd, with(storeFlags, "env", "log-level")...)
	cmd.Flags().StringVar(&from, "from", "", "folder of the bundle to load")
	cmd.Flags().StringArrayVar(&only, "domain", nil, "load only this domain of the bundle (repeatable)")
	cmd.Flags().BoolVar(&allowSpecChange, "allow-spec-change", false, "load a domain exported with a different spec (records are still validated against the target's spec)")
	cmd.Flags().IntVar(&batch, "batch", bundle.DefaultBatch, "records per bulk write (and per checkpoint)")
	return cmd
}
