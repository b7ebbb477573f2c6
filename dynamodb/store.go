// Package dynamodb is a plinth.Store on Amazon DynamoDB (through
// aws-sdk-go-v2), selected by dynamodb://<region>[?endpoint=…&prefix=…].
//
// Table design (README "DynamoDB store" and docs/store-contract.md say why):
//
//   - One table per entity, {prefix}{domain}.{plural}. Partition key "sh"
//     (S): the record's shard, a hash of its key modulo the store's shard
//     count (4 unless ?shards= says otherwise); sort key "k" (S): the
//     record key in a form that sorts as the key does (integers as
//     zero-padded offset decimals, strings and UUIDs as they are). A view
//     is one GetItem, since the shard is computed from the key. A list in
//     key order merges one Query per shard. The record itself is the JSON
//     of its data in "d", with "v" (version), "ca"/"ua" (created and
//     updated, fixed-width UTC text) and "cs" (the change number of the
//     write that last changed it).
//   - Exact filters on top-level fields: a global secondary index per
//     filter, x_{param} (hash: the value as text, range: k). Prefix
//     filters: two indexes per filter on the folded value's first rune
//     (p1_{param}) and first three runes (p3_{param}), range k. Both give
//     the matching records in key order; the rest of a prefix is checked
//     on the record.
//   - Filters that reach into arrays of objects: index items in the same
//     table, partition "ix|{param}|{value}" (exact) or "ix1|…"/"ix3|…"
//     (prefix buckets), sort key k, written in the record's transaction.
//   - A "ua" index (hash sh, range ua) answers LastUpdated.
//   - One system table per store, {prefix}plinth (pk, sk), holds in-flight
//     writes, checkpoints, tombstones, outbox, audit log and chain, access
//     grants and policies, leases and key counters.
//
// Every write is one TransactWriteItems (at most 100 items). It stamps a
// change number from its process's clock (no counter item: writes to
// different records share no item), and is registered as in flight until
// it commits; the highest number below every write in flight (the bound)
// is a scan's watermark and how far the relay and the audit chainer read
// (sys.go, docs/store-contract.md).
package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/logging"

	"github.com/plinth-data/plinth"
)

// DefaultShards is how many partitions an entity's records are spread over
// when the URL does not say.
const DefaultShards = 4

// DefaultClockSkew is how far the clocks of the processes writing to one
// store may disagree, when the URL does not say, with the relay, the audit
// chainer and scan watermarks still exact (sys.go). Hosts on AWS keep
// within a millisecond of Amazon Time Sync, NTP within tens of
// milliseconds. Readers of the bound wait this long.
const DefaultClockSkew = 100 * time.Millisecond

// Options configure a Store.
type Options struct {
	Region   string
	Endpoint string // empty for AWS itself
	Prefix   string // table name prefix
	Shards   int
	// ScanPrefetch makes a scan without an index (the Reporting API's
	// full extract) read every shard concurrently, a page ahead of the
	// merge (?scan_prefetch=true; docs/store-contract.md, "DynamoDB").
	ScanPrefetch bool
	// ClockSkew is how far writers' clocks may disagree (?clock_skew=;
	// DefaultClockSkew; 0 for a store only one process writes to).
	ClockSkew time.Duration
	// Check, when true, makes Prepare verify that the tables exist and
	// match instead of creating them (staging and production).
	Check bool
}

// ParseURL reads dynamodb://<region>[?endpoint=…&prefix=…&shards=…&scan_prefetch=…&clock_skew=…].
func ParseURL(raw string) (Options, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "dynamodb" {
		return Options{}, fmt.Errorf("store %q: use dynamodb://<region>[?endpoint=http://host:port&prefix=name-]", raw)
	}
	o := Options{Region: u.Host, Shards: DefaultShards, ClockSkew: DefaultClockSkew}
	if o.Region == "" {
		return Options{}, fmt.Errorf("store %q: name the AWS region, such as dynamodb://eu-west-2", raw)
	}
	for name, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch name {
		case "endpoint":
			o.Endpoint = v
		case "prefix":
			o.Prefix = v
		case "shards":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 64 {
				return Options{}, fmt.Errorf("store %q: shards must be an integer from 1 to 64", raw)
			}
			o.Shards = n
		case "clock_skew":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > 10*time.Second {
				return Options{}, fmt.Errorf("store %q: clock_skew must be a duration from 0s to 10s, such as 100ms", raw)
			}
			o.ClockSkew = d
		case "scan_prefetch":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Options{}, fmt.Errorf("store %q: scan_prefetch must be true or false", raw)
			}
			o.ScanPrefetch = b
		default:
			return Options{}, fmt.Errorf("store %q: unknown parameter %q (endpoint, prefix, shards, scan_prefetch, clock_skew)", raw, name)
		}
	}
	for _, r := range o.Prefix {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.-", r)) {
			return Options{}, fmt.Errorf("store %q: the prefix may hold letters, digits, '_', '.' and '-' only", raw)
		}
	}
	return o, nil
}

