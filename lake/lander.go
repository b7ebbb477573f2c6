package lake

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/parquet"
)

// Message is one event as the stream delivered it.
type Message struct {
	Seq     uint64 // the stream sequence
	Subject string
	Data    []byte
}

// Source delivers a domain's events in stream order (package nats:
// BatchSource, a durable JetStream consumer).
type Source interface {
	// Fetch returns up to max messages; it waits at most wait for the
	// first, and returns none (no error) when none came.
	Fetch(ctx context.Context, max int, wait time.Duration) ([]Message, error)
	// Ack acknowledges every message up to and including seq; the lander
	// calls it only once their files are durable.
	Ack(ctx context.Context, seq uint64) error
}

// Config tunes a Lander. Zero values take the defaults.
type Config struct {
	// FlushEvents lands the buffer when it holds this many events
	// (default 100,000).
	FlushEvents int
	// FlushBytes lands the buffer when its payloads reach this many bytes
	// (default 64 MiB).
	FlushBytes int
	// FlushInterval lands what the buffer holds this long after its first
	// event came, so a quiet domain lands its events too (default 1 minute).
	FlushInterval time.Duration
	// Special lands the domain's special-category fields too, in a
	// dataset of their own under SpecialPrefix. Off by default: they stay
	// out of the lake.
	Special bool
	// Parquet tunes the files (compression: zstd by default).
	Parquet parquet.Options
	// Drain makes Run return once the stream has nothing more to give
	// (after landing what it holds): for batch jobs and backfills.
	Drain bool
	// Logger receives progress and trouble; default slog.Default().
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultFlushEvents   = 100_000
	DefaultFlushBytes    = 64 << 20
	DefaultFlushInterval = time.Minute
)

