package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
)

// obfuscateBatch is how many records are obfuscated and loaded at a time;
// each batch commits with the checkpoint a resumed run starts from.
const obfuscateBatch = 1000

// obfuscateAfterBatch, when set (by tests), is called after each batch
// commits.
var obfuscateAfterBatch func(entity string, batches int)

// obfuscateCheckpoint is what a run keeps per entity in the target store:
// the source key of the last record loaded, sealed with the obfuscation
// key (a natural key can be personal data), and whether the entity is done.
type obfuscateCheckpoint struct {
	Fingerprint string `json:"keyFingerprint"`
	LastKey     []byte `json:"lastKey,omitempty"` // sealed JSON of the source key
	Records     int64  `json:"records"`
	Complete    bool   `json:"complete,omitempty"`
}

func obfuscateCommand() *cobra.Command {
	var from, to, keyFile, special, nhsRange string
	var domainNames, specialFor []string
	var window int
	var restart bool
	cmd := &cobra.Command{
		Use:   "obfuscate",
		Short: "Copy a store into another with personal data pseudonymised (for staging)",
		Long: `Read every record of every entity of the source store, pseudonymise it by each
field's PII class and format, and bulk-load it into the target store:
none fields are copied; personal fields get keyed, deterministic pseudonyms
that keep their format (names from name lists, postcodes of a valid shape,
NHS numbers in the 999 test range with a valid check digit, NI numbers with
an administrative prefix never issued, Ofcom drama phone numbers, e-mail
addresses at example.org, dates shifted alike per record); identifiers
(natural keys, uuids, integers, UPRNs, NI and NHS numbers, legacy ids) map
one to one by format-preserving encryption (FF1), so references between
domains still join; generated keys are kept; special-category fields are
removed (--special keep-generalised keeps a coarse form).

The same key gives the same output in every run and row order; keep the key
file (32 random bytes or more: head -c 32 /dev/urandom > obfuscate.key)
secret, apart from the copies. An interrupted run resumes where it stopped;
--restart starts again. The target store records its provenance: obfuscated,
from which source, with which key fingerprint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if from == "" || to == "" || keyFile == "" {
				return fmt.Errorf("give --from (the source store URL), --to (the target store URL) and --key-file")
			}
			if from == to {
				return fmt.Errorf("--from and --to name the same store; obfuscate into another store")
			}
			key, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("reading the key file: %w", err)
			}
			if err := datasafety.CheckKey(key); err != nil {
				return fmt.Errorf("--key-file %s: %w", keyFile, err)
			}
			policy := datasafety.Policy{DateWindowDays: window, NHS: datasafety.NHSRange(nhsRange), SpecialByDomain: map[string]datasafety.SpecialPolicy{}}
			if policy.Special, err = specialPolicy(special); err != nil {
				return err
			}
			for _, s := range specialFor {
				d, p, ok := strings.Cut(s, "=")
				if !ok {
					return fmt.Errorf("--special-for %q: use domain=remove or domain=keep-generalised", s)
				}
				if policy.SpecialByDomain[d], err = specialPolicy(p); err != nil {
					return err
				}
			}
			if policy.NHS != datasafety.NHSTestRange && policy.NHS != datasafety.NHSFull {
				return fmt.Errorf("--nhs-range %q: use test or full", nhsRange)
			}
			ds, err := loadDomains(cfg.Domains)
			if err != nil {
				return err
			}
			if len(domainNames) > 0 {
				var keep []*plinth.Domain
				for _, n := range domainNames {
					i := slices.IndexFunc(ds, func(d *plinth.Domain) bool { return d.Name == n })
					if i < 0 {
						return fmt.Errorf("--domain %s: no such domain in the specs", n)
					}
					keep = append(keep, ds[i])
				}
				ds = keep
			}
			return runObfuscate(cmd.Context(), cmd.OutOrStdout(), obfuscateRun{
				from: from, to: to, domains: ds, obf: datasafety.NewObfuscator(key, policy).SetDomains(ds),
				restart: restart, logger: newLogger(cfg.LogLevel),
			})
		},
	}
	addConfigFlags(cmd, "domains", "log-level")
	fl := cmd.Flags()
	fl.StringVar(&from, "from", "", "source store URL (sqlite:///path.db or postgres://…)")
	fl.StringVar(&to, "to", "", "target store URL")
	fl.StringVar(&keyFile, "key-file", "", "file holding the obfuscation key: at least 32 random bytes")
	fl.StringSliceVar(&domainNames, "domain", nil, "only this domain (repeatable; default every domain in the specs)")
	fl.StringVar(&special, "special", "remove", "special-category fields: remove or keep-generalised")
	fl.StringSliceVar(&specialFor, "special-for", nil, "the special-category policy of one domain: domain=remove|keep-generalised (repeatable)")
	fl.IntVar(&window, "date-window", 180, "personal dates shift by up to this many days, alike within a record")
	fl.StringVar(&nhsRange, "nhs-range", "test", "NHS numbers: test (always in the 999 test range) or full (one to one over every valid number; may produce issued numbers)")
	fl.BoolVar(&restart, "restart", false, "ignore the checkpoints of an earlier run and copy everything again")
	return cmd
}

func specialPolicy(s string) (datasafety.SpecialPolicy, error) {
	switch p := datasafety.SpecialPolicy(s); p {
	case datasafety.SpecialRemove, datasafety.SpecialGeneralise:
		return p, nil
	}
	return "", fmt.Errorf("special-category policy %q: use remove or keep-generalised", s)
}

type obfuscateRun struct {
	from, to string
	domains  []*plinth.Domain
	obf      *datasafety.Obfuscator
	restart  bool
	logger   *slog.Logger
}

type entityReport struct {
	entity  string
	records int64
	skipped int64
	counts  datasafety.Counts
	resumed bool
}

func runObfuscate(ctx context.Context, out io.Writer, r obfuscateRun) error {
	src, err := openStore(ctx, r.from, r.domains)
	if err != nil {
		return fmt.Errorf("the source store: %w", err)
	}
	defer src.Close()
	dst, err := openStore(ctx, r.to, r.domains)
	if err != nil {
		return fmt.Errorf("the target store: %w", err)
	}
	defer dst.Close()
	prov := plinth.Provenance{
		Class:  plinth.ClassObfuscated,
		Source: "obfuscate",
		Detail: redactURL(r.from) + " key " + r.obf.Fingerprint(),
	}
	// Marked before the first record lands, so an interrupted copy is
	// never taken for anything else.
	prov.At = time.Now().UTC()
	if err := plinth.SetStoreProvenance(ctx, dst, prov); err != nil {
		return fmt.Errorf("recording the target's provenance: %w", err)
	}
	var reports []entityReport
	for _, d := range r.domains {
		for _, e := range d.Entities {
			rep, err := obfuscateEntity(ctx, src, dst, e, r)
			if err != nil {
				return err
			}
			reports = append(reports, rep)
		}
	}
	prov.At = time.Now().UTC()
	if err := plinth.SetStoreProvenance(ctx, dst, prov); err != nil {
		return fmt.Errorf("recording the target's provenance: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "entity\trecords\tnone copied\tpersonal pseudonymised\tpersonal kept\tspecial removed\tspecial generalised\t")
	for _, rep := range reports {
		name := rep.entity
		if rep.resumed {
			name += " (resumed)"
		}
		c := rep.counts
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", name, rep.records, c.Copied, c.Pseudonymised, c.Kept, c.Removed, c.Generalised)
	}
	tw.Flush()
	fmt.Fprintf(out, "target %s: %s data from %s\n", redactURL(r.to), prov.Class, prov.Detail)
	return nil
}

// obfuscateEntity copies one entity: scan the source in key order, skip up
// to the checkpoint, obfuscate batches on every core, load them in order
// with the checkpoint in the same call.
func obfuscateEntity(ctx context.Context, src, dst plinth.Store, e *plinth.Entity, r obfuscateRun) (rep entityReport, err error) {
	name := e.Domain.Name + "." + e.Plural
	rep.entity = name
	cpName := "plinth.obfuscate." + name
	var cp obfuscateCheckpoint
	var after any // the source key to resume after
	if !r.restart {
		c, found, err := dst.Checkpoint(ctx, cpName)
		if err != nil {
			return rep, err
		}
		if found {
			if err := json.Unmarshal(c.Value, &cp); err != nil {
				return rep, fmt.Errorf("%s: the checkpoint of an earlier run does not decode (run with --restart): %w", name, err)
			}
			if cp.Fingerprint != r.obf.Fingerprint() {
				return rep, fmt.Errorf("%s: the target was filled with another key (%s, not %s); use that key, or an empty target store", name, cp.Fingerprint, r.obf.Fingerprint())
			}
			if cp.Complete {
				rep.records, rep.resumed = cp.Records, true
				r.logger.Info("already obfuscated by an earlier run", "entity", name, "records", cp.Records)
				return rep, nil
			}
			if cp.LastKey != nil {
				b, err := r.obf.Open(cp.LastKey)
				if err != nil {
					return rep, fmt.Errorf("%s: checkpoint: %w", name, err)
				}
				var k any
				if err := json.Unmarshal(b, &k); err != nil {
					return rep, err
				}
				if n, ok := k.(float64); ok {
					k = int64(n)
				}
				after, rep.resumed = k, true
			}
		}
	}
	if !rep.resumed {
		cp = obfuscateCheckpoint{Fingerprint: r.obf.Fingerprint()}
	}
	total, err := src.Count(ctx, e)
	if err != nil {
		return rep, err
	}
	before := r.obf.Counts()
	p := newProgress(total, "obfuscating "+name, r.logger)
	if cp.Records > 0 {
		p.Add(int(min(cp.Records, total)))
	}
	defer func() {
		if err != nil {
			p.Stop()
		}
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		data    []map[string]any
		lastKey any
		err     error
	}
	type job struct {
		raw []map[string]any
		res chan result
	}
	workers := max(runtime.GOMAXPROCS(0), 1)
	jobs := make(chan job)
	order := make(chan chan result, 2*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				res := result{lastKey: j.raw[len(j.raw)-1][e.Key.Name]}
				res.data = make([]map[string]any, 0, len(j.raw))
				for _, d := range j.raw {
					o, err := r.obf.Record(e, d)
					if err != nil {
						res.err = err
						break
					}
					res.data = append(res.data, o)
				}
				j.res <- res
			}
		}()
	}
	scanErr := make(chan error, 1)
	go func() {
		defer close(order)
		defer close(jobs)
		var batch []map[string]any
		send := func() error {
			fut := make(chan result, 1)
			select {
			case order <- fut:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case jobs <- job{raw: batch, res: fut}:
			case <-ctx.Done():
				return ctx.Err()
			}
			batch = nil
			return nil
		}
		_, err := src.Scan(ctx, e, plinth.ScanQuery{}, func(rec plinth.Record) error {
			if after != nil && !keyAfter(rec.Data[e.Key.Name], after) {
				return nil
			}
			batch = append(batch, rec.Data)
			if len(batch) == obfuscateBatch {
				return send()
			}
			return nil
		})
		if err == nil && len(batch) > 0 {
			err = send()
		}
		scanErr <- err
	}()

	batches := 0
	var loadErr error
	for fut := range order {
		var res result
		select {
		case res = <-fut:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			loadErr = ctx.Err()
			break
		}
		if res.err != nil {
			loadErr = res.err
			break
		}
		k, _ := json.Marshal(res.lastKey)
		cp.LastKey = r.obf.Seal(k)
		cp.Records += int64(len(res.data))
		v, _ := json.Marshal(cp)
		br, err := dst.BulkLoad(ctx, e, res.data, plinth.BulkOptions{OnConflict: plinth.ConflictSkip, Checkpoint: plinth.Checkpoint{Name: cpName, Value: v}})
		if err != nil {
			loadErr = fmt.Errorf("loading %s: %w", name, err)
			break
		}
		rep.records += int64(len(res.data))
		rep.skipped += int64(br.Skipped)
		p.Add(len(res.data))
		batches++
		if obfuscateAfterBatch != nil {
			obfuscateAfterBatch(name, batches)
		}
	}
	cancel()
	for range order { // let the scanner finish
	}
	wg.Wait()
	serr := <-scanErr
	if loadErr != nil {
		return rep, loadErr
	}
	if serr != nil && !errors.Is(serr, context.Canceled) {
		return rep, fmt.Errorf("reading %s: %w", name, serr)
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return rep, err
	}
	cp.Complete = true
	v, _ := json.Marshal(cp)
	if err := dst.SetCheckpoint(context.WithoutCancel(ctx), cpName, v); err != nil {
		return rep, err
	}
	rep.records = cp.Records
	rep.counts = r.obf.Counts().Sub(before)
	p.Finish("entity", name, "skippedAsPresent", rep.skipped)
	return rep, nil
}

// keyAfter reports whether key k sorts after key a in the store's key
// order: numerically for integer keys, by bytes for string and uuid keys.
func keyAfter(k, a any) bool {
	switch x := k.(type) {
	case int64:
		y, ok := a.(int64)
		return !ok || x > y
	case string:
		y, ok := a.(string)
		return !ok || x > y
	}
	return true
}
