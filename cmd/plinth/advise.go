package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/advise"
	"github.com/plinth-data/plinth/spec"
)

// adviseCommand asks the organisation's five questions and recommends an
// engine for a domain.
func adviseCommand() *cobra.Command {
	var (
		domain, region, pgURL string
		asJSON                bool
		answers               = map[string]*string{}
	)
	cmd := &cobra.Command{
		Use:   "advise",
		Short: "Recommend PostgreSQL or DynamoDB for a domain, from the five questions and its spec",
		Long: `Ask the organisation's five questions (on a terminal, for those not given
by flags and not inferred from the spec), weigh the answers by the stated
rule, and print the recommendation, its reasons, the trade-offs for the
spec (which filters would be scans on DynamoDB) and the plinth.yaml
stores: line. --domain takes a spec file or the name of a configured
domain. Answers are yes or no.

` + advise.Rule,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := adviseDomain(cmd, domain)
			if err != nil {
				return err
			}
			given := map[string]advise.Answer{}
			for _, q := range advise.Questions {
				if v := *answers[q.ID]; v != "" {
					b, err := yesNo(v)
					if err != nil {
						return fmt.Errorf("--%s: %w", q.ID, err)
					}
					given[q.ID] = advise.Answer{Value: &b, Source: "flag"}
				}
			}
			inferred := map[string]advise.Answer{}
			if d != nil {
				inferred = advise.Infer(d)
			}
			if !asJSON && term.IsTerminal(int(os.Stdin.Fd())) {
				if err := ask(cmd.InOrStdin(), cmd.OutOrStdout(), given, inferred); err != nil {
					return err
				}
			}
			a := advise.Advise(d, given, map[string]string{advise.DynamoDB: "dynamodb://" + region, advise.PostgreSQL: pgURL})
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(a)
			}
			_, err = io.WriteString(cmd.OutOrStdout(), a.Text())
			return err
		},
	}
	for _, q := range advise.Questions {
		answers[q.ID] = new(string)
		cmd.Flags().StringVar(answers[q.ID], q.ID, "", q.Text+" (yes or no)")
	}
	cmd.Flags().StringVar(&domain, "domain", "", "a domain spec file, or the name of a configured domain")
	cmd.Flags().StringVar(&region, "region", "eu-west-2", "AWS region for the dynamodb:// URL in the stores line")
	cmd.Flags().StringVar(&pgURL, "postgres-url", "postgres://plinth@db:5432/plinth", "PostgreSQL URL for the stores line")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the advice as JSON")
	addConfigFlags(cmd, "domains")
	return cmd
}

// adviseDomain loads --domain: a spec file, or a configured domain by name.
func adviseDomain(cmd *cobra.Command, name string) (*plinth.Domain, error) {
	if name == "" {
		return nil, nil
	}
	if strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") || strings.ContainsRune(name, filepath.Separator) {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		return spec.Parse(name, b)
	}
	ds, err := configuredDomains(cmd)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range ds {
		if d.Name == name {
			return d, nil
		}
		names = append(names, d.Name)
	}
	return nil, fmt.Errorf("--domain %q: no such spec file or configured domain (domains: %s)", name, strings.Join(names, ", "))
}

func yesNo(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "y", "yes", "true":
		return true, nil
	case "n", "no", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q: answer yes or no", s)
}

// ask prompts for the questions neither given nor inferred; an empty line
// leaves one unanswered.
func ask(in io.Reader, out io.Writer, given, inferred map[string]advise.Answer) error {
	r := bufio.NewReader(in)
	for _, q := range advise.Questions {
		if _, ok := given[q.ID]; ok {
			continue
		}
		hint := "[yes/no, empty to skip]"
		if inf, ok := inferred[q.ID]; ok && inf.Value != nil {
			hint = fmt.Sprintf("[inferred %s from the spec; Enter keeps it]", map[bool]string{true: "yes", false: "no"}[*inf.Value])
		}
		for {
			fmt.Fprintf(out, "%s %s ", q.Text, hint)
			line, err := r.ReadString('\n')
			if err != nil && line == "" {
				return nil
			}
			if strings.TrimSpace(line) == "" {
				break
			}
			b, err := yesNo(line)
			if err != nil {
				fmt.Fprintln(out, err)
				continue
			}
			given[q.ID] = advise.Answer{Value: &b, Source: "prompt"}
			break
		}
	}
	return nil
}
