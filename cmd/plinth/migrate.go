package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql"  // legacy MariaDB/MySQL sources
	_ "github.com/jackc/pgx/v5/stdlib"  // legacy PostgreSQL sources
	_ "github.com/microsoft/go-mssqldb" // legacy SQL Server sources
	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/bundle"
	"github.com/plinth-data/plinth/datasafety"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/legacy"
	"github.com/plinth-data/plinth/spec"
)

func migrateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Bring a legacy database's data in and keep it in step (check, full, sync, status)",
		Long: `Migrate data from a legacy database (MariaDB/MySQL, PostgreSQL) into the store, as a
mapping file (<domain>.<source>.mapping.yaml) says. The source is read only. Its connection
URL comes from the environment variable the mapping names (or --source); it never appears
in logs or messages with its password.`,
	}
	cmd.AddCommand(migrateCheckCommand(), migrateFullCommand(), migrateSyncCommand(), migrateCDCCommand(), migrateStatusCommand())
	return cmd
}

// migrateFlags are what every migrate command takes.
type migrateFlags struct {
	mapping, source string
}

func (f *migrateFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.mapping, "mapping", "", "the mapping file (a path, or the name of a shipped mapping such as residents.case.mapping.yaml)")
	cmd.Flags().StringVar(&f.source, "source", "", "the source's connection URL (default: the environment variable the mapping names)")
}

// loadMapping reads a mapping from a path, or a shipped one by name.
func loadMapping(path string) (*legacy.Mapping, error) {
	if path == "" {
		return nil, errors.New("give the mapping file with --mapping")
	}
	m, err := legacy.LoadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		for _, name := range []string{filepath.Base(path), "templates/" + filepath.Base(path)} {
			if data, ferr := domains.FS.ReadFile(name); ferr == nil {
				return legacy.Parse(name, data)
			}
		}
	}
	return m, err
}

// openMapping loads and resolves the mapping, connects to its source and
// checks the mapping against it: nothing is read before all is well.
func (f *migrateFlags) open(ctx context.Context, ds []*plinth.Domain) (*legacy.Mapping, *legacy.Source, error) {
	m, err := loadMapping(f.mapping)
	if err != nil {
		return nil, nil, err
	}
	if err := m.Resolve(ds); err != nil {
		return nil, nil, err
	}
	url := f.source
	if url == "" {
		if url, err = m.ConnectionURL(); err != nil {
			return nil, nil, err
		}
	}
	src, err := legacy.Open(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	if err := legacy.Check(ctx, src, m); err != nil {
		src.Close()
		return nil, nil, err
	}
	return m, src, nil
}

func migrateCheckCommand() *cobra.Command {
	var f migrateFlags
	cmd := &cobra.Command{
		Use:   "check --mapping M",
		Short: "Check a mapping against the domain spec and the live source, before anything is read",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, ds, err := loadConfigAndDomains(cmd)
			if err != nil {
				return err
			}
			m, src, err := f.open(cmd.Context(), ds)
			if err != nil {
				return err
			}
			defer src.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "ok  %s: %s (%s) → %s/%s, %d fields, %d child collections\n", m.File, m.Table, m.System, m.Domain, m.Plural, len(m.Fields), len(m.Children))
			return nil
		},
	}
	f.add(cmd)
	addConfigFlags(cmd, "domains")
	return cmd
}

// guard applies the environment rule to the source's data: a source that
// carries the fixture marker holds dummy data; any other holds real data,
// which staging takes only obfuscated (--obfuscate --key-file) and
// development not at all. It returns the class the target will hold.
func guard(ctx context.Context, env string, src *legacy.Source, m *legacy.Mapping, ds []*plinth.Domain, obfuscate bool, keyFile string) (plinth.DataClass, error) {
	dummy, err := src.IsDummy(ctx)
	if err != nil {
		return "", err
	}
	class := plinth.ClassReal
	if dummy {
		class = plinth.ClassDummy
	}
	if obfuscate {
		if keyFile == "" {
			return "", errors.New("--obfuscate needs --key-file, the file holding the obfuscation key")
		}
		key, err := os.ReadFile(keyFile)
		if err != nil {
			return "", fmt.Errorf("reading the key file: %w", err)
		}
		if err := datasafety.CheckKey(key); err != nil {
			return "", err
		}
		o := datasafety.NewObfuscator(key).SetDomains(ds)
		m.Rewrite = o.Record
		if class == plinth.ClassReal {
			class = plinth.ClassObfuscated
		}
	}
	if err := bundle.CheckEnvironment(env, class); err != nil {
		return "", fmt.Errorf("refused in %s: the source (without the %s marker of plinth legacy fixture) holds %s data, and %s",
			env, legacy.MarkerTable, class, envRule(env))
	}
	return class, nil
}

