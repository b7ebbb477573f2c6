package lake

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/parquet"
)

// SnapshotOptions tune Snapshot.
type SnapshotOptions struct {
	// Special writes the special-category dataset too (under
	// SpecialPrefix), as the domain's landing does.
	Special bool
	// FileRecords caps the records of one file (default 1,000,000).
	FileRecords int
	// Progress, when set, is called with the records written so far.
	Progress func(records int64)
	// Position, when set, returns the sequence of the last event in the
	// domain's stream (package nats: LastSequence). Snapshot reads it just
	// before the store's snapshot begins and records it in the manifest.
	Position func(ctx context.Context) (uint64, error)
}

// Manifest describes a snapshot; it is written beside its files as
// _manifest.json (readers such as Athena skip names starting with _).
type Manifest struct {
	Entity    string    `json:"entity"` // domain/plural
	TakenAt   time.Time `json:"takenAt"`
	Watermark string    `json:"watermark"` // of the store's snapshot (Store.Scan)
	Records   int64     `json:"records"`
	Files     []string  `json:"files"`
	// Position is the stream sequence the snapshot corresponds to: every
	// event at or below it is in the snapshot's state (an event is
	// published only after its write committed, and the position is read
	// before the store's snapshot begins). The events that build on the
	// snapshot are those above it, less any whose write committed before
	// the snapshot but was published after the position was read (the
	// relay lags, or published during the scan): those have an
	// entityVersion no higher than the snapshot row's version. Absent
	// (PositionKnown false) when the stream could not be read.
	Position      uint64 `json:"position"`
	PositionKnown bool   `json:"positionKnown"`
}

// SnapshotPartition is the folder of an entity's snapshot of a day below
// its prefix.
func SnapshotPartition(prefix string, day time.Time) string {
	d := day.UTC()
	return fmt.Sprintf("%s%s/import_date=%04d%02d%02d/", prefix, DatasetSnapshot, d.Year(), d.Month(), d.Day())
}

// Snapshot writes the full state of an entity, from one Store.Scan (one
// consistent snapshot of the store), as the day's snapshot partition:
// new files first, then the manifest, then the files of an earlier
// snapshot of that day are removed. Each row carries the record's
// version; an event with a higher entityVersion came after it. With
// opts.Position the manifest records the stream position the snapshot
// corresponds to (Manifest.Position).
func Snapshot(ctx context.Context, st plinth.Store, e *plinth.Entity, target Target, day time.Time, opts SnapshotOptions) (Manifest, error) {
	if opts.FileRecords <= 0 {
		opts.FileRecords = 1_000_000
	}
	le := LakeEntity(e)
	sets := []*snapshotSet{newSnapshotSet(le, prunedFields(e, le), SnapshotPartition(EntityPrefix(e), day))}
	if se := SpecialEntity(e); opts.Special && se != nil {
		sets = append(sets, newSnapshotSet(se, nil, SnapshotPartition(SpecialPrefix(e), day)))
	}
	var pos uint64
	if opts.Position != nil {
		p, err := opts.Position(ctx)
		if err != nil {
			return Manifest{}, fmt.Errorf("lake: snapshot of %s: reading the stream position: %w", e.Plural, err)
		}
		pos = p
	}
	var n int64
	wm, err := st.Scan(ctx, e, plinth.ScanQuery{}, func(rec plinth.Record) error {
		for _, s := range sets {
			if err := s.write(ctx, target, rec, opts.FileRecords); err != nil {
				return err
			}
		}
		n++
		if opts.Progress != nil && n%10_000 == 0 {
			opts.Progress(n)
		}
		return nil
	})
	if err != nil {
		return Manifest{}, fmt.Errorf("lake: snapshot of %s: %w", e.Plural, err)
	}
	var main Manifest
	for i, s := range sets {
		m := Manifest{Entity: e.Domain.Name + "/" + e.Plural, TakenAt: s.taken, Watermark: string(wm), Records: n,
			Position: pos, PositionKnown: opts.Position != nil}
		m, err := s.finish(ctx, target, m)
		if err != nil {
			return Manifest{}, err
		}
		if i == 0 {
			main = m
		}
	}
	if opts.Progress != nil {
		opts.Progress(n)
	}
	return main, nil
}

// snapshotSet writes the files of one dataset of a snapshot.
type snapshotSet struct {
	e      *plinth.Entity
	pruned map[string]*plinth.Field // fields written without their nested special members
	folder string
	run    string
	buf    bytes.Buffer
	w      *parquet.Writer
	files  []string
	taken  time.Time
}

func newSnapshotSet(e *plinth.Entity, pruned map[string]*plinth.Field, folder string) *snapshotSet {
	var r [4]byte
	_, _ = rand.Read(r[:])
	now := time.Now().UTC()
	return &snapshotSet{e: e, pruned: pruned, folder: folder, taken: now,
		run: now.Format("20060102T150405Z") + "-" + hex.EncodeToString(r[:])}
}

func (s *snapshotSet) write(ctx context.Context, target Target, rec plinth.Record, fileRecords int) error {
	if s.w == nil {
		s.buf.Reset()
		w, err := parquet.NewWriter(&s.buf, s.e, parquet.Options{})
		if err != nil {
			return err
		}
		s.w = w
	}
	if err := s.w.Write(pruneRecord(rec, s.pruned)); err != nil {
		return err
	}
	if s.w.Count() >= int64(fileRecords) {
		return s.flush(ctx, target)
	}
	return nil
}

func (s *snapshotSet) flush(ctx context.Context, target Target) error {
	if s.w == nil {
		return nil
	}
	if err := s.w.Close(); err != nil {
		return err
	}
	s.w = nil
	key := s.folder + "part-" + s.run + "-" + fmt.Sprintf("%05d", len(s.files)) + ".parquet"
	if err := target.Put(ctx, key, s.buf.Bytes()); err != nil {
		return err
	}
	s.files = append(s.files, key)
	return nil
}

// finish lands the last file and the manifest, then removes the files of
// other snapshots of the day.
func (s *snapshotSet) finish(ctx context.Context, target Target, m Manifest) (Manifest, error) {
	if err := s.flush(ctx, target); err != nil {
		return Manifest{}, err
	}
	m.Files = s.files
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := target.Put(ctx, s.folder+"_manifest.json", b); err != nil {
		return Manifest{}, err
	}
	objs, err := target.List(ctx, s.folder)
	if err != nil {
		return Manifest{}, err
	}
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".parquet") && !strings.Contains(o.Key, s.run) {
			if err := target.Delete(ctx, o.Key); err != nil {
				return Manifest{}, err
			}
		}
	}
	return m, nil
}
