package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
)

// openAudit opens the configured store for the audit commands.
func openAudit(cmd *cobra.Command) (Config, plinth.Store, plinth.AuditStore, error) {
	cfg, _, st, err := openConfigured(cmd)
	if err != nil {
		return cfg, nil, nil, err
	}
	as, ok := st.(plinth.AuditStore)
	if !ok {
		st.Close()
		return cfg, nil, nil, fmt.Errorf("the store does not keep an audit trail")
	}
	return cfg, st, as, nil
}

func auditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify, search and anchor the audit trail",
		Long: `Every request that touches data or access, allowed or denied, leaves one
audit record in the store. The records form a hash chain: each carries the
SHA-256 hash of the one before, so an edited, deleted, inserted or reordered
record is detected by "plinth audit verify".

The chain cannot show on its own that the newest records were removed, or
that someone with write access to the store rewrote it from some record on:
the hash has no secret. Anchor the head to catch both: run "plinth audit head"
regularly and keep its output somewhere the store's administrators cannot
change (the event bus, a central log); later, "plinth audit verify
--expect-head SEQ:HASH" checks that record is still in the chain unchanged.

A record is first written unchained (no sequence number or hash yet), so
that concurrent requests do not wait for each other; the chainer that runs
in plinth serve links it into the chain within tens of milliseconds. verify
and head say how many records are not yet chained; "plinth audit chain"
chains them when no plinth serve is running.`,
	}
	cmd.AddCommand(auditVerifyCommand(), auditSearchCommand(), auditHeadCommand(), auditChainCommand())
	return cmd
}

func auditVerifyCommand() *cobra.Command {
	var heads []string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Walk the audit chain and report the first broken link",
		Long: `Walk the audit chain from the first record to the newest and check every
link (records archived to the lake by plinth lake audit first, then the
store's): each record's hash matches its content, sequence numbers follow on
with no gaps, and each record carries the hash of the one before. Prints
"audit chain intact" with the head, or the first broken link.

--expect-head SEQ:HASH (repeatable) checks that a head anchored earlier with
"plinth audit head" is still in the chain with that hash, which catches
truncation and a rewrite of the chain up to that record.

When plinth.yaml's stores: map puts domains on other stores, each store
keeps the audit records of the writes made in it in a chain of its own:
every chain is verified, each line names its store (by its domains), and
STORE=SEQ:HASH anchors another store's chain.

Exit status 0: the chain is intact; 2: it is broken; 1: it could not be read.`,
		Example: `  plinth audit verify
  plinth audit verify --expect-head 1042:5f1c…`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var anchors []audit.Anchor
			for _, h := range heads {
				a, err := audit.ParseAnchor(h)
				if err != nil {
					return fmt.Errorf("--expect-head: %w", err)
				}
				anchors = append(anchors, a)
			}
			cfg, st, as, err := openAudit(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			logger := newLogger(cfg.LogLevel)
			chains := audit.Chains(as)
			// The heads' sequences are the number of records to expect.
			total, err := trailHeads(cmd.Context(), chains)
			if err != nil {
				return err
			}
			var p *progress
			var onProgress func(int64)
			if total > 0 {
				p = newProgress(total, "verifying the audit chain", logger)
				var reported int64
				onProgress = func(done int64) {
					p.Add(int(done - reported))
					reported = done
				}
			}
			archive, err := auditArchive(cmd, cfg)
			if err != nil {
				return err
			}
			reps, err := audit.VerifyTrail(cmd.Context(), chains, archive, onProgress, anchors...)
			if err != nil {
				return err
			}
			broken := false
			for _, r := range reps {
				broken = broken || r.Broken != nil
			}
			if p != nil {
				p.Finish("intact", !broken)
			}
			for _, r := range reps {
				printVerified(cmd.OutOrStdout(), r, len(reps) > 1, anchors)
			}
			if broken {
				return exitCode(2)
			}
			return nil
		},
	}
	addConfigFlags(cmd, with(storeFlags, "log-level", "lake", "lake-s3-endpoint")...)
	cmd.Flags().StringArrayVar(&heads, "expect-head", nil, "SEQ:HASH of an anchored head that must still be in the chain (repeatable)")
	return cmd
}

