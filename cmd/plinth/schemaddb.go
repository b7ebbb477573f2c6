package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth/dynamodb"
)

// schemaApplyCommand creates or evolves the store's tables for the domains,
// in any environment: on DynamoDB outside development this is how tables
// come to exist (serve only checks them there).
func schemaApplyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Create the store's tables and indexes for the domains (DynamoDB: also in staging and production)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, ds, err := loadConfigAndDomains(cmd)
			if err != nil {
				return err
			}
			// Applying is the one place tables are made outside development.
			st, err := openStores(withEnvironment(cmd.Context(), "development"), cfg, ds)
			if err != nil {
				return err
			}
			defer st.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "the store %s has the tables of %d domains\n", redactURL(cfg.StoreURL()), len(ds))
			return nil
		},
	}
	addConfigFlags(cmd, "store", "domains")
	return cmd
}

// schemaDynamoDBCommand prints the DynamoDB table definitions.
func schemaDynamoDBCommand() *cobra.Command {
	var format, prefix string
	var shards int
	cmd := &cobra.Command{
		Use:   "dynamodb",
		Short: "Print the DynamoDB tables and indexes the domains need, as JSON or Terraform",
		Long: `Print the table definitions for infrastructure code. The table prefix and
shard count come from a dynamodb:// store URL when one is configured, else
from --prefix and --shards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if strings.HasPrefix(cfg.Store, "dynamodb://") {
				o, err := dynamodb.ParseURL(cfg.Store)
				if err != nil {
					return err
				}
				if !cmd.Flags().Changed("prefix") {
					prefix = o.Prefix
				}
				if !cmd.Flags().Changed("shards") {
					shards = o.Shards
				}
			}
			ds, err := loadDomains(cfg.Domains)
			if err != nil {
				return err
			}
			defs, err := dynamodb.Tables(prefix, shards, ds)
			if err != nil {
				return err
			}
			switch format {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"shards": shards, "tables": defs})
			case "terraform":
				return writeTerraform(cmd.OutOrStdout(), defs)
			}
			return fmt.Errorf("--format %q: use json or terraform", format)
		},
	}
	addConfigFlags(cmd, "store", "domains")
	cmd.Flags().StringVar(&format, "format", "json", "json or terraform")
	cmd.Flags().StringVar(&prefix, "prefix", "", "table name prefix")
	cmd.Flags().IntVar(&shards, "shards", dynamodb.DefaultShards, "partitions per entity table")
	return cmd
}

// writeTerraform prints aws_dynamodb_table resources.
func writeTerraform(w io.Writer, defs []dynamodb.TableDef) error {
	for _, d := range defs {
		name := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
				return r
			}
			return '_'
		}, d.Name)
		fmt.Fprintf(w, "resource \"aws_dynamodb_table\" %q {\n", name)
		fmt.Fprintf(w, "  name         = %q\n  billing_mode = \"PAY_PER_REQUEST\"\n  hash_key     = %q\n  range_key    = %q\n", d.Name, d.Hash, d.Range)
		attrs := []string{d.Hash, d.Range}
		for _, ix := range d.Indexes {
			for _, a := range []string{ix.Hash, ix.Range()} {
				if !contains(attrs, a) {
					attrs = append(attrs, a)
				}
			}
		}
		for _, a := range attrs {
			fmt.Fprintf(w, "\n  attribute {\n    name = %q\n    type = \"S\"\n  }\n", a)
		}
		for _, ix := range d.Indexes {
			fmt.Fprintf(w, "\n  global_secondary_index {\n    name            = %q\n    hash_key        = %q\n    range_key       = %q\n    projection_type = \"ALL\"\n  }\n",
				ix.Name, ix.Hash, ix.Range())
		}
		if d.Entity == "" {
			fmt.Fprintf(w, "\n  point_in_time_recovery {\n    enabled = true\n  }\n")
		}
		fmt.Fprintf(w, "}\n\n")
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