// Store is a plinth.Store on DynamoDB. It is safe for concurrent use.
type Store struct {
	db      *ddb.Client
	opts    Options
	sys     string   // the system table's name
	layouts sync.Map // domain + "/" + plural → *layout
	domains atomic.Pointer[[]*plinth.Domain]
	calls   callCounter
	// clock is the last change number the process handed out (tick).
	clock atomic.Int64
	// known is the highest bound this process took: still a bound, as
	// nothing at or below it can commit any more (readLanes).
	known  atomic.Int64
	bounds atomic.Int64 // how many bounds it took (tests)
	// legacy: the store was written before lanes (sys.go, findLegacy).
	legacy atomic.Bool
	// offset is added to the wall clock, in microseconds: tests play a
	// host whose clock is behind.
	offset int64
}

var (
	_ plinth.Store        = (*Store)(nil)
	_ plinth.OutboxStore  = (*Store)(nil)
	_ plinth.AuditStore   = (*Store)(nil)
	_ plinth.AccessStore  = (*Store)(nil)
	_ plinth.AuditTrimmer = (*Store)(nil)
)

// Options returns the options the store was opened with.
func (s *Store) Options() Options { return s.opts }

// Open connects to DynamoDB as the URL says. It creates nothing: Prepare does.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	o, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return OpenOptions(ctx, o)
}

// OpenOptions is Open with parsed options.
func OpenOptions(ctx context.Context, o Options) (*Store, error) {
	if o.Shards == 0 {
		o.Shards = DefaultShards
	}
	loaders := []func(*config.LoadOptions) error{config.WithRegion(o.Region)}
	if o.Endpoint != "" && os.Getenv("AWS_ACCESS_KEY_ID") == "" {
		// An emulator (minidyn, DynamoDB Local) takes any signed request.
		loaders = append(loaders, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("local", "local", "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loaders...)
	if err != nil {
		return nil, fmt.Errorf("dynamodb: %w", err)
	}
	s := &Store{opts: o, sys: o.Prefix + "plinth"}
	s.db = ddb.NewFromConfig(cfg, func(c *ddb.Options) {
		if o.Endpoint != "" {
			c.BaseEndpoint = aws.String(o.Endpoint)
			// minidyn sends no CRC32 of its bodies, and closes
			// connections the SDK would warn about on every call.
			c.DisableValidateResponseChecksum = true
			c.Logger = logging.Nop{}
		}
		c.APIOptions = append(c.APIOptions, s.calls.middleware)
	})
	return s, nil
}

// Client returns the DynamoDB client, for tools and tests.
func (s *Store) Client() *ddb.Client { return s.db }

// Calls returns how many times each DynamoDB operation was called, and the
// capacity units they consumed (see ConsumedCapacity).
func (s *Store) Calls() map[string]Usage { return s.calls.snapshot() }

// Ping checks that DynamoDB answers and the system table exists.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.db.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(s.sys)})
	return wrap(err, "ping")
}

// Close releases nothing: the client holds no connections that need it.
func (s *Store) Close() error { return nil }

// layout finds the storage of an entity by its domain and plural: the
// entities a caller passes need not be the pointers given to Prepare.
func (s *Store) layout(e *plinth.Entity) (*layout, error) {
	if e.Domain == nil {
		return nil, fmt.Errorf("dynamodb: entity %s has no domain", e.Name)
	}
	if l, ok := s.layouts.Load(e.Domain.Name + "/" + e.Plural); ok {
		return l.(*layout), nil
	}
	return nil, fmt.Errorf("dynamodb: entity %s/%s was not prepared", e.Domain.Name, e.Plural)
}

// wrap turns SDK errors into Plinth's: unreachable or throttled is
// ErrUnavailable.
func wrap(err error, what string) error {
	if err == nil {
		return nil
	}
	var rnf *types.ResourceNotFoundException
	var thr *types.ProvisionedThroughputExceededException
	var lim *types.RequestLimitExceeded
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.As(err, &rnf):
		return fmt.Errorf("dynamodb: %s: %w (run plinth schema apply)", what, err)
	case errors.As(err, &thr), errors.As(err, &lim):
		return fmt.Errorf("dynamodb: %s: %w: %w", what, plinth.ErrUnavailable, err)
	}
	var oe interface{ Timeout() bool }
	if errors.As(err, &oe) && oe.Timeout() || strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("dynamodb: %s: %w: %w", what, plinth.ErrUnavailable, err)
	}
	return fmt.Errorf("dynamodb: %s: %w", what, err)
}