func envRule(env string) string {
	if env == plinth.EnvDevelopment {
		return "development holds only dummy data: make a fixture with plinth legacy fixture, or migrate into staging with --obfuscate --key-file K"
	}
	return "staging holds only dummy or obfuscated data: migrate with --obfuscate --key-file K"
}

// recordProvenance records the migration in the target, keeping a more
// sensitive class already recorded.
func recordProvenance(ctx context.Context, st plinth.Store, class plinth.DataClass, m *legacy.Mapping, mode string) error {
	if p, found, err := plinth.StoreProvenance(ctx, st); err != nil {
		return err
	} else if found && rank(p.Class) > rank(class) {
		class = p.Class
	}
	return plinth.SetStoreProvenance(ctx, st, plinth.Provenance{Class: class, Source: plinth.SourceMigrate,
		Detail: fmt.Sprintf("%s (%s, %s)", m.System, filepath.Base(m.File), mode), At: plinth.Now()})
}

func rank(c plinth.DataClass) int {
	return map[plinth.DataClass]int{plinth.ClassDummy: 0, plinth.ClassObfuscated: 1, plinth.ClassReal: 2}[c]
}

// migrateSetup is what full and sync start with.
type migrateSetup struct {
	cfg    Config
	ds     []*plinth.Domain
	st     plinth.Store
	m      *legacy.Mapping
	src    *legacy.Source
	class  plinth.DataClass
	logger *slog.Logger
}

func (s *migrateSetup) Close() {
	s.src.Close()
	s.st.Close()
}

func setupMigrate(cmd *cobra.Command, f *migrateFlags, obfuscate bool, keyFile string) (*migrateSetup, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	ds, err := loadDomains(cfg.Domains)
	if err != nil {
		return nil, err
	}
	m, src, err := f.open(cmd.Context(), ds)
	if err != nil {
		return nil, err
	}
	class, err := guard(cmd.Context(), cfg.Environment, src, m, ds, obfuscate, keyFile)
	if err != nil {
		src.Close()
		return nil, err
	}
	st, err := openStore(cmd.Context(), cfg.StoreURL(), ds)
	if err != nil {
		src.Close()
		return nil, err
	}
	return &migrateSetup{cfg: cfg, ds: ds, st: st, m: m, src: src, class: class, logger: newLogger(cfg.LogLevel)}, nil
}

func legacyMeter(logger *slog.Logger) legacy.MeterFunc {
	return func(what string, total int64) legacy.Meter { return meter{newProgress(total, what, logger)} }
}

