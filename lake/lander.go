package lake

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sort"
	"sync"
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
	// Parquet tunes the files (compression: zstd at its fastest level by
	// default, parquet.FastZstd).
	Parquet parquet.Options
	// Drain makes Run return once the stream has nothing more to give
	// (after landing what it holds): for batch jobs and backfills.
	Drain bool
	// Logger receives progress and trouble; default slog.Default().
	Logger *slog.Logger
	// Held, when set, says whether the lander still holds its stream's
	// lease (Exclusive): it lands a file or acknowledges only while Held
	// is true, and otherwise stops with ErrLeaseLost.
	Held func() bool
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
	if c.Parquet.Compression == nil {
		c.Parquet.Compression = parquet.FastZstd
	}
	return c
}

// Lander lands one domain's events in the lake. One Lander per domain
// and lake runs at a time: run it inside Exclusive, with Config.Held.
type Lander struct {
	domain  *plinth.Domain
	target  Target
	cfg     Config
	views   map[string][]*entityView // by plural: the main dataset, and the special one if opted in
	landed  *landedIndex
	log     *slog.Logger
	files   map[string]*openFile // the files being written, by partition folder
	pending int                  // events buffered in them
	bytes   int
	inBuf   []uint64  // the sequences buffered, ascending
	first   time.Time // when the oldest buffered event came
	lastSeq uint64    // the highest sequence delivered
	acked   uint64    // the highest sequence acknowledged
	stats   Stats
}

// openFile is a file of one partition being written: events go into it
// as they come, so what is held is encoded columns, not decoded events.
type openFile struct {
	spool       Spool
	w           *parquet.EventWriter
	first, last uint64
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
		landed: newLandedIndex(target), files: map[string]*openFile{},
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
	// A pipeline: one goroutine fetches a batch while another decodes the
	// one before (on every core) and this one writes the one before that
	// into its files and lands them. Writing rows is serial; overlapping it
	// with decoding and fetching keeps both cores busy on a backlog.
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	defer l.discardOpen()
	fetchedCh := make(chan fetched, 1)
	go l.fetch(fctx, src, fetchedCh)
	batches := make(chan fetched, 1)
	go l.decodeAhead(fctx, fetchedCh, batches)
	final := func() error {
		// Land what is held, then stop.
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return l.Flush(c, src)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Reset(time.Hour)
		if l.pending > 0 {
			timer.Reset(time.Until(l.first.Add(l.cfg.FlushInterval)))
		}
		var due bool
		select {
		case <-ctx.Done():
			return final()
		case <-timer.C:
			due = true
		case f := <-batches:
			if ctx.Err() != nil {
				return final()
			}
			if f.err != nil {
				return fmt.Errorf("lake: reading the %s events: %w", l.domain.Name, f.err)
			}
			if len(f.msgs) == 0 && l.cfg.Drain {
				return l.Flush(ctx, src)
			}
			if err := l.addDecoded(ctx, f.msgs, f.decoded); err != nil {
				return err
			}
			// Only skipped messages: acknowledge them.
			due = l.pending == 0 && l.lastSeq > l.acked
		}
		if due || l.pending >= l.cfg.FlushEvents || l.bytes >= l.cfg.FlushBytes {
			if err := l.Flush(ctx, src); err != nil {
				return err
			}
		}
	}
}

// fetchBatch is the most messages one Fetch asks for: large, so that a
// backlog comes in few pull requests and decodes in large parallel runs.
const fetchBatch = 16384

type fetched struct {
	msgs    []Message
	decoded []decoded // msgs decoded, once decodeAhead has
	err     error
}

