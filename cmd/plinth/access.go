package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/auth"
)

// openAccess opens the configured store for the access commands.
func openAccess(cmd *cobra.Command) (Config, []*plinth.Domain, plinth.Store, plinth.AccessStore, error) {
	cfg, ds, st, err := openConfigured(cmd)
	if err != nil {
		return cfg, nil, nil, nil, err
	}
	access, err := accessStore(st)
	if err != nil {
		st.Close()
		return cfg, nil, nil, nil, err
	}
	return cfg, ds, st, access, nil
}

func tokenCommand() *cobra.Command {
	token := &cobra.Command{
		Use:   "token",
		Short: "Issue, list, revoke and re-enable service tokens",
	}
	var g plinth.Grant
	var methods, expires string
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Issue a service token for one API, endpoint template, methods and the configured environment",
		Long: `Issue a service token. The token is printed once and never stored: the
store keeps only the grant it stands for, which is checked on every call.
The token is signed with tokenSecret (PLINTH_TOKEN_SECRET); the serving
Plinth must use the same secret. In development without tokenSecret, both
use the development secret kept in the data directory (--data-dir). The
grant's environment is --env.`,
		Example: `  plinth token issue --consumer housing-listener --type listener --api residents \
    --endpoint '/api/v1/residents/{id}' --methods GET --expires 720h \
    --requested-by jo@example.gov.uk --authorised-by sam@example.gov.uk`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, ds, st, access, err := openAccess(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			secret, err := cfg.ServiceSecret()
			if err != nil {
				return err
			}
			g.Environment = cfg.Environment
			g.Methods = splitList(strings.ToUpper(methods))
			if g.ExpiresAt, err = parseExpiry(expires); err != nil {
				return err
			}
			// Issuing needs only the service secret, not user tokens.
			a, err := auth.New(cmd.Context(), auth.Config{Environment: cfg.Environment, ServiceSecret: secret,
				MaxServiceTokenLifetime: cfg.MaxTokenLifetime}, access, ds)
			if err != nil {
				return err
			}
			defer a.Close()
			tok, stored, err := a.IssueServiceToken(cmd.Context(), g)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Token %s for %s: %s %s in %s, expires %s.\n", stored.ID, stored.Consumer,
				strings.Join(stored.Methods, ","), stored.Endpoint, stored.Environment, stored.ExpiresAt.Format(time.RFC3339))
			fmt.Fprintf(out, "It is shown this once; store it in the consumer's secret store.\n\n%s\n", tok)
			return nil
		},
	}
	addConfigFlags(issue, with(storeFlags, "env", "token-secret", "max-token-lifetime")...)
	f := issue.Flags()
	f.StringVar(&g.Consumer, "consumer", "", "name of the consuming service (required)")
	f.StringVar(&g.ConsumerType, "type", "service", "kind of consumer: service, listener, frontend …")
	f.StringVar(&g.API, "api", "", "the domain the token is for (required)")
	f.StringVar(&g.Endpoint, "endpoint", "", "route template, exactly as served, e.g. /api/v1/residents/{id} (required)")
	f.StringVar(&methods, "methods", "GET", "comma-separated HTTP methods")
	f.StringVar(&expires, "expires", "", "expiry: a duration such as 720h, or an RFC 3339 time (required)")
	f.StringVar(&g.RequestedBy, "requested-by", "", "who asked for the token (required)")
	f.StringVar(&g.AuthorisedBy, "authorised-by", "", "who authorised it (required)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List service-token grants (never the tokens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, _, st, access, err := openAccess(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCONSUMER\tAPI\tENDPOINT\tMETHODS\tENV\tEXPIRES\tENABLED")
			after := ""
			for {
				grants, more, err := access.Grants(cmd.Context(), after, plinth.MaxLimit)
				if err != nil {
					return err
				}
				for _, g := range grants {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%t\n", g.ID, g.Consumer, g.API, g.Endpoint,
						strings.Join(g.Methods, ","), g.Environment, g.ExpiresAt.Format(time.RFC3339), g.Enabled)
					after = g.ID
				}
				if !more {
					break
				}
			}
			return tw.Flush()
		},
	}
	addConfigFlags(list, storeFlags...)
	token.AddCommand(issue, list, setEnabledCommand("revoke", false), setEnabledCommand("enable", true))
	return token
}