func migrateFullCommand() *cobra.Command {
	var f migrateFlags
	var batch int
	var restart, obfuscate bool
	var keyFile string
	cmd := &cobra.Command{
		Use:   "full --mapping M",
		Short: "Load every record from one consistent snapshot of the source; resumable; ends with a validation report",
		Long: `Read a consistent snapshot of the source (MariaDB/MySQL: START TRANSACTION WITH CONSISTENT
SNAPSHOT; PostgreSQL: REPEATABLE READ), build each record as the mapping says, and write them
through the bulk path (upsert by key, so a re-run is safe) in batches, each with a
checkpoint of its last key: an interrupted load resumes after it. Then compare source and
target record by record (hashes) and list mismatches by key; exit status 3 when they differ.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := setupMigrate(cmd, &f, obfuscate, keyFile)
			if err != nil {
				return err
			}
			defer s.Close()
			defer bulkGC()()
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			res, err := legacy.Full(ctx, s.src, s.st, s.m, legacy.FullOptions{Batch: batch, Restart: restart, Meter: legacyMeter(s.logger)})
			if err != nil {
				return err
			}
			if err := recordProvenance(ctx, s.st, s.class, s.m, "full"); err != nil {
				return err
			}
			resumed := ""
			if res.Resumed {
				resumed = " (resumed an interrupted load)"
			}
			fmt.Fprintf(out, "read %d rows: %d loaded, %d excluded by the mapping's conditions, %d rejected%s\n", res.Read, res.Loaded, res.Filtered, len(res.Rejected), resumed)
			printRejections(out, res.Rejected)
			rep, err := legacy.Compare(ctx, s.src, s.st, s.m, legacyMeter(s.logger))
			if err != nil {
				return err
			}
			return printReport(out, rep)
		},
	}
	f.add(cmd)
	addConfigFlags(cmd, with(storeFlags, "env", "log-level")...)
	cmd.Flags().IntVar(&batch, "batch", legacy.DefaultBatch, "root rows per bulk write (and per checkpoint)")
	cmd.Flags().BoolVar(&restart, "restart", false, "start from the first key, ignoring an interrupted load's checkpoint")
	cmd.Flags().BoolVar(&obfuscate, "obfuscate", false, "obfuscate every record on its way in (real data into staging)")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "file holding the obfuscation key, with --obfuscate")
	return cmd
}

func printRejections(out io.Writer, rej []legacy.Rejection) {
	for i, r := range rej {
		if i == 20 {
			fmt.Fprintf(out, "  … and %d more\n", len(rej)-20)
			break
		}
		fmt.Fprintf(out, "  rejected legacy key %s: %s\n", r.Key, r.Reason)
	}
}

// printReport prints the validation report; an unclean one is exit status 3.
func printReport(out io.Writer, rep legacy.Report) error {
	fmt.Fprintf(out, "validation: source %d records, target %d; %d missing, %d extra, %d different\n",
		rep.Source, rep.Target, len(rep.Missing), len(rep.Extra), len(rep.Differ))
	for _, l := range []struct {
		what string
		keys []string
	}{{"missing from the target", rep.Missing}, {"only in the target", rep.Extra}, {"different", rep.Differ}} {
		for i, k := range l.keys {
			if i == 20 {
				fmt.Fprintf(out, "  … and %d more %s\n", len(l.keys)-20, l.what)
				break
			}
			fmt.Fprintf(out, "  %s: %s\n", l.what, k)
		}
	}
	if !rep.Clean() {
		return exitCode(3)
	}
	fmt.Fprintln(out, "validation: clean (every record's hash matches)")
	return nil
}

// syncStatus is what a sync records in its checkpoint, for migrate status.
type syncStatus struct {
	At                        time.Time `json:"at"`
	Created, Updated, Deleted int
	Rejected                  int
	Seconds                   float64 `json:"seconds"`
}

func migrateSyncCommand() *cobra.Command {
	var f migrateFlags
	var every time.Duration
	var obfuscate bool
	var keyFile string
	cmd := &cobra.Command{
		Use:   "sync --mapping M [--every 1h]",
		Short: "Apply only the differences between source and target, each with its event and audit record",
		Long: `Compare per-record hashes of the source and the target and apply only the inserts,
updates and deletes, through the one write path: each change commits with its event
(sourceSystem: the legacy system) and its audit record. A run that finds no difference
writes nothing. --every repeats it until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := setupMigrate(cmd, &f, obfuscate, keyFile)
			if err != nil {
				return err
			}
			defer s.Close()
			w, err := plinth.NewWriter(cmd.Context(), plinth.WriterConfig{Store: s.st, Environment: s.cfg.Environment, Events: true, Audit: true})
			if err != nil {
				return err
			}
			for {
				err := runSync(cmd.Context(), cmd.OutOrStdout(), s, w)
				switch {
				case err != nil && every <= 0:
					return err
				case err != nil && cmd.Context().Err() == nil:
					// Repeating: a failed round (the source away for a
					// while) is logged and the next one tries again.
					s.logger.Error("sync failed; trying again at the next interval", "error", err.Error(), "every", every.String())
				case every <= 0:
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(every):
				}
			}
		},
	}
	f.add(cmd)
	addConfigFlags(cmd, with(storeFlags, "env", "log-level")...)
	cmd.Flags().DurationVar(&every, "every", 0, "repeat the sync at this interval (e.g. 1h) until interrupted")
	cmd.Flags().BoolVar(&obfuscate, "obfuscate", false, "obfuscate every record on its way in (real data into staging)")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "file holding the obfuscation key, with --obfuscate")
	return cmd
}