// fetch hands batches of messages to the landing loop until ctx is done
// or the source fails.
func (l *Lander) fetch(ctx context.Context, src Source, out chan<- fetched) {
	wait := min(l.cfg.FlushInterval, 5*time.Second)
	if l.cfg.Drain {
		wait = time.Second
	}
	for {
		msgs, err := src.Fetch(ctx, min(l.cfg.FlushEvents, fetchBatch), wait)
		select {
		case out <- fetched{msgs: msgs, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// decoded is a message decoded, and made into a row, for each of its
// views: the first in place (most entities have one view), the others
// apart.
type decoded struct {
	views []*entityView
	first viewRow
	more  []viewRow
	err   error
}

// viewRow is a message made into a row of a view.
type viewRow struct {
	dateTime time.Time // of the event: its partition
	row      parquet.Row
}

// of returns the row of the i-th view.
func (d *decoded) of(i int) *viewRow {
	if i == 0 {
		return &d.first
	}
	return &d.more[i-1]
}

// decodeAhead decodes each fetched batch and hands it on, in order.
func (l *Lander) decodeAhead(ctx context.Context, in <-chan fetched, out chan<- fetched) {
	for {
		var f fetched
		select {
		case f = <-in:
		case <-ctx.Done():
			return
		}
		if f.err == nil {
			f.decoded = l.decodeBatch(f.msgs)
		}
		select {
		case out <- f:
		case <-ctx.Done():
			return
		}
		if f.err != nil {
			return
		}
	}
}

// addDecoded buffers a decoded batch in order.
func (l *Lander) addDecoded(ctx context.Context, msgs []Message, out []decoded) error {
	for i, m := range msgs {
		if err := l.add(ctx, m, out[i]); err != nil {
			return err
		}
	}
	return nil
}

// decodeBatch decodes a batch on every core.
func (l *Lander) decodeBatch(msgs []Message) []decoded {
	out := make([]decoded, len(msgs))
	workers := min(runtime.GOMAXPROCS(0), (len(msgs)+255)/256)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(msgs); i += workers {
				out[i] = l.decode(msgs[i])
			}
		}()
	}
	wg.Wait()
	return out
}

// decode decodes a message for each view of its entity.
func (l *Lander) decode(m Message) decoded {
	d := decoded{views: l.views[subjectPlural(m.Subject)]}
	for i, view := range d.views {
		ev, row, err := view.parquetRow(m.Seq, m.Data)
		if err != nil {
			d.err = err
			return d
		}
		if i == 0 {
			d.first = viewRow{ev.DateTime, row}
		} else {
			d.more = append(d.more, viewRow{ev.DateTime, row})
		}
	}
	return d
}

// add buffers one decoded message: it writes it into the open file of
// its partition, unless a file of the lake holds it already.
func (l *Lander) add(ctx context.Context, m Message, d decoded) error {
	seq := m.Seq
	l.lastSeq = max(l.lastSeq, seq)
	switch {
	case l.buffered(seq):
		l.stats.Duplicates++ // delivered again while buffered
		return nil
	case d.views == nil:
		l.stats.Skipped++
		l.log.Error("a message of no entity of the domain; it is not landed", "subject", m.Subject, "sequence", m.Seq)
		return nil
	case d.err != nil:
		l.stats.Skipped++
		l.log.Error("a message that is no Plinth event; it is not landed", "subject", m.Subject, "sequence", m.Seq, "error", d.err)
		return nil
	}
	for i, view := range d.views {
		vr := d.of(i)
		partition := view.partition(vr.dateTime)
		have, err := l.landed.has(ctx, partition, seq)
		if err != nil {
			return err
		}
		if have {
			l.stats.Duplicates++
			continue
		}
		f := l.files[partition]
		if f == nil {
			sp, err := l.newSpool(partition)
			if err != nil {
				return fmt.Errorf("lake: starting a file in %s: %w", partition, err)
			}
			f = &openFile{first: seq, last: seq, spool: sp}
			if f.w, err = parquet.NewEventWriter(sp, view.e, l.cfg.Parquet); err != nil {
				sp.Discard()
				return err
			}
			l.files[partition] = f
		}
		if err := f.w.WriteRow(vr.row); err != nil {
			return err
		}
		f.first, f.last = min(f.first, seq), max(f.last, seq)
	}
	if l.pending == 0 {
		l.first = time.Now()
	}
	l.pending++
	l.markBuffered(seq)
	l.bytes += len(m.Data)
	return nil
}

// buffered reports whether an event of the sequence is buffered: one
// delivered again. Sequences come in stream order, so only a sequence not
// above the last one buffered is looked for.
func (l *Lander) buffered(seq uint64) bool {
	if n := len(l.inBuf); n == 0 || seq > l.inBuf[n-1] {
		return false
	}
	_, found := slices.BinarySearch(l.inBuf, seq)
	return found
}

// markBuffered records a sequence buffered, keeping inBuf in order.
func (l *Lander) markBuffered(seq uint64) {
	if n := len(l.inBuf); n == 0 || seq > l.inBuf[n-1] {
		l.inBuf = append(l.inBuf, seq)
		return
	}
	i, _ := slices.BinarySearch(l.inBuf, seq)
	l.inBuf = slices.Insert(l.inBuf, i, seq)
}

// Flush lands the open files, each under its partition, and then
// acknowledges every message buffered.
func (l *Lander) Flush(ctx context.Context, src Source) error {
	keys := make([]string, 0, len(l.files))
	for k := range l.files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, partition := range keys {
		if err := l.holds(); err != nil {
			return err
		}
		f := l.files[partition]
		if err := l.land(ctx, partition, f); err != nil {
			return err
		}
		delete(l.files, partition)
	}
	if l.lastSeq > l.acked {
		if err := l.holds(); err != nil {
			return err
		}
		if err := src.Ack(ctx, l.lastSeq); err != nil {
			return fmt.Errorf("lake: acknowledging the %s events up to %d: %w", l.domain.Name, l.lastSeq, err)
		}
		l.acked = l.lastSeq
	}
	if l.pending > 0 {
		l.log.Info("landed", "events", l.pending, "upTo", l.acked, "landedSoFar", l.stats.Landed, "files", l.stats.Files)
	}
	l.pending, l.bytes = 0, 0
	l.inBuf = l.inBuf[:0]
	return nil
}

// discardOpen drops the files not landed when a run fails: their events
// were not acknowledged, so the next run lands them.
func (l *Lander) discardOpen() {
	for partition, f := range l.files {
		f.spool.Discard()
		delete(l.files, partition)
	}
}

// holds returns ErrLeaseLost when the lander no longer holds its lease.
func (l *Lander) holds() error {
	if l.cfg.Held != nil && !l.cfg.Held() {
		return fmt.Errorf("lake: %s: %w", l.domain.Name, ErrLeaseLost)
	}
	return nil
}

// land writes one open file to the lake: visible at once, durable when
// its spool has landed.
func (l *Lander) land(ctx context.Context, partition string, f *openFile) error {
	if err := f.w.Close(); err != nil {
		return err
	}
	key := partition + PartName(f.first, f.last)
	size := f.spool.Size()
	if err := f.spool.Land(ctx, key); err != nil {
		return fmt.Errorf("lake: landing %s: %w", key, err)
	}
	l.landed.add(partition, key, f.first, f.last)
	n := f.w.Count()
	l.stats.Landed += n
	l.stats.Files++
	l.stats.Bytes += size
	l.log.Debug("landed", "file", key, "events", n, "bytes", size)
	return nil
}