func setEnabledCommand(name string, enabled bool) *cobra.Command {
	short := "Revoke a service token by its ID (takes effect within 5 seconds)"
	if enabled {
		short = "Re-enable a revoked service token by its ID"
	}
	cmd := &cobra.Command{
		Use:   name + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, _, st, access, err := openAccess(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			g, err := access.SetGrantEnabled(cmd.Context(), args[0], enabled)
			if err != nil {
				return fmt.Errorf("token %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Token %s for %s is now %s.\n", g.ID, g.Consumer, map[bool]string{true: "enabled", false: "revoked"}[g.Enabled])
			return nil
		},
	}
	addConfigFlags(cmd, storeFlags...)
	return cmd
}

// parseExpiry reads an expiry as a duration from now or an RFC 3339 time.
func parseExpiry(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("--expires is required: a duration such as 720h, or an RFC 3339 time")
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(d).UTC().Truncate(time.Second), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--expires %q: use a duration such as 720h, or an RFC 3339 time such as 2027-01-31T00:00:00Z", s)
	}
	return t.UTC(), nil
}

func accessCommand() *cobra.Command {
	access := &cobra.Command{
		Use:   "access",
		Short: "Manage which groups may use each domain's API in an environment",
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the access policies of the configured environment (--env)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, st, store, err := openAccess(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			ps, err := store.Policies(cmd.Context(), cfg.Environment)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DOMAIN\tENV\tREAD\tWRITE\tWRITE READS\tREPORTING\tENTITY OVERRIDES")
			for _, p := range ps {
				var overrides []string
				for plural, ep := range p.Entities {
					overrides = append(overrides, fmt.Sprintf("%s(read=%s write=%s)", plural, groupsOrInherit(ep.ReadGroups), groupsOrInherit(ep.WriteGroups)))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%s\t%s\n", p.Domain, p.Environment, strings.Join(p.ReadGroups, ","),
					strings.Join(p.WriteGroups, ","), p.WriteImpliesRead, strings.Join(p.ReportingGroups, ","), strings.Join(overrides, " "))
			}
			return tw.Flush()
		},
	}
	addConfigFlags(list, with(storeFlags, "env")...)

	var read, write, reporting string
	var writeReads, nobody bool
	set := &cobra.Command{
		Use:   "set DOMAIN",
		Short: "Create or replace the access policy of a domain in the configured environment (--env)",
		Long: `Create or replace the access policy of a domain in the configured environment
(--env). The policy replaces the previous one as a whole: groups not named
lose their access. A policy that names no group at all locks everyone out of
the domain, so it needs --nobody.`,
		Example: `  plinth access set residents --env staging --read-groups social-care-readers --write-groups social-care-editors
  plinth access set residents --env production --nobody     # lock the domain`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := plinth.AccessPolicy{Domain: args[0], ReadGroups: splitList(read),
				WriteGroups: splitList(write), WriteImpliesRead: writeReads, ReportingGroups: splitList(reporting)}
			cfg, ds, st, store, err := openAccess(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			if !domainExists(ds, args[0]) {
				return fmt.Errorf("no domain is called %s", args[0])
			}
			none := len(p.ReadGroups)+len(p.WriteGroups)+len(p.ReportingGroups) == 0
			switch {
			case none && !nobody:
				return fmt.Errorf("this policy names no group, so nobody could use %s: give --read-groups, --write-groups or --reporting-groups, or --nobody to lock everyone out on purpose", args[0])
			case !none && nobody:
				return fmt.Errorf("--nobody locks everyone out and cannot be combined with groups")
			}
			p.Environment = cfg.Environment
			if err := store.PutPolicy(cmd.Context(), p); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Access policy for %s in %s set; it applies within 5 seconds.\n", p.Domain, p.Environment)
			return nil
		},
	}
	addConfigFlags(set, with(storeFlags, "env")...)
	set.Flags().StringVar(&read, "read-groups", "", "comma-separated groups that may list and view")
	set.Flags().StringVar(&write, "write-groups", "", "comma-separated groups that may create, update and delete")
	set.Flags().BoolVar(&writeReads, "write-implies-read", false, "let write groups read as well")
	set.Flags().StringVar(&reporting, "reporting-groups", "", "comma-separated groups that may use the Reporting API")
	set.Flags().BoolVar(&nobody, "nobody", false, "name no group: nobody may use the domain (required for a policy without groups)")

	remove := &cobra.Command{
		Use:   "remove DOMAIN",
		Short: "Remove the access policy of a domain in the configured environment (--env); nobody can then use it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, st, store, err := openAccess(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := store.DeletePolicy(cmd.Context(), args[0], cfg.Environment); err != nil {
				return fmt.Errorf("access policy for %s in %s: %w", args[0], cfg.Environment, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Access policy for %s in %s removed.\n", args[0], cfg.Environment)
			return nil
		},
	}
	addConfigFlags(remove, with(storeFlags, "env")...)
	access.AddCommand(list, set, remove)
	return access
}

func groupsOrInherit(groups []string) string {
	if groups == nil {
		return "(domain)"
	}
	return "[" + strings.Join(groups, ",") + "]"
}

func domainExists(ds []*plinth.Domain, name string) bool {
	for _, d := range ds {
		if d.Name == name {
			return true
		}
	}
	return false
}