func runSync(ctx context.Context, out io.Writer, s *migrateSetup, w *plinth.Writer) error {
	start := time.Now()
	res, err := legacy.Sync(ctx, s.src, s.st, w, s.m, legacyMeter(s.logger))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s sync: %d created, %d updated, %d deleted, %d rejected (correlation id %s)\n",
		time.Now().UTC().Format(time.RFC3339), res.Created, res.Updated, res.Deleted, len(res.Rejected), res.CorrelationID)
	printRejections(out, res.Rejected)
	if res.Changes() > 0 {
		if err := recordProvenance(ctx, s.st, s.class, s.m, "sync"); err != nil {
			return err
		}
	}
	st, _ := json.Marshal(syncStatus{At: plinth.Now(), Created: res.Created, Updated: res.Updated, Deleted: res.Deleted,
		Rejected: len(res.Rejected), Seconds: time.Since(start).Seconds()})
	return s.st.SetCheckpoint(ctx, s.m.CheckpointName("sync"), st)
}

func migrateStatusCommand() *cobra.Command {
	var mapping string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status --mapping M",
		Short: "Show where a mapping's full load, sync and change capture (position, lag, backlog) stand in the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, ds, st, err := openConfigured(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			m, err := loadMapping(mapping)
			if err != nil {
				return err
			}
			if err := m.Resolve(ds); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			modes := map[string]json.RawMessage{}
			for _, mode := range []string{"full", "sync", "cdc"} {
				c, found, err := st.Checkpoint(cmd.Context(), m.CheckpointName(mode))
				if err != nil {
					return err
				}
				if found {
					modes[mode] = c.Value
				}
			}
			n, err := st.Count(cmd.Context(), m.Entity)
			if err != nil {
				return err
			}
			var backlog *legacy.CDCBacklog
			if c, found, err := st.Checkpoint(cmd.Context(), m.CheckpointName("cdc-backlog")); err != nil {
				return err
			} else if found && json.Unmarshal(c.Value, &backlog) != nil {
				backlog = nil
			}
			if asJSON {
				return json.NewEncoder(out).Encode(map[string]any{"system": m.System, "domain": m.Domain, "entity": m.Plural, "records": n, "modes": modes, "backlog": backlog})
			}
			fmt.Fprintf(out, "%s → %s/%s in %s (%s)\n", m.System, m.Domain, m.Plural, redactURL(cfg.StoreURL()), cfg.Environment)
			for _, mode := range []string{"full", "sync", "cdc"} {
				if modes[mode] == nil {
					fmt.Fprintf(out, "  %-5s never run\n", mode)
				} else {
					fmt.Fprintf(out, "  %-5s %s\n", mode, modes[mode])
				}
			}
			if backlog != nil && modes["cdc"] != nil {
				bytes := "unknown"
				if backlog.Bytes >= 0 {
					bytes = fmt.Sprint(backlog.Bytes)
				}
				fmt.Fprintf(out, "  behind %s bytes of the source's change log, %d changes received and not yet applied (as of %s)\n",
					bytes, backlog.Pending, backlog.At.Format(time.RFC3339))
			}
			fmt.Fprintf(out, "  records %d\n", n)
			return nil
		},
	}
	cmd.Flags().StringVar(&mapping, "mapping", "", "the mapping file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	addConfigFlags(cmd, with(storeFlags, "env")...)
	return cmd
}

func legacyCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "legacy", Short: "Tools for legacy sources: synthetic fixture databases"}
	cmd.AddCommand(legacyFixtureCommand(), legacyScaffoldCommand())
	return cmd
}