func (c Config) withDefaults() Config {
	if c.FlushEvents <= 0 {
		c.FlushEvents = DefaultFlushEvents
	}
	if c.FlushBytes <= 0 {
		c.FlushBytes = DefaultFlushBytes
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Lander lands one domain's events in the lake. One Lander per domain
// and lake runs at a time.
type Lander struct {
	domain  *plinth.Domain
	target  Target
	cfg     Config
	views   map[string][]*entityView // by plural: the main dataset, and the special one if opted in
	landed  *landedIndex
	log     *slog.Logger
	pending []pendingEvent
	bytes   int
	inBuf   map[uint64]bool
	first   time.Time // when the oldest buffered event came
	lastSeq uint64    // the highest sequence delivered
	acked   uint64    // the highest sequence acknowledged
	stats   Stats
}

type pendingEvent struct {
	view *entityView
	row  parquet.EventRow
}

// Stats counts what a Lander did.
type Stats struct {
	Landed     int64 // events written to files
	Duplicates int64 // events skipped because a file already holds them
	Skipped    int64 // messages that are no event of a known entity
	Files      int64
	Bytes      int64
}

// NewLander returns the lander of a domain's events into target.
func NewLander(d *plinth.Domain, target Target, cfg Config) *Lander {
	cfg = cfg.withDefaults()
	l := &Lander{domain: d, target: target, cfg: cfg, views: map[string][]*entityView{},
		landed: newLandedIndex(target), inBuf: map[uint64]bool{},
		log: cfg.Logger.With("component", "lake", "domain", d.Name, "lake", target.String())}
	for _, e := range d.Entities {
		l.views[e.Plural] = []*entityView{newEntityView(e, LakeEntity(e), EntityPrefix(e))}
		if se := SpecialEntity(e); cfg.Special && se != nil {
			l.views[e.Plural] = append(l.views[e.Plural], newEntityView(e, se, SpecialPrefix(e)))
		}
	}
	return l
}

// Stats returns the counts so far.
func (l *Lander) Stats() Stats { return l.stats }

// Run lands events from src until ctx is done; then it lands what it
// holds and returns nil. It returns an error when src fails; files not
// yet landed are landed again by the next run (their events were not
// acknowledged). It first checks that no column of the lake would change
// its type (an error wrapping ErrSchema).
func (l *Lander) Run(ctx context.Context, src Source) error {
	for _, views := range l.views {
		for _, v := range views {
			if err := v.checkSchema(ctx, l.target); err != nil {
				return err
			}
		}
	}
	for {
		wait := l.cfg.FlushInterval
		if len(l.pending) > 0 {
			wait = time.Until(l.first.Add(l.cfg.FlushInterval))
		}
		var msgs []Message
		var err error
		if wait > 0 {
			room := min(l.cfg.FlushEvents-len(l.pending), 4096)
			longest := 5 * time.Second
			if l.cfg.Drain {
				longest = time.Second
			}
			msgs, err = src.Fetch(ctx, max(room, 1), min(wait, longest))
		}
		if ctx.Err() != nil {
			// Land what is held, then stop.
			fctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			return l.Flush(fctx, src)
		}
		if err != nil {
			return fmt.Errorf("lake: reading the %s events: %w", l.domain.Name, err)
		}
		for _, m := range msgs {
			l.add(m)
		}
		if wait > 0 && len(msgs) == 0 && l.cfg.Drain {
			return l.Flush(ctx, src)
		}
		due := len(l.pending) > 0 && !time.Now().Before(l.first.Add(l.cfg.FlushInterval)) ||
			len(l.pending) == 0 && l.lastSeq > l.acked // only skipped messages: acknowledge them
		if len(l.pending) >= l.cfg.FlushEvents || l.bytes >= l.cfg.FlushBytes || due {
			if err := l.Flush(ctx, src); err != nil {
				return err
			}
		}
	}
}

// add buffers one message.
func (l *Lander) add(m Message) {
	l.lastSeq = max(l.lastSeq, m.Seq)
	if l.inBuf[m.Seq] {
		l.stats.Duplicates++ // delivered again while buffered
		return
	}
	views := l.views[subjectPlural(m.Subject)]
	if views == nil {
		l.stats.Skipped++
		l.log.Error("a message of no entity of the domain; it is not landed", "subject", m.Subject, "sequence", m.Seq)
		return
	}
	if len(l.pending) == 0 {
		l.first = time.Now()
	}
	for _, view := range views {
		row, err := view.row(m.Seq, m.Data)
		if err != nil {
			l.stats.Skipped++
			l.log.Error("a message that is no Plinth event; it is not landed", "subject", m.Subject, "sequence", m.Seq, "error", err)
			return
		}
		l.pending = append(l.pending, pendingEvent{view: view, row: row})
	}
	l.inBuf[m.Seq] = true
	l.bytes += len(m.Data)
}

// Flush lands the buffered events (one file per entity and day, less
// those a file already holds) and then acknowledges them.
func (l *Lander) Flush(ctx context.Context, src Source) error {
	if len(l.pending) == 0 && l.lastSeq <= l.acked {
		return nil
	}
	groups := map[string][]pendingEvent{}
	for _, p := range l.pending {
		key := EventsPartition(p.view.prefix, p.row.DateTime)
		groups[key] = append(groups[key], p)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := l.landPartition(ctx, k, groups[k]); err != nil {
			return err
		}
	}
	if l.lastSeq > l.acked {
		if err := src.Ack(ctx, l.lastSeq); err != nil {
			return fmt.Errorf("lake: acknowledging the %s events up to %d: %w", l.domain.Name, l.lastSeq, err)
		}
		l.acked = l.lastSeq
	}
	if n := len(l.pending); n > 0 {
		l.log.Info("landed", "events", n, "upTo", l.acked, "landedSoFar", l.stats.Landed, "files", l.stats.Files)
	}
	l.pending = l.pending[:0]
	clear(l.inBuf)
	l.bytes = 0
	return nil
}

// landPartition writes one file of the events of a partition that no
// file of it holds yet.
func (l *Lander) landPartition(ctx context.Context, partition string, evs []pendingEvent) error {
	fresh := evs[:0:0]
	for _, p := range evs {
		have, err := l.landed.has(ctx, partition, p.row.Sequence)
		if err != nil {
			return err
		}
		if have {
			l.stats.Duplicates++
			continue
		}
		fresh = append(fresh, p)
	}
	if len(fresh) == 0 {
		return nil
	}
	sort.Slice(fresh, func(i, j int) bool { return fresh[i].row.Sequence < fresh[j].row.Sequence })
	var buf bytes.Buffer
	w, err := parquet.NewEventWriter(&buf, fresh[0].view.e, l.cfg.Parquet)
	if err != nil {
		return err
	}
	seqs := make([]uint64, len(fresh))
	for i, p := range fresh {
		if err := w.Write(p.row); err != nil {
			return err
		}
		seqs[i] = p.row.Sequence
	}
	if err := w.Close(); err != nil {
		return err
	}
	key := partition + PartName(seqs[0], seqs[len(seqs)-1])
	if err := l.target.Put(ctx, key, buf.Bytes()); err != nil {
		return fmt.Errorf("lake: landing %s: %w", key, err)
	}
	l.landed.add(partition, key, seqs)
	l.stats.Landed += int64(len(fresh))
	l.stats.Files++
	l.stats.Bytes += int64(buf.Len())
	l.log.Debug("landed", "file", key, "events", len(fresh), "bytes", buf.Len())
	return nil
}
