package lake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/lake"
	plinthnats "github.com/plinth-data/plinth/nats"
	rt "github.com/plinth-data/plinth/report/reporttest"
	"github.com/plinth-data/plinth/sqlite"
)

// A snapshot records the stream position it corresponds to: the events at
// or below it are all in its state, and the events above it, less those
// the snapshot already holds by version (published late), are exactly the
// writes the snapshot does not hold.
func TestSnapshotPosition(t *testing.T) {
	ctx := context.Background()
	e, recs := rt.Sample(t, 15)
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Prepare(ctx, []*plinth.Domain{e.Domain}); err != nil {
		t.Fatal(err)
	}
	b := newBus(t, e.Domain)
	write := func(kind plinth.EventKind, fn func(tx plinth.Tx) (before, after *plinth.Record, err error)) plinth.OutboxEntry {
		var entry plinth.OutboxEntry
		err := st.Write(ctx, func(tx plinth.Tx) error {
			before, after, err := fn(tx)
			if err == nil {
				entry, _, _ = plinth.BuildEvent(e, kind, before, after, plinth.EventContext{Environment: "test", Now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)})
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return entry
	}
	insert := func(r plinth.Record) plinth.OutboxEntry {
		return write(plinth.EventCreated, func(tx plinth.Tx) (*plinth.Record, *plinth.Record, error) {
			rec, err := tx.Insert(ctx, e, r.Data)
			return nil, &rec, err
		})
	}
	publish := func(entries ...plinth.OutboxEntry) {
		if err := b.pub.Publish(ctx, entries); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range recs[:10] {
		publish(insert(r))
	}
	// Committed before the snapshot, published after its position was
	// read (a lagging relay): above the position, yet in the snapshot.
	late := write(plinth.EventUpdated, func(tx plinth.Tx) (*plinth.Record, *plinth.Record, error) {
		before, err := tx.Get(ctx, e, recs[0].Data[e.Key.Name])
		if err != nil {
			return nil, nil, err
		}
		after, err := tx.Update(ctx, e, before.Data[e.Key.Name], before.Version, map[string]any{"label": "late"})
		return &before, &after, err
	})

	target := lake.Dir(t.TempDir())
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	m, err := lake.Snapshot(ctx, st, e, target, day, lake.SnapshotOptions{Position: func(ctx context.Context) (uint64, error) {
		return plinthnats.LastSequence(ctx, b.js, b.stream)
	}})
	if err != nil || !m.PositionKnown || m.Position != 10 {
		t.Fatalf("snapshot at position %d (known %v), want 10: %v", m.Position, m.PositionKnown, err)
	}
	raw, err := target.Get(ctx, lake.SnapshotPartition(lake.EntityPrefix(e), day)+"_manifest.json")
	if err != nil || !strings.Contains(string(raw), `"position": 10`) {
		t.Fatalf("the manifest does not record the position: %s %v", raw, err)
	}
	var after []string
	publish(late)
	for _, r := range recs[10:] {
		entry := insert(r)
		publish(entry)
		var ev struct{ EntityID string }
		_ = json.Unmarshal(entry.Payload, &ev)
		after = append(after, ev.EntityID)
	}
	land(t, b, e.Domain, target, lake.Config{FlushInterval: 200 * time.Millisecond})

	snap := "read_parquet(" + rt.SQLString(filepath.Join(string(target), lake.SnapshotPartition(lake.EntityPrefix(e), day), "*.parquet")) + ")"
	events := "read_parquet(" + rt.SQLString(filepath.Join(string(target), lake.EntityPrefix(e), "events", "**", "*.parquet")) + ", hive_partitioning = true)"
	res := rt.DuckDB(t,
		// Every event at or below the position is in the snapshot.
		fmt.Sprintf("SELECT count(*) FROM %s ev LEFT JOIN %s s ON CAST(s.id AS VARCHAR) = ev.entityId WHERE ev.sequence <= %d AND (s.version IS NULL OR ev.entityVersion > s.version)", events, snap, m.Position),
		// The join README documents: above the position, newer than the snapshot's row.
		fmt.Sprintf("SELECT ev.entityId FROM %s ev LEFT JOIN %s s ON CAST(s.id AS VARCHAR) = ev.entityId WHERE ev.sequence > %d AND (s.version IS NULL OR ev.entityVersion > s.version) ORDER BY ev.entityId", events, snap, m.Position),
		fmt.Sprintf("SELECT count(*) FROM %s WHERE sequence > %d", events, m.Position))
	if fmt.Sprint(res[0].Rows) != "[[0]]" {
		t.Fatalf("events at or below the position that the snapshot lacks: %v", res[0].Rows)
	}
	var got []string
	for _, r := range res[1].Rows {
		got = append(got, r[0].(string))
	}
	sort.Strings(after)
	if fmt.Sprint(got) != fmt.Sprint(after) {
		t.Fatalf("events after the snapshot: %v, want the writes it does not hold %v", got, after)
	}
	if fmt.Sprint(res[2].Rows) != fmt.Sprintf("[[%d]]", len(after)+1) {
		t.Fatalf("events above the position: %v, want %d (the late one too)", res[2].Rows, len(after)+1)
	}
}
