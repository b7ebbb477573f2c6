package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth/postgres"
)

func schemaCommand() *cobra.Command {
	schema := &cobra.Command{
		Use:   "schema",
		Short: "Inspect how the store's schema compares with the domain specs",
	}
	diff := &cobra.Command{
		Use:   "diff",
		Short: "Print the DDL that serve would apply to bring a PostgreSQL store to the specs, without applying it",
		Long: `Compare the live PostgreSQL schema with the domain specs and print the
planned DDL. Additive changes (a new entity, an optional field, a filter) are
applied automatically when plinth serve starts; incompatible changes (a type
changed, a field removed, a key changed) are listed as REFUSED with how to
migrate, and serve refuses to start until they are resolved. Exit status 0:
the schema matches; 2: there are changes to apply; 3: there are refusals.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			url := cfg.StoreURL()
			if !strings.HasPrefix(url, "postgres://") && !strings.HasPrefix(url, "postgresql://") {
				return fmt.Errorf("schema diff compares a PostgreSQL store; give one with --store postgres://… (SQLite stores only ever change additively, on start)")
			}
			ds, err := loadDomains(cfg.Domains)
			if err != nil {
				return err
			}
			st, err := postgres.Open(cmd.Context(), url)
			if err != nil {
				return err
			}
			defer st.Close()
			plan, err := st.Plan(cmd.Context(), ds)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), plan.String())
			switch {
			case len(plan.Refusals) > 0:
				return exitCode(3)
			case !plan.Empty():
				return exitCode(2)
			}
			return nil
		},
	}
	addConfigFlags(diff, "store", "domains")
	schema.AddCommand(diff, schemaApplyCommand(), schemaDynamoDBCommand())
	return schema
}

// exitCode ends the command with a status and no further message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
