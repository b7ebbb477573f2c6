package lake_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/lake"
	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest/natstest"
	"github.com/plinth-data/plinth/plinthtest/s3test"
	rt "github.com/plinth-data/plinth/report/reporttest"
	"github.com/plinth-data/plinth/s3"
)

// eachTarget runs a test on a lake in a local folder and on one in S3
// (an in-process S3-compatible server). local returns a folder holding
// the lake's files, for DuckDB.
func eachTarget(t *testing.T, test func(t *testing.T, target lake.Target, local func() string)) {
	t.Run("dir", func(t *testing.T) {
		root := t.TempDir()
		test(t, lake.Dir(root), func() string { return root })
	})
	t.Run("s3", func(t *testing.T) {
		endpoint := s3test.Start(t, "lake")
		target, err := s3.Open(context.Background(), "s3://lake/zone/raw", s3.Options{Endpoint: endpoint})
		if err != nil {
			t.Fatal(err)
		}
		test(t, target, func() string { return mirror(t, target) })
	})
}

// mirror copies every file of a lake into a temporary folder.
func mirror(t *testing.T, target lake.Target) string {
	t.Helper()
	ctx := context.Background()
	objs, err := target.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, o := range objs {
		b, err := target.Get(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		if err := lake.Dir(dir).Put(ctx, o.Key, b); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// bus is an embedded NATS with the streams of one domain.
type bus struct {
	js     jetstream.JetStream
	pub    *plinthnats.Publisher
	stream string
}

func newBus(t *testing.T, d *plinth.Domain) *bus {
	t.Helper()
	_, nc := natstest.Embedded(t)
	pub, err := plinthnats.NewPublisher(context.Background(), nc, "test", []*plinth.Domain{d})
	if err != nil {
		t.Fatal(err)
	}
	return &bus{js: pub.JetStream(), pub: pub, stream: plinthnats.StreamName("test", d.Name)}
}

// publish publishes the events of creating recs, then updating and
// deleting some, at times starting at start, one second apart; it
// returns the event ids.
func (b *bus) publish(t *testing.T, e *plinth.Entity, recs []plinth.Record, start time.Time) []string {
	t.Helper()
	var entries []plinth.OutboxEntry
	var ids []string
	now := start
	add := func(kind plinth.EventKind, before, after *plinth.Record) {
		entry, ev, ok := plinth.BuildEvent(e, kind, before, after, plinth.EventContext{Environment: "test",
			CorrelationID: "corr-" + strconv.Itoa(len(ids)), Now: now,
			Principal: plinth.Principal{Subject: "u1", Name: "Una", Email: "una@example.org"}})
		if !ok {
			t.Fatal("no event")
		}
		entries = append(entries, entry)
		ids = append(ids, ev.ID)
		now = now.Add(time.Second)
	}
	for i := range recs {
		add(plinth.EventCreated, nil, &recs[i])
	}
	for i := 0; i < len(recs); i += 5 {
		after := recs[i]
		after.Data = plinth.MergePatch(after.Data, map[string]any{e.Fields[1].Name: nil})
		after.Version++
		if _, _, ok := plinth.BuildEvent(e, plinth.EventUpdated, &recs[i], &after, plinth.EventContext{}); ok {
			add(plinth.EventUpdated, &recs[i], &after)
		}
		if i%10 == 0 {
			add(plinth.EventDeleted, &after, nil)
		}
	}
	for len(entries) > 0 {
		n := min(500, len(entries))
		if err := b.pub.Publish(context.Background(), entries[:n]); err != nil {
			t.Fatal(err)
		}
		entries = entries[n:]
	}
	return ids
}

// land runs a lander until the stream's last message is landed and
// acknowledged, then stops it.
func land(t *testing.T, b *bus, d *plinth.Domain, target lake.Target, cfg lake.Config) lake.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := plinthnats.NewBatchSource(ctx, b.js, b.stream, "lake", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	last := uint64(natstest.StreamCount(t, b.js, b.stream))
	w := &watchAcks{Source: src, upto: last, done: cancel}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := lake.NewLander(d, target, cfg)
	if err := l.Run(ctx, w); err != nil {
		t.Fatal(err)
	}
	if w.acked.Load() < last {
		t.Fatalf("stopped with %d of %d acknowledged (%+v)", w.acked.Load(), last, l.Stats())
	}
	return l.Stats()
}

// watchAcks stops the run once everything up to upto is acknowledged.
type watchAcks struct {
	lake.Source
	upto  uint64
	acked atomic.Uint64
	done  func()
}

func (w *watchAcks) Ack(ctx context.Context, seq uint64) error {
	if err := w.Source.Ack(ctx, seq); err != nil {
		return err
	}
	w.acked.Store(seq)
	if seq >= w.upto {
		w.done()
	}
	return nil
}

// lakeEvents reads every event file of an entity with DuckDB.
func lakeEvents(t *testing.T, root string, e *plinth.Entity, sql string) rt.Result {
	t.Helper()
	glob := filepath.Join(root, e.Domain.Name, e.Plural, "events", "**", "*.parquet")
	src := "read_parquet(" + rt.SQLString(glob) + ", hive_partitioning = true, union_by_name = true)"
	return rt.DuckDB(t, fmt.Sprintf(sql, src))[0]
}

func idsOf(res rt.Result) map[string]int {
	out := map[string]int{}
	for _, r := range res.Rows {
		out[r[0].(string)]++
	}
	return out
}

// Every published event lands exactly once, typed, and an independent
// reader (DuckDB) finds them in their day's partition.
func TestLandReadBackDuckDB(t *testing.T) { eachTarget(t, testLandReadBack) }

func testLandReadBack(t *testing.T, target lake.Target, local func() string) {
	e, recs := rt.Sample(t, 200)
	b := newBus(t, e.Domain)
	start := time.Date(2026, 3, 1, 23, 58, 0, 0, time.UTC) // crosses midnight
	ids := b.publish(t, e, recs, start)
	st := land(t, b, e.Domain, target, lake.Config{FlushEvents: 64, FlushInterval: 300 * time.Millisecond})
	if st.Landed != int64(len(ids)) || st.Duplicates != 0 {
		t.Fatalf("stats %+v, want %d landed", st, len(ids))
	}
	res := lakeEvents(t, local(), e, "SELECT id, import_date, eventType, typeof(state_count), typeof(state_seenAt), typeof(state_born), typeof(dateTime) FROM %s")
	got := idsOf(res)
	if len(got) != len(ids) || len(res.Rows) != len(ids) {
		t.Fatalf("the lake holds %d events (%d distinct), want %d", len(res.Rows), len(got), len(ids))
	}
	for _, id := range ids {
		if got[id] != 1 {
			t.Fatalf("event %s is in the lake %d times", id, got[id])
		}
	}
	days := map[string]int{}
	for _, r := range res.Rows {
		days[fmt.Sprint(r[1])]++
		if r[3] != "BIGINT" || r[4] != "TIMESTAMP WITH TIME ZONE" || r[5] != "DATE" || r[6] != "TIMESTAMP WITH TIME ZONE" {
			t.Fatalf("column types %v", r[3:])
		}
	}
	// The state columns of the created events are the records, typed as
	// the Reporting API types them, nested values the API's JSON text.
	var cols []string
	for _, f := range e.Fields {
		cols = append(cols, `"state_`+f.Name+`" AS "`+f.Name+`"`)
	}
	for _, f := range plinth.SystemFields {
		cols = append(cols, `"state_`+f+`" AS "`+f+`"`)
	}
	created := lakeEvents(t, local(), e, "SELECT "+strings.Join(cols, ", ")+" FROM %s WHERE eventType LIKE '%%Created%%' ORDER BY sequence")
	rt.CompareTyped(t, e, recs, created, true)
	// 120 seconds before midnight, one event a second.
	if days["20260301"] != 120 || days["20260302"] != len(ids)-120 {
		t.Fatalf("events by partition %v", days)
	}
}

// failingTarget fails every Put after the first n.
type failingTarget struct {
	lake.Target
	n atomic.Int64
}

func (f *failingTarget) Put(ctx context.Context, key string, body []byte) error {
	if f.n.Add(-1) < 0 {
		return errors.New("disk full")
	}
	return f.Target.Put(ctx, key, body)
}

// A lander that dies after landing some files (before acknowledging)
// is followed by one with other batch boundaries: nothing is lost and
// nothing is landed twice.
func TestRestartWithOtherBoundaries(t *testing.T) { eachTarget(t, testRestart) }

func testRestart(t *testing.T, target lake.Target, local func() string) {
	e, recs := rt.Sample(t, 300)
	b := newBus(t, e.Domain)
	// Midnight falls after the 150th event, in the second batch of 100.
	ids := b.publish(t, e, recs, time.Date(2026, 3, 1, 23, 57, 30, 0, time.UTC))

	// The first batch lands; the second lands its first day's file and
	// then fails on its second, so it is not acknowledged.
	ft := &failingTarget{Target: target}
	ft.n.Store(2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := plinthnats.NewBatchSource(ctx, b.js, b.stream, "lake", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	l := lake.NewLander(e.Domain, ft, lake.Config{FlushEvents: 100})
	if err := l.Run(ctx, src); err == nil || l.Stats().Landed != 150 {
		t.Fatalf("the first lander: %v, %+v", err, l.Stats())
	}

	// The second starts after the first batch, the only one acknowledged,
	// and finds events 101…150 already landed.
	st := land(t, b, e.Domain, target, lake.Config{FlushEvents: 77, FlushInterval: 300 * time.Millisecond})
	if st.Landed != int64(len(ids)-150) || st.Duplicates != 50 {
		t.Fatalf("second run: %+v, want %d landed and 50 duplicates", st, len(ids)-150)
	}
	res := lakeEvents(t, local(), e, "SELECT id FROM %s")
	got := idsOf(res)
	if len(res.Rows) != len(ids) || len(got) != len(ids) {
		t.Fatalf("the lake holds %d events (%d distinct), want %d", len(res.Rows), len(got), len(ids))
	}
}
