// Package storemux serves domains from several stores as one plinth.Store:
// plinth.yaml's stores: map (contacts on DynamoDB, the rest on PostgreSQL).
//
// Every entity method goes to the store of the entity's domain. A Write
// binds to the store of the first thing it touches and refuses a record of
// a domain on another store: a write changes one store, so its record, its
// event and its audit record still commit in one transaction. Grants,
// policies, the read auditor's records and the server's checkpoints live in
// the default store; each store keeps the outbox and audit log of the
// writes made in it, with a relay and a chainer of its own (Others lists
// them), so each store has its own audit chain; AuditChains lists them
// for audit search and verify, which span every chain.
package storemux

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
)

// Store is the default store with the other stores of some domains.
type Store interface {
	plinth.Store
	plinth.AccessStore
	plinth.AuditStore
	plinth.OutboxStore
}

// Mux routes by domain. As an AccessStore, AuditStore and OutboxStore it is
// the default store.
type Mux struct {
	Store                          // the default store
	by     map[string]plinth.Store // domain → its store, when not the default
	others []plinth.Store
}

// New returns a Mux: by maps domain names to their stores; domains not in
// it use def.
func New(def Store, by map[string]plinth.Store) *Mux {
	m := &Mux{Store: def, by: by}
	seen := map[plinth.Store]bool{def: true}
	for _, st := range by {
		if !seen[st] {
			seen[st] = true
			m.others = append(m.others, st)
		}
	}
	return m
}

// ChainLinger is the default store's (see audit.ChainerConfig.Linger), 0
// when it has none: the Mux's audit trail is the default store's.
func (m *Mux) ChainLinger() time.Duration {
	if l, ok := m.Store.(audit.ChainLingerer); ok {
		return l.ChainLinger()
	}
	return 0
}

// Others are the stores besides the default, for their relays and chainers.
func (m *Mux) Others() []plinth.Store { return m.others }

// AuditChains lists the audit chain of every store that keeps one, the
// default store's first, each other named by its domains
// (audit.ChainLister): audit search and verify span them all.
func (m *Mux) AuditChains() []audit.Chain {
	chains := []audit.Chain{{Name: audit.DefaultChain, Store: m.Store}}
	for _, st := range m.others {
		if as, ok := st.(plinth.AuditStore); ok {
			chains = append(chains, audit.Chain{Name: m.nameOf(st), Store: as})
		}
	}
	return chains
}

// TrimAudit trims the default store's chain (plinth.AuditTrimmer): the one
// `plinth lake audit` archives. The other stores' chains are not archived,
// so they are not trimmed.
func (m *Mux) TrimAudit(ctx context.Context, through int64) (int64, error) {
	t, ok := m.Store.(plinth.AuditTrimmer)
	if !ok {
		return 0, fmt.Errorf("storemux: the default store %T cannot trim its audit trail", m.Store)
	}
	return t.TrimAudit(ctx, through)
}