func legacyScaffoldCommand() *cobra.Command {
	var o legacy.ScaffoldOptions
	var sourceURL, out string
	cmd := &cobra.Command{
		Use:   "scaffold --source URL --table T [--children A,B] --out DIR",
		Short: "Draft a domain spec and a mapping from a legacy table's schema",
		Long: `Read a legacy table's schema (information_schema; no rows) and draft a domain spec and a
mapping file in DIR: columns become fields with types, the primary key the key, and each
table whose declared foreign key references the root an array of objects joined by that
key (only the --children tables, when given), with the tables referencing it nested in
its items. A source that declares no foreign keys gets
the tables with columns named like the root's key columns instead, with a TODO saying so.
Every PII class is set to personal and marked TODO for a person to decide; descriptions and
owner are TODO. The drafts are checked as plinth migrate check would before they are written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if sourceURL == "" || o.Table == "" || out == "" {
				return errors.New("give --source URL, --table T and --out DIR")
			}
			ctx := cmd.Context()
			src, err := legacy.Open(ctx, sourceURL)
			if err != nil {
				return err
			}
			defer src.Close()
			specYAML, mapYAML, err := legacy.Scaffold(ctx, src, o)
			if err != nil {
				return err
			}
			d, err := spec.Parse("draft spec", specYAML)
			if err != nil {
				return fmt.Errorf("the drafted spec does not load (please report it):\n%w", err)
			}
			m, err := legacy.Parse("draft mapping", mapYAML)
			if err == nil {
				if err = m.Resolve([]*plinth.Domain{d}); err == nil {
					err = legacy.Check(ctx, src, m)
				}
			}
			if err != nil {
				return fmt.Errorf("the drafted mapping does not check (please report it):\n%w", err)
			}
			specFile := filepath.Join(out, d.Name+".yaml")
			mapFile := filepath.Join(out, fmt.Sprintf("%s.%s.mapping.yaml", d.Name, strings.ToLower(strings.ReplaceAll(m.System, " ", "-"))))
			for _, f := range []string{specFile, mapFile} {
				if _, err := os.Stat(f); err == nil {
					return fmt.Errorf("%s exists; scaffold never overwrites", f)
				}
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(specFile, specYAML, 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(mapFile, mapYAML, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s; review every TODO before serving\n", specFile, mapFile)
			return nil
		},
	}
	cmd.Flags().StringVar(&sourceURL, "source", "", "the legacy database's URL (mariadb://, mysql://, postgres://, sqlserver://)")
	cmd.Flags().StringVar(&o.Table, "table", "", "the root table: one record per row")
	cmd.Flags().StringSliceVar(&o.Children, "children", nil, "child tables to draft as arrays of objects (default: every table with a foreign key to the root)")
	cmd.Flags().StringVar(&o.Domain, "domain", "", "the domain's name, kebab-case (default: from the table)")
	cmd.Flags().StringVar(&o.System, "system", "", "the legacy system's name (sourceSystem of events; default legacy)")
	cmd.Flags().StringVar(&o.Connection, "connection", "", "the environment variable the mapping will read the URL from (default PLINTH_LEGACY_<DOMAIN>)")
	cmd.Flags().StringVar(&out, "out", "", "folder to write the drafts to")
	return cmd
}

func legacyFixtureCommand() *cobra.Command {
	var opts legacy.FixtureOptions
	var into string
	var seed int64
	cmd := &cobra.Command{
		Use:   "fixture --system case --rows N --into URL",
		Short: "Create a synthetic legacy database (dummy data, with real ones' mess) in MariaDB or PostgreSQL",
		Long: `Create the tables of a legacy system (case: dm_persons, dm_addresses, dm_telephone_numbers;
benefits: hbclaim, hbhousehold, hbmember, ctaccount, ctproperty, ctoccupation; housing:
property, tenagree, member, CCContactLink, CCPhone, CCEmailAddress) in the database the URL names (mariadb://, mysql:// or postgres://; it must exist and be empty)
and fill them with dummy data that has the mess real ones have: nulls, padded and mixed-case
text, dates stored as text in several formats, historic addresses, duplicate phone numbers,
rows marked for deletion. The table plinth_dummy_data marks the database as dummy data, so
migrating it into development is allowed. --replace drops an earlier fixture's tables (only in
a database that carries that marker).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if into == "" {
				return errors.New("give the database to fill with --into URL")
			}
			src, err := legacy.Open(cmd.Context(), into)
			if err != nil {
				return err
			}
			defer src.Close()
			p := newProgress(int64(opts.Rows), "fixture "+opts.System, newLogger("info"))
			done := 0
			opts.Seed = uint64(seed)
			opts.Progress = func(n int) { p.Add(n - done); done = n }
			if err := legacy.Fixture(cmd.Context(), src, opts); err != nil {
				p.Stop()
				return err
			}
			p.Finish()
			fmt.Fprintf(cmd.OutOrStdout(), "made the %s system's tables with %d rows in %s\n", opts.System, opts.Rows, legacy.Redact(into))
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.System, "system", "case", "the legacy system: case, benefits or housing")
	cmd.Flags().IntVar(&opts.Rows, "rows", 1000, "how many root rows (persons)")
	cmd.Flags().StringVar(&into, "into", "", "URL of the database to fill")
	cmd.Flags().Int64Var(&seed, "seed", 1, "seed of the dummy data (the same seed makes the same data)")
	cmd.Flags().BoolVar(&opts.Replace, "replace", false, "drop an earlier fixture's tables first")
	return cmd
}
