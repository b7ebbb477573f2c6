package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/postgres"
)

// openSupport opens the configured PostgreSQL store for the support
// commands, without preparing it: break-glass access changes roles, never
// the schema.
func openSupport(cmd *cobra.Command) (Config, *postgres.Store, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return cfg, nil, err
	}
	url := cfg.StoreURL()
	if !strings.HasPrefix(url, "postgres://") && !strings.HasPrefix(url, "postgresql://") {
		return cfg, nil, fmt.Errorf("support access creates PostgreSQL roles, and the store %s is not PostgreSQL; give the production store with --store postgres://… (PLINTH_STORE)",
			redactURL(url))
	}
	st, err := postgres.Open(cmd.Context(), url)
	if err != nil {
		return cfg, nil, err
	}
	return cfg, st, nil
}

// operator is who runs a support command: the flag, else $USER.
func operator(flag string) (string, error) {
	if flag = strings.TrimSpace(flag); flag != "" {
		return flag, nil
	}
	if u := strings.TrimSpace(os.Getenv("USER")); u != "" {
		return u, nil
	}
	return "", fmt.Errorf("say who you are with --granted-by (or --by) your e-mail address: it goes into the audit trail")
}

func supportCommand() *cobra.Command {
	support := &cobra.Command{
		Use:   "support",
		Short: "Grant, list, revoke and sweep break-glass read-only database access (PostgreSQL)",
		Long: `Break-glass support access: a named person gets a time-limited, read-only
PostgreSQL login on one domain's schema, recorded in the audit trail.

Whoever runs these commands with the store's database credentials (a user
with CREATEROLE) acts as the admin; say who you are with --granted-by or
--by, which default to $USER.

The role expires by VALID UNTIL, which PostgreSQL checks only for password
logins (scram-sha-256 or md5 in pg_hba.conf; trust lines let an expired
role in), and is dropped, with its open sessions ended, by the sweep that
plinth serve runs and that plinth support sweep runs once.`,
	}

	var req postgres.SupportRequest
	grant := &cobra.Command{
		Use:   "grant",
		Short: "Create a time-limited read-only role on a domain's schema and print how to connect",
		Example: `  plinth support grant --store postgres://plinth@db:5432/plinth --env production \
    --user jo.bloggs@example.gov.uk --reason "INC-1234: wrong address shown" --ttl 1h --domain residents \
    --granted-by sam@example.gov.uk`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c, err := loadConfig(cmd); err == nil && strings.HasPrefix(c.StoreURLFor(req.Domain), "dynamodb://") {
				return grantDynamoDBSupport(cmd, c, req)
			}
			cfg, st, err := openSupport(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			if req.GrantedBy, err = operator(req.GrantedBy); err != nil {
				return err
			}
			if ds, err := loadDomains(cfg.Domains); err != nil {
				return err
			} else if req.Domain != "" && !slices.ContainsFunc(ds, func(d *plinth.Domain) bool { return d.Name == req.Domain }) {
				var names []string
				for _, d := range ds {
					names = append(names, d.Name)
				}
				return fmt.Errorf("--domain %q is not one of the domains: %s", req.Domain, strings.Join(names, ", "))
			}
			req.Environment = cfg.Environment
			g, err := st.GrantSupport(cmd.Context(), req)
			if err != nil {
				return supportProblem(err)
			}
			printGrant(cmd, g)
			return nil
		},
	}
	addConfigFlags(grant, "store", "domains", "env")
	f := grant.Flags()
	f.StringVar(&req.User, "user", "", "e-mail address of the person who needs access (required)")
	f.StringVar(&req.Reason, "reason", "", "why: the incident or ticket and a sentence (required)")
	f.DurationVar(&req.TTL, "ttl", time.Hour, fmt.Sprintf("how long the access lasts, %s to %s", postgres.MinSupportTTL, postgres.DefaultMaxSupportTTL))
	f.StringVar(&req.Domain, "domain", "", "the domain whose data may be read (required)")
	f.StringVar(&req.GrantedBy, "granted-by", "", "your e-mail address, for the audit trail (default $USER)")

	var by string
	revoke := &cobra.Command{
		Use:   "revoke ROLE",
		Short: "End support access now: end the role's sessions and drop it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, st, err := openSupport(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			who, err := operator(by)
			if err != nil {
				return err
			}
			if err := st.RevokeSupport(cmd.Context(), args[0], who); err != nil {
				return supportProblem(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Support role %s revoked: its sessions were ended and the role dropped.\n", args[0])
			return nil
		},
	}
	addConfigFlags(revoke, "store")
	revoke.Flags().StringVar(&by, "by", "", "your e-mail address, for the audit trail (default $USER)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List support roles that have not been revoked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, st, err := openSupport(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			gs, err := st.SupportGrants(cmd.Context())
			if err != nil {
				return err
			}
			if len(gs) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No support access is granted.")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLE\tUSER\tDOMAIN\tGRANTED BY\tGRANTED\tEXPIRES\tSTATE\tREASON")
			for _, g := range gs {
				state := "active, " + time.Until(g.ExpiresAt).Round(time.Second).String() + " left"
				if g.Expired {
					state = "expired, awaiting the sweep"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Role, g.User, g.Domain, g.GrantedBy,
					g.CreatedAt.Format(time.RFC3339), g.ExpiresAt.Format(time.RFC3339), state, oneLine(g.Reason))
			}
			return tw.Flush()
		},
	}
	addConfigFlags(list, "store")

	sweep := &cobra.Command{
		Use:   "sweep",
		Short: "Revoke every expired support role now (plinth serve does this periodically)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, st, err := openSupport(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			revoked, err := st.SweepSupport(cmd.Context())
			for _, r := range revoked {
				fmt.Fprintf(cmd.OutOrStdout(), "Revoked expired support role %s.\n", r)
			}
			if err != nil {
				return supportProblem(err)
			}
			if len(revoked) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No expired support roles.")
			}
			return nil
		},
	}
	addConfigFlags(sweep, "store")

	support.AddCommand(grant, revoke, list, sweep, supportLogCommand())
	return support
}