// nameOf names a store besides the default by its domains.
func (m *Mux) nameOf(st plinth.Store) string {
	var names []string
	for d, o := range m.by {
		if o == st {
			names = append(names, d)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

func (m *Mux) of(e *plinth.Entity) plinth.Store {
	if e.Domain != nil {
		if st, ok := m.by[e.Domain.Name]; ok {
			return st
		}
	}
	return m.Store
}

// Prepare prepares each store for its domains.
func (m *Mux) Prepare(ctx context.Context, ds []*plinth.Domain) error {
	parts := map[plinth.Store][]*plinth.Domain{m.Store: nil}
	for _, d := range ds {
		var st plinth.Store = m.Store
		if o, ok := m.by[d.Name]; ok {
			st = o
		}
		parts[st] = append(parts[st], d)
	}
	for st, part := range parts {
		if err := st.Prepare(ctx, part); err != nil {
			return err
		}
	}
	return nil
}

func (m *Mux) Get(ctx context.Context, e *plinth.Entity, id any) (plinth.Record, error) {
	return m.of(e).Get(ctx, e, id)
}

func (m *Mux) List(ctx context.Context, e *plinth.Entity, q plinth.Query) (plinth.Page, error) {
	return m.of(e).List(ctx, e, q)
}

func (m *Mux) Count(ctx context.Context, e *plinth.Entity) (int64, error) {
	return m.of(e).Count(ctx, e)
}

func (m *Mux) BulkInsert(ctx context.Context, e *plinth.Entity, data []map[string]any) error {
	return m.of(e).BulkInsert(ctx, e, data)
}

func (m *Mux) BulkLoad(ctx context.Context, e *plinth.Entity, data []map[string]any, opts plinth.BulkOptions) (plinth.BulkResult, error) {
	return m.of(e).BulkLoad(ctx, e, data, opts)
}

// BeginBulkLoad passes the hint on to stores that take it.
func (m *Mux) BeginBulkLoad(ctx context.Context, e *plinth.Entity) (func(context.Context) error, error) {
	if bl, ok := m.of(e).(plinth.BulkLoader); ok {
		return bl.BeginBulkLoad(ctx, e)
	}
	return func(context.Context) error { return nil }, nil
}

func (m *Mux) Scan(ctx context.Context, e *plinth.Entity, q plinth.ScanQuery, fn func(plinth.Record) error) (plinth.Watermark, error) {
	return m.of(e).Scan(ctx, e, q, fn)
}

func (m *Mux) Deletions(ctx context.Context, e *plinth.Entity, since plinth.Watermark, fn func(plinth.Tombstone) error) (plinth.Watermark, error) {
	return m.of(e).Deletions(ctx, e, since, fn)
}

func (m *Mux) LastUpdated(ctx context.Context, e *plinth.Entity) (time.Time, error) {
	return m.of(e).LastUpdated(ctx, e)
}

// PurgeTombstones purges every store.
func (m *Mux) PurgeTombstones(ctx context.Context, olderThan time.Time) (int64, error) {
	n, err := m.Store.PurgeTombstones(ctx, olderThan)
	for _, st := range m.others {
		k, e := st.PurgeTombstones(ctx, olderThan)
		n, err = n+k, errors.Join(err, e)
	}
	return n, err
}

// Checkpoint returns the newest checkpoint of that name in any store: a
// write binds to one store, so a checkpoint set with a domain's data is
// in that domain's store.
func (m *Mux) Checkpoint(ctx context.Context, name string) (plinth.Checkpoint, bool, error) {
	best, found, err := m.Store.Checkpoint(ctx, name)
	if err != nil {
		return best, found, err
	}
	for _, st := range m.others {
		c, ok, err := st.Checkpoint(ctx, name)
		if err != nil {
			return c, ok, err
		}
		if ok && (!found || c.UpdatedAt.After(best.UpdatedAt)) {
			best, found = c, true
		}
	}
	return best, found, nil
}

// Ping pings every store.
func (m *Mux) Ping(ctx context.Context) error {
	err := m.Store.Ping(ctx)
	for _, st := range m.others {
		err = errors.Join(err, st.Ping(ctx))
	}
	return err
}

// Close closes every store.
func (m *Mux) Close() error {
	err := m.Store.Close()
	for _, st := range m.others {
		err = errors.Join(err, st.Close())
	}
	return err
}

// errRestart makes the Mux run fn again when the bound store wants to.
var errRestart = errors.New("storemux: the store runs the write again")

// maxRuns bounds how often a write is run again.
const maxRuns = 8

// Write runs fn against a routing transaction: the first thing fn touches
// decides the store, whose Write then runs on a goroutine of its own,
// taking fn's calls through its transaction. When that store runs its fn
// again (a conflict it retries), the Mux runs fn again instead.
func (m *Mux) Write(ctx context.Context, fn func(plinth.Tx) error) error {
	for run := 1; ; run++ {
		rt := &routeTx{m: m, ctx: ctx}
		err := rt.finish(fn(rt))
		if errors.Is(err, errRestart) && run < maxRuns {
			continue
		}
		return err
	}
}

type routeTx struct {
	m      *Mux
	ctx    context.Context
	st     plinth.Store
	tx     plinth.Tx
	done   chan error
	result chan error
}

// bind starts the store's Write and takes its transaction.
func (rt *routeTx) bind(st plinth.Store) error {
	if rt.st != nil {
		if rt.tx == nil {
			return errors.New("storemux: the write could not begin")
		}
		if rt.st != st {
			return fmt.Errorf("storemux: a write changes one store, and this one already changes another domain's store: write each domain on its own")
		}
		return nil
	}
	rt.st = st
	txc := make(chan plinth.Tx)
	rt.done, rt.result = make(chan error, 1), make(chan error, 1)
	go func() {
		calls := 0
		rt.result <- st.Write(rt.ctx, func(tx plinth.Tx) error {
			if calls++; calls > 1 {
				return errRestart
			}
			txc <- tx
			return <-rt.done
		})
	}()
	select {
	case rt.tx = <-txc:
		return nil
	case err := <-rt.result:
		rt.result <- err
		return err
	}
}

// finish ends the store's Write with fn's error and returns its result.
func (rt *routeTx) finish(fnErr error) error {
	if rt.st == nil {
		return fnErr
	}
	if rt.tx != nil {
		rt.done <- fnErr
	}
	return <-rt.result
}

func (rt *routeTx) on(e *plinth.Entity) (plinth.Tx, error) {
	if err := rt.bind(rt.m.of(e)); err != nil {
		return nil, err
	}
	return rt.tx, nil
}

// any is the bound transaction, or the default store's.
func (rt *routeTx) any() (plinth.Tx, error) {
	if rt.st == nil {
		if err := rt.bind(rt.m.Store); err != nil {
			return nil, err
		}
	}
	return rt.tx, nil
}

func (rt *routeTx) Get(ctx context.Context, e *plinth.Entity, id any) (plinth.Record, error) {
	tx, err := rt.on(e)
	if err != nil {
		return plinth.Record{}, err
	}
	return tx.Get(ctx, e, id)
}

func (rt *routeTx) Insert(ctx context.Context, e *plinth.Entity, data map[string]any) (plinth.Record, error) {
	tx, err := rt.on(e)
	if err != nil {
		return plinth.Record{}, err
	}
	return tx.Insert(ctx, e, data)
}

func (rt *routeTx) Update(ctx context.Context, e *plinth.Entity, id any, version int64, data map[string]any) (plinth.Record, error) {
	tx, err := rt.on(e)
	if err != nil {
		return plinth.Record{}, err
	}
	return tx.Update(ctx, e, id, version, data)
}

func (rt *routeTx) Delete(ctx context.Context, e *plinth.Entity, id any, version int64) error {
	tx, err := rt.on(e)
	if err != nil {
		return err
	}
	return tx.Delete(ctx, e, id, version)
}

func (rt *routeTx) Upsert(ctx context.Context, e *plinth.Entity, data map[string]any) (plinth.UpsertResult, error) {
	tx, err := rt.on(e)
	if err != nil {
		return plinth.UpsertResult{}, err
	}
	return tx.Upsert(ctx, e, data)
}

func (rt *routeTx) Checkpoint(ctx context.Context, name string) (plinth.Checkpoint, bool, error) {
	tx, err := rt.any()
	if err != nil {
		return plinth.Checkpoint{}, false, err
	}
	return tx.Checkpoint(ctx, name)
}

func (rt *routeTx) SetCheckpoint(ctx context.Context, name string, value []byte) error {
	tx, err := rt.any()
	if err != nil {
		return err
	}
	return tx.SetCheckpoint(ctx, name, value)
}

func (rt *routeTx) SwapCheckpoint(ctx context.Context, name string, old []byte, found bool, value []byte) error {
	tx, err := rt.any()
	if err != nil {
		return err
	}
	sw, ok := tx.(plinth.CheckpointSwapper)
	if !ok {
		return fmt.Errorf("storemux: %w: compare-and-set of checkpoints", plinth.ErrMissingCapability)
	}
	return sw.SwapCheckpoint(ctx, name, old, found, value)
}

func (rt *routeTx) AppendEvent(ctx context.Context, e plinth.OutboxEntry) error {
	tx, err := rt.any()
	if err != nil {
		return err
	}
	etx, ok := tx.(plinth.EventTx)
	if !ok {
		return fmt.Errorf("storemux: the store %T keeps no outbox", rt.st)
	}
	return etx.AppendEvent(ctx, e)
}

func (rt *routeTx) AppendAudit(ctx context.Context, rec plinth.AuditRecord) (plinth.AuditRecord, error) {
	tx, err := rt.any()
	if err != nil {
		return rec, err
	}
	atx, ok := tx.(plinth.AuditTx)
	if !ok {
		return rec, fmt.Errorf("storemux: the store %T keeps no audit log", rt.st)
	}
	return atx.AppendAudit(ctx, rec)
}

// AppendAuditAtCommit sends rec with the commit where the bound store can
// (plinth.AuditAtCommitTx, PostgreSQL: one round trip fewer per write), and
// appends it at once otherwise.
func (rt *routeTx) AppendAuditAtCommit(ctx context.Context, rec plinth.AuditRecord, stored *plinth.AuditRecord) error {
	tx, err := rt.any()
	if err != nil {
		return err
	}
	if atx, ok := tx.(plinth.AuditAtCommitTx); ok {
		return atx.AppendAuditAtCommit(ctx, rec, stored)
	}
	*stored, err = rt.AppendAudit(ctx, rec)
	return err
}

// access is the default store's transaction: grants and policies live there.
func (rt *routeTx) access() (plinth.AccessTx, error) {
	if err := rt.bind(rt.m.Store); err != nil {
		return nil, err
	}
	atx, ok := rt.tx.(plinth.AccessTx)
	if !ok {
		return nil, fmt.Errorf("storemux: the store %T keeps no grants", rt.st)
	}
	return atx, nil
}

func (rt *routeTx) CreateGrant(ctx context.Context, g plinth.Grant) error {
	atx, err := rt.access()
	if err != nil {
		return err
	}
	return atx.CreateGrant(ctx, g)
}

func (rt *routeTx) SetGrantEnabled(ctx context.Context, id string, enabled bool) (plinth.Grant, error) {
	atx, err := rt.access()
	if err != nil {
		return plinth.Grant{}, err
	}
	return atx.SetGrantEnabled(ctx, id, enabled)
}

func (rt *routeTx) PutPolicy(ctx context.Context, p plinth.AccessPolicy) error {
	atx, err := rt.access()
	if err != nil {
		return err
	}
	return atx.PutPolicy(ctx, p)
}

func (rt *routeTx) DeletePolicy(ctx context.Context, domain, env string) error {
	atx, err := rt.access()
	if err != nil {
		return err
	}
	return atx.DeletePolicy(ctx, domain, env)
}

var (
	_ plinth.Store             = (*Mux)(nil)
	_ plinth.BulkLoader        = (*Mux)(nil)
	_ plinth.AuditTrimmer      = (*Mux)(nil)
	_ plinth.Tx                = (*routeTx)(nil)
	_ plinth.EventTx           = (*routeTx)(nil)
	_ plinth.AuditTx           = (*routeTx)(nil)
	_ plinth.AuditAtCommitTx   = (*routeTx)(nil)
	_ plinth.AccessTx          = (*routeTx)(nil)
	_ plinth.CheckpointSwapper = (*routeTx)(nil)

	_ audit.ChainLister = (*Mux)(nil)
)