func auditSearchCommand() *cobra.Command {
	var q plinth.AuditQuery
	var since, until string
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "search",
		Short: "Find audit records by user, record id, domain and time",
		Long: `Print the audit records that match every filter given, oldest first: who
did what, to which records, when, and whether it was allowed. Records
archived to the lake (plinth lake audit) are searched too.

--user matches the subject, e-mail address or service-token consumer;
--entity-id matches a record among those a request returned or changed,
and also lists the reports (Reporting API) of the record's entity that may
have included it: those without filters, or whose filters the record meets
now, marked "report that may include".
--since (inclusive) and --until (exclusive) take an RFC 3339 time, a date
(2026-11-01, midnight UTC) or a duration back from now (720h).

When plinth.yaml's stores: map puts domains on other stores, the records
of every store's chain are searched, merged by time, and a STORE column
(the store's domains; "default" for the default store) says where each is.

Records hold the filter values of each request, which may be personal data:
treat the output as you would the data itself.`,
		Example: `  # Who looked at resident 12345 this month?
  plinth audit search --entity-id 12345 --since 2026-11-01

  plinth audit search --user ann.lee@example.gov.uk --since 720h --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			var err error
			if since != "" {
				if q.Since, err = audit.ParseTime(since, now); err != nil {
					return fmt.Errorf("--since: %w", err)
				}
			}
			if until != "" {
				if q.Until, err = audit.ParseTime(until, now); err != nil {
					return fmt.Errorf("--until: %w", err)
				}
			}
			if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
				return fmt.Errorf("--until %s is not after --since %s", q.Until.Format(time.RFC3339), q.Since.Format(time.RFC3339))
			}
			if limit < 0 {
				return fmt.Errorf("--limit %d: must be 0 (no limit) or more", limit)
			}
			cfg, st, as, err := openAudit(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			chains := audit.Chains(as)
			many := len(chains) > 1
			var reports []audit.TrailRecord
			if q.EntityID != "" {
				ds, err := loadDomains(cfg.Domains)
				if err != nil {
					return err
				}
				if reports, err = reportsThatMayInclude(cmd.Context(), st, chains, ds, q); err != nil {
					return err
				}
			}

			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			enc.SetEscapeHTML(false)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(tw, map[bool]string{true: "STORE\t"}[many]+"SEQ\tTIME\tUSER\tOPERATION\tROUTE\tDECISION\tSTATUS\tRECORDS")
			}
			q.Limit = plinth.MaxLimit
			if limit > 0 && limit < q.Limit {
				q.Limit = limit
			}
			n := 0
			show := func(r audit.TrailRecord, viaReport bool) error {
				if limit > 0 && n >= limit {
					return errEnough
				}
				n++
				if asJSON {
					return enc.Encode(struct {
						audit.TrailRecord
						ReportMayInclude bool `json:"reportMayInclude,omitempty"`
					}{r, viaReport})
				}
				records := auditRecords(r.AuditRecord)
				if viaReport {
					records = "report that may include " + q.EntityID
				}
				if many {
					fmt.Fprintf(tw, "%s\t", r.Chain)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.Sequence, r.Time.UTC().Format(time.RFC3339),
					auditUser(r.Principal), r.Operation, auditRoute(r.AuditRecord), r.Decision, r.Status, records)
				return nil
			}
			archive, err := auditArchive(cmd, cfg)
			if err != nil {
				return err
			}
			err = audit.SearchTrailWithArchive(cmd.Context(), chains, archive, q, func(r audit.TrailRecord) error {
				// Reports that may include the record, merged in time order.
				for len(reports) > 0 && trailOrder(reports[0], r) < 0 {
					if err := show(reports[0], true); err != nil {
						return err
					}
					reports = reports[1:]
				}
				return show(r, false)
			})
			for err == nil && len(reports) > 0 {
				err = show(reports[0], true)
				reports = reports[1:]
			}
			if err != nil && !errors.Is(err, errEnough) {
				return err
			}
			if !asJSON {
				if err := tw.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d %s\n", n, map[bool]string{true: "record", false: "records"}[n == 1])
			}
			return nil
		},
	}
	addConfigFlags(cmd, with(storeFlags, "lake", "lake-s3-endpoint")...)
	f := cmd.Flags()
	f.StringVar(&q.User, "user", "", "subject, e-mail address or service-token consumer")
	f.StringVar(&q.EntityID, "entity-id", "", "id of a record the requests returned or changed")
	f.StringVar(&q.Domain, "domain", "", "domain, such as residents")
	f.StringVar(&since, "since", "", "from this time on (inclusive): RFC 3339, a date such as 2026-11-01, or a duration back from now such as 720h")
	f.StringVar(&until, "until", "", "before this time (exclusive): RFC 3339, a date, or a duration back from now")
	f.IntVar(&limit, "limit", 0, "print at most this many records (0: all)")
	f.BoolVar(&asJSON, "json", false, "print each record as a line of JSON, with every field")
	return cmd
}

// errEnough ends a search once --limit records are printed.
var errEnough = errors.New("enough records")

// auditUser names who a record is about: the e-mail address or subject of a
// user, "service:<consumer>" for a service token, "-" when there was no
// valid token.
func auditUser(p plinth.Principal) string {
	switch {
	case p.IsService():
		return "service:" + p.Consumer
	case p.Email != "":
		return p.Email
	case p.Subject != "":
		return p.Subject
	}
	return "-"
}

// auditRoute is the method and route template of a record.
func auditRoute(r plinth.AuditRecord) string {
	s := strings.TrimSpace(r.Method + " " + r.Route)
	if s == "" {
		return "-"
	}
	return s
}

// maxShownIDs is how many record ids a table row shows.
const maxShownIDs = 5

// auditRecords is the count of records a request touched with their ids,
// the first few of them.
func auditRecords(r plinth.AuditRecord) string {
	if len(r.RecordIDs) == 0 {
		return strconv.Itoa(r.Count)
	}
	ids := r.RecordIDs
	more := ""
	if len(ids) > maxShownIDs {
		ids, more = ids[:maxShownIDs], ",…"
	}
	return fmt.Sprintf("%d: %s%s", max(r.Count, len(r.RecordIDs)), strings.Join(ids, ","), more)
}

func auditHeadCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "head",
		Short: "Print the newest record of the audit chain as SEQ:HASH, for anchoring",
		Long: `Print the sequence number and hash of the newest audit record as SEQ:HASH.
Run it regularly (from cron, or after deploys) and keep the output somewhere
the store's administrators cannot change, such as the event bus or a central
log. "plinth audit verify --expect-head SEQ:HASH" later proves the chain
still holds that record unchanged: nothing up to it was rewritten or cut off.

When plinth.yaml's stores: map puts domains on other stores, each keeps a
chain of its own: the default store's head is printed as SEQ:HASH, each
other's as STORE=SEQ:HASH (STORE: its domains), one a line; verify
--expect-head takes either form.`,
		Example: `  plinth audit head | logger -t plinth-audit-head`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, st, as, err := openAudit(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			printed := 0
			for _, c := range audit.Chains(as) {
				head, ok, err := audit.Head(cmd.Context(), c.Store)
				if err != nil {
					return err
				}
				// The count goes to standard error, so the output stays SEQ:HASH.
				if n, err := c.Store.CountUnchainedAudit(cmd.Context()); err != nil {
					return err
				} else if n > 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "%d %s of store %s not yet chained, so not covered by this head\n",
						n, map[bool]string{true: "record", false: "records"}[n == 1], c.Name)
				}
				if ok {
					head.Chain = c.Name
					fmt.Fprintln(cmd.OutOrStdout(), head.String())
					printed++
				}
			}
			if printed == 0 {
				return fmt.Errorf("the audit chain is empty: there is no head to anchor yet")
			}
			return nil
		},
	}
	addConfigFlags(cmd, storeFlags...)
	return cmd
}

func auditChainCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chain",
		Short: "Link audit records not yet chained into the chain",
		Long: `Audit records are written unchained and linked into the hash chain by the
chainer that runs in plinth serve, within tens of milliseconds. This command
does the same once, for a store no plinth serve is running against (after a
shutdown, or behind an API run as a Lambda function). When a running chainer
holds the chain lease it does nothing: that chainer links the records.
Records of transactions still open are left for later.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, st, as, err := openAudit(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			chains := audit.Chains(as)
			n, err := audit.ChainPendingTrail(cmd.Context(), chains)
			if errors.Is(err, audit.ErrChainerActive) {
				fmt.Fprintln(cmd.OutOrStdout(), "a running chainer holds the chain lease; it links the records")
				return nil
			}
			if err != nil {
				return err
			}
			var left int64
			for _, c := range chains {
				k, err := c.Store.CountUnchainedAudit(cmd.Context())
				if err != nil {
					return err
				}
				left += k
			}
			fmt.Fprintf(cmd.OutOrStdout(), "chained %d records; %d not yet chained\n", n, left)
			return nil
		},
	}
	addConfigFlags(cmd, storeFlags...)
	return cmd
}

