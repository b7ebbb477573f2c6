package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
)

func storeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Show or change the class of data a store holds (dummy, obfuscated, real)",
		Long: `Every store records the class of the data it holds and where it came from:
dummy (plinth seed), obfuscated (plinth obfuscate) or real. Development
serves only dummy data, staging dummy or obfuscated data; plinth seed
writes only into stores holding dummy data or nothing.

A store with data and nothing recorded (made before Plinth recorded
provenance) counts as real, unless its records are recognised as made by
Plinth's seed (reserved e-mail domains, test NHS numbers, drama phone
numbers and "Dummy" marks in the first records of every entity).`,
	}
	cmd.AddCommand(storeInfoCommand(), storeMarkCommand())
	return cmd
}

func storeInfoCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Print the class of the store's data, where it came from and when",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, ds, st, err := openConfigured(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			p, err := plinth.ClassOf(cmd.Context(), st, ds)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, err := json.Marshal(struct {
					plinth.Provenance
					Recorded bool `json:"recorded"`
				}{p, p.Recorded()})
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(out, string(b))
				return err
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "store:\t%s\n", redactURL(cfg.StoreURL()))
			fmt.Fprintf(tw, "class:\t%s\n", p.Class)
			fmt.Fprintf(tw, "source:\t%s\n", p.Source)
			fmt.Fprintf(tw, "detail:\t%s\n", orDash(p.Detail))
			when := "-"
			if !p.At.IsZero() {
				when = p.At.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "when:\t%s\n", when)
			if p.By != "" {
				fmt.Fprintf(tw, "by:\t%s\n", p.By)
			}
			recorded := "yes"
			if !p.Recorded() {
				recorded = "no (concluded from the store's records; plinth store mark records a class)"
			}
			fmt.Fprintf(tw, "recorded:\t%s\n", recorded)
			return tw.Flush()
		},
	}
	addConfigFlags(cmd, with(storeFlags, "env")...)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func storeMarkCommand() *cobra.Command {
	var class, reason, by string
	cmd := &cobra.Command{
		Use:   "mark",
		Short: "Record the class of the store's data, with a reason that goes into the audit trail",
		Long: `Record the class of the data the store holds, replacing what was recorded or
concluded. A person must say why (--reason); the change goes into the audit
trail with who made it (--by, default $USER) and the class before.`,
		Example: `  plinth store mark --class dummy --reason "INC-42: filled by hand with made-up test records" --by jo@example.gov.uk`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := plinth.DataClass(strings.TrimSpace(class))
			if !plinth.ValidClass(c) {
				return fmt.Errorf("--class %q: use dummy, obfuscated or real", class)
			}
			reason = strings.TrimSpace(reason)
			if reason == "" {
				return fmt.Errorf(`a class changes only with a reason, which goes into the audit trail: add --reason "…" (what the store holds and how you know)`)
			}
			who, err := operator(by)
			if err != nil {
				return fmt.Errorf("say who you are with --by your e-mail address: it goes into the audit trail")
			}
			cfg, ds, st, err := openConfigured(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			as, ok := st.(plinth.AuditStore)
			if !ok {
				return fmt.Errorf("the store keeps no audit trail, so its class cannot be changed")
			}
			ctx := cmd.Context()
			// A recorded class that does not decode, or is not one of the
			// three, is what a mark corrects: it counts as unknown here.
			was, err := plinth.ClassOf(ctx, st, ds)
			if err != nil {
				was = plinth.Provenance{}
			}
			p := plinth.Provenance{Class: c, Source: plinth.SourceMark, Detail: reason, At: plinth.Now(), By: who}
			rec := plinth.AuditRecord{
				Time:          p.At,
				CorrelationID: uuid.NewString(),
				Environment:   cfg.Environment,
				Operation:     "store-mark",
				Principal:     principalOf(who),
				Decision:      plinth.DecisionAllow,
				Reason:        fmt.Sprintf("data class marked %s (was %s); reason: %s", c, describeWas(was), reason),
				Filters:       map[string]string{"class": string(c), "was": string(was.Class)},
			}
			// The class and its audit record commit together, or neither.
			err = st.Write(ctx, func(tx plinth.Tx) error {
				atx, ok := tx.(plinth.AuditTx)
				if !ok {
					return fmt.Errorf("the store cannot write an audit record with a change")
				}
				if err := plinth.SetStoreProvenance(ctx, tx, p); err != nil {
					return err
				}
				_, err := atx.AppendAudit(ctx, rec)
				return err
			})
			if err != nil {
				return fmt.Errorf("the class was not changed: %w", err)
			}
			if _, err := audit.ChainPending(ctx, as); err != nil && !errors.Is(err, audit.ErrChainerActive) {
				return fmt.Errorf("the class was changed and audited, but the audit record is not chained yet (plinth audit chain links it): %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "marked the store %s (was %s), by %s; audit record %s\n", c, describeWas(was), who, rec.CorrelationID)
			return nil
		},
	}
	addConfigFlags(cmd, with(storeFlags, "env")...)
	f := cmd.Flags()
	f.StringVar(&class, "class", "", "the class of the data: dummy, obfuscated or real (required)")
	f.StringVar(&reason, "reason", "", "why: what the store holds and how you know (required; goes into the audit trail)")
	f.StringVar(&by, "by", "", "your e-mail address, for the audit trail (default $USER)")
	return cmd
}

// describeWas names the class a store had before a mark.
func describeWas(p plinth.Provenance) string {
	if p.Class == "" {
		return "an unknown class"
	}
	if !p.Recorded() {
		return fmt.Sprintf("%s, %s, not recorded", p.Class, p.Source)
	}
	return fmt.Sprintf("%s, from %s", p.Class, p.Source)
}

// principalOf is the principal of a person named by an e-mail or a name.
func principalOf(who string) plinth.Principal {
	p := plinth.Principal{Subject: who}
	if strings.Contains(who, "@") {
		p.Email = who
	}
	return p
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
