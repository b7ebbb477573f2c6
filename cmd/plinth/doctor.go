package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
)

func doctorCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check a configuration end to end and say how to fix what is wrong",
		Long: `Check the configuration as serve would use it, without changing anything:
the store is reachable and its schema current, the event bus reachable with
every domain's stream, the lake writable, authentication configured, the
audit trail writable, the store's data class allowed in this environment,
and the store's clock close to this machine's. Each check prints ok, warn,
FAIL or skip, with what is wrong and how to fix it. Exit status 1 when any
check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			cfg, err := loadConfig(cmd)
			if err != nil {
				report(out, check{name: "config", status: statusFail, detail: err.Error(),
					fix: "correct the setting named above in plinth.yaml, its PLINTH_* variable or its flag (README.md lists them)"})
				return exitCode(1)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			if failed := runDoctor(ctx, cfg, out); failed > 0 {
				fmt.Fprintf(out, "\n%d check(s) failed\n", failed)
				return exitCode(1)
			}
			fmt.Fprintln(out, "\nall checks passed")
			return nil
		},
	}
	// The other settings (secrets above all) come from the file and the
	// environment, as serve would read them.
	addConfigFlags(cmd, "env", "data-dir", "store", "domains", "nats-url", "event-bus", "lake", "lake-s3-endpoint", "stream-max-age", "stream-max-bytes")
	return cmd
}

// Check outcomes.
const (
	statusOK   = "ok"
	statusWarn = "warn"
	statusFail = "FAIL"
	statusSkip = "skip"
)

// check is one line of the doctor's report.
type check struct {
	name, status, detail, fix string
}

func report(out io.Writer, c check) {
	fmt.Fprintf(out, "%-5s %-12s %s\n", c.status, c.name, c.detail)
	if c.fix != "" && c.status != statusOK {
		fmt.Fprintf(out, "      %-12s fix: %s\n", "", c.fix)
	}
}

// doctor gathers the checks of one run.
type doctor struct {
	cfg    Config
	ds     []*plinth.Domain
	out    io.Writer
	failed int
}

func (d *doctor) add(c check) {
	if c.status == statusFail {
		d.failed++
	}
	report(d.out, c)
}

// runDoctor runs every check, printing each, and returns how many failed.
func runDoctor(ctx context.Context, cfg Config, out io.Writer) int {
	d := &doctor{cfg: cfg, out: out}
	fmt.Fprintf(out, "plinth doctor: environment %s\n", cfg.Environment)
	ds, err := loadDomains(cfg.Domains)
	if err != nil {
		d.add(check{name: "domains", status: statusFail, detail: err.Error(), fix: "correct the specs, or point domains (PLINTH_DOMAINS) at the right folder; plinth validate shows every problem"})
		return d.failed
	}
	d.ds = ds
	d.add(check{name: "domains", status: statusOK, detail: fmt.Sprintf("%d domain(s): %s", len(ds), domainNames(ds))})
	for _, group := range storeGroups(cfg, ds) {
		d.checkStore(ctx, group.url, group.domains)
	}
	d.checkBus(ctx)
	d.checkLake(ctx)
	return d.failed
}

func domainNames(ds []*plinth.Domain) string {
	s := ""
	for i, x := range ds {
		if i > 0 {
			s += ", "
		}
		s += x.Name
	}
	return s
}

// storeGroup is one configured store and the domains it holds.
type storeGroup struct {
	url     string
	domains []*plinth.Domain
}

// storeGroups lists the configured stores in a stable order: the default
// first, then the others as the domains name them.
func storeGroups(cfg Config, ds []*plinth.Domain) []storeGroup {
	groups := []storeGroup{{url: cfg.StoreURL()}}
	index := map[string]int{cfg.StoreURL(): 0}
	for _, x := range ds {
		u := cfg.StoreURLFor(x.Name)
		i, ok := index[u]
		if !ok {
			i = len(groups)
			index[u] = i
			groups = append(groups, storeGroup{url: u})
		}
		groups[i].domains = append(groups[i].domains, x)
	}
	return groups
}

// errRollback undoes the doctor's trial write.
var errRollback = errors.New("doctor: roll back")