// printGrant prints a grant once: the password is not kept anywhere.
func printGrant(cmd *cobra.Command, g postgres.SupportGrant) {
	fmt.Fprint(cmd.OutOrStdout(), g.Describe())
}

// supportProblem spells out validation errors as flags.
func supportProblem(err error) error {
	var ve *plinth.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	flag := map[string]string{"user": "--user", "reason": "--reason", "ttl": "--ttl", "domain": "--domain", "grantedBy": "--granted-by", "by": "--by"}
	var lines []string
	for _, fe := range ve.Errors {
		name := flag[fe.Field]
		if name == "" {
			name = fe.Field
		}
		lines = append(lines, name+" "+fe.Detail)
	}
	return fmt.Errorf("%s", strings.Join(lines, "\n"))
}

// oneLine shortens a reason for a table cell.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 60 {
		s = string(r[:59]) + "…"
	}
	return s
}

func supportLogCommand() *cobra.Command {
	var since string
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Bring the statements support roles ran (pgaudit lines of the server's CSV log) into the audit trail",
		Long: `Reads PostgreSQL's CSV server log (log_destination = 'csvlog') and appends
one audit record per statement and table that a support role ran, as pgaudit
logged it: operation support-statement, principal the support role and the
person it was granted to, the statement, the table, the rows, the time, and
the grant's correlation id, which links it to the grant's own record. Then
it chains them.

It must run where it can read the server's log files (the database host, or
where the logs are shipped or mounted), as a user that may read them
(log_file_mode = 0640 and membership of the server's group). --pg-log-dir
(supportLogDir, PLINTH_SUPPORT_LOG_DIR) names the folder; without it the
server's log_directory is used when this machine can read it.

It remembers how far it read (checkpoint plinth.support-log), so running it
again adds only what is new; run it periodically, e.g. from cron, and after a
support session ends.`,
		Example: `  plinth support log --store postgres://plinth@db:5432/plinth --pg-log-dir /var/lib/postgresql/15/main/log
  plinth support log --since 24h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, st, err := openSupport(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			ctx := cmd.Context()
			opts := postgres.SupportLogOptions{Dir: cfg.SupportLogDir}
			if since != "" {
				if opts.Since, err = parseSince(since, time.Now()); err != nil {
					return err
				}
			}
			if opts.Dir == "" {
				dir, err := st.ServerLogDir(ctx)
				if err != nil {
					return fmt.Errorf("give the folder of the server's CSV log with --pg-log-dir (or supportLogDir): %w", err)
				}
				if _, err := os.Stat(dir); err != nil {
					return fmt.Errorf("the server logs to %s, which this machine cannot read (%v): run plinth support log where the log files are, or give where they are shipped or mounted with --pg-log-dir", dir, err)
				}
				opts.Dir = dir
			}
			res, err := st.ImportSupportLog(ctx, opts)
			out := cmd.OutOrStdout()
			if res.Statements > 0 || err == nil {
				fmt.Fprintf(out, "Read %d CSV log file(s) in %s: %d statement(s) of support roles brought into the audit trail", res.Files, opts.Dir, res.Statements)
				if res.Skipped > 0 {
					fmt.Fprintf(out, ", %d older than --since passed over", res.Skipped)
				}
				fmt.Fprintf(out, "; next read from %s at byte %d.\n", res.Position.File, res.Position.Offset)
			}
			if err != nil {
				return err
			}
			if _, err := audit.ChainPending(ctx, st); err != nil && !errors.Is(err, audit.ErrChainerActive) {
				return fmt.Errorf("the statements are in the audit log, but not chained yet (plinth audit chain links them): %w", err)
			}
			return nil
		},
	}
	addConfigFlags(cmd, "store", "pg-log-dir")
	cmd.Flags().StringVar(&since, "since", "", "pass over log lines older than this: a time (2006-01-02T15:04:05Z07:00 or 2006-01-02) or a duration back from now (24h); they are not imported later either")
	return cmd
}