// reportsThatMayInclude returns, in time order, the audit records of
// reports that may have included the record with id q.EntityID: for each
// entity that has such a record, its reports without filters or with
// filters the record meets now, from every audit chain.
func reportsThatMayInclude(ctx context.Context, st plinth.Store, chains []audit.Chain, ds []*plinth.Domain, q plinth.AuditQuery) ([]audit.TrailRecord, error) {
	var out []audit.TrailRecord
	for _, d := range ds {
		if q.Domain != "" && q.Domain != d.Name {
			continue
		}
		for _, e := range d.Entities {
			id, err := e.ParseKey(q.EntityID)
			if err != nil {
				continue
			}
			rec, err := st.Get(ctx, e, id)
			if errors.Is(err, plinth.ErrNotFound) {
				continue
			} else if err != nil {
				return nil, err
			}
			rq := q
			rq.EntityID, rq.Domain = "", d.Name
			err = audit.SearchTrailAll(ctx, chains, rq, func(r audit.TrailRecord) error {
				if audit.ReportMayInclude(e, r.AuditRecord, rec.Data) {
					out = append(out, r)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	slices.SortStableFunc(out, trailOrder)
	return out, nil
}

// trailOrder orders records as the merged trail does: by sequence within a
// chain, by time across chains.
func trailOrder(a, b audit.TrailRecord) int {
	if a.Chain == b.Chain {
		return cmp.Compare(a.Sequence, b.Sequence)
	}
	return a.Time.Compare(b.Time)
}

// trailHeads returns the sum of the chains' head sequences: about how many
// records verify walks.
func trailHeads(ctx context.Context, chains []audit.Chain) (int64, error) {
	var total int64
	for _, c := range chains {
		head, _, err := audit.Head(ctx, c.Store)
		if err != nil {
			return 0, err
		}
		total += head.Sequence
	}
	return total, nil
}

// printVerified prints one chain's verification; named when there are
// several chains.
func printVerified(out io.Writer, r audit.ChainReport, named bool, anchors []audit.Anchor) {
	of := ""
	if named {
		of = " of store " + r.Chain
	}
	head := func() string {
		return audit.Anchor{Chain: r.Chain, Sequence: r.HeadSequence, Hash: r.HeadHash}.String()
	}
	if r.Broken != nil {
		fmt.Fprintf(out, "audit chain%s BROKEN at record %d: %s\n", of, r.Broken.Sequence, r.Broken.Problem)
		if r.Records > 0 {
			fmt.Fprintf(out, "(%d records, head %s; %d not yet chained)\n", r.Records, head(), r.Unchained)
		}
		return
	}
	if r.Records == 0 {
		fmt.Fprintf(out, "audit chain%s intact: it is empty\n", of)
	} else {
		fmt.Fprintf(out, "audit chain%s intact: %d records, head %s\n", of, r.Records, head())
		for _, a := range anchors {
			if a.ChainName() == r.Chain {
				fmt.Fprintf(out, "anchored record %d found with its hash\n", a.Sequence)
			}
		}
	}
	if r.Unchained > 0 {
		fmt.Fprintf(out, "%d %s%s not yet chained (the chainer of plinth serve, or plinth audit chain, links them)\n",
			r.Unchained, map[bool]string{true: "record", false: "records"}[r.Unchained == 1], of)
	}
}
