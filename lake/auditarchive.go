package lake

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/parquet"
)

// AuditPrefix is the folder of the archived audit trail,
// "_audit/import_year=…/…/import_date=YYYYMMDD/part-<first>-<last>.parquet",
// each file a run of the chain by sequence, partitioned by the day of its
// records.
const AuditPrefix = "_audit/"

// metaAuditMaxTime is the footer key of the latest record time of a file.
const metaAuditMaxTime = "plinth.audit.maxTime"

// AuditArchive is the audit trail's archive in the lake. It implements
// audit.Archive.
type AuditArchive struct{ target Target }

// NewAuditArchive returns the archive of a lake.
func NewAuditArchive(t Target) *AuditArchive { return &AuditArchive{target: t} }

type archiveFile struct {
	key         string
	first, last int64
}

// files lists the archive's files in sequence order.
func (a *AuditArchive) files(ctx context.Context) ([]archiveFile, error) {
	objs, err := a.target.List(ctx, AuditPrefix)
	if err != nil {
		return nil, err
	}
	var out []archiveFile
	for _, o := range objs {
		if first, last, ok := ParsePartName(o.Key); ok {
			out = append(out, archiveFile{o.Key, int64(first), int64(last)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].first < out[j].first })
	return out, nil
}

// Last returns the sequence of the newest archived record; 0 when the
// archive is empty.
func (a *AuditArchive) Last(ctx context.Context) (int64, error) {
	files, err := a.files(ctx)
	if err != nil || len(files) == 0 {
		return 0, err
	}
	return files[len(files)-1].last, nil
}

// Empty reports whether the archive holds no record.
func (a *AuditArchive) Empty(ctx context.Context) (bool, error) {
	last, err := a.Last(ctx)
	return last == 0, err
}

// ScanArchive calls fn for every archived record after sequence after, in
// order, as it was archived (its JSON decoded; a file whose hash column
// disagrees with its record's JSON is an error).
func (a *AuditArchive) ScanArchive(ctx context.Context, after int64, fn func(plinth.AuditRecord) error) error {
	files, err := a.files(ctx)
	if err != nil {
		return err
	}
	for _, f := range files {
		if f.last <= after {
			continue
		}
		body, err := a.target.Get(ctx, f.key)
		if err != nil {
			return err
		}
		rows, err := parquet.ReadAudit(body)
		if err != nil {
			return fmt.Errorf("lake: %s: %w", f.key, err)
		}
		for _, row := range rows {
			if row.Sequence <= after {
				continue
			}
			var r plinth.AuditRecord
			if err := json.Unmarshal([]byte(row.Record), &r); err != nil {
				return fmt.Errorf("lake: %s: record %d: %w", f.key, row.Sequence, err)
			}
			if r.Sequence != row.Sequence || r.Hash != row.Hash {
				return fmt.Errorf("lake: %s: record %d: its columns and its JSON disagree", f.key, row.Sequence)
			}
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// ArchiveStats counts what Archive did.
type ArchiveStats struct {
	Records int64
	Files   int
	Last    int64 // the newest archived sequence
}

// Archive copies the chained records the archive does not hold yet, in
// order, into files of at most fileRecords records (default 100,000), one
// day each. Files are written in sequence order, so the archive is always
// the chain's first records; a stopped run is taken up by the next.
func (a *AuditArchive) Archive(ctx context.Context, store plinth.AuditStore, fileRecords int, progress func(int64)) (ArchiveStats, error) {
	if fileRecords <= 0 {
		fileRecords = 100_000
	}
	last, err := a.Last(ctx)
	if err != nil {
		return ArchiveStats{}, err
	}
	st := ArchiveStats{Last: last}
	var run []plinth.AuditRecord
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		if err := a.write(ctx, run); err != nil {
			return err
		}
		st.Records += int64(len(run))
		st.Files++
		st.Last = run[len(run)-1].Sequence
		run = run[:0]
		if progress != nil {
			progress(st.Records)
		}
		return nil
	}
	err = store.ScanAudit(ctx, last, func(r plinth.AuditRecord) error {
		if len(run) > 0 && (len(run) >= fileRecords || !sameDay(run[0].Time, r.Time)) {
			if err := flush(); err != nil {
				return err
			}
		}
		run = append(run, r)
		return nil
	})
	if err == nil {
		err = flush()
	}
	return st, err
}

func sameDay(a, b time.Time) bool {
	return a.UTC().Format(time.DateOnly) == b.UTC().Format(time.DateOnly)
}

// write lands one run of records as a file.
func (a *AuditArchive) write(ctx context.Context, recs []plinth.AuditRecord) error {
	rows := make([]parquet.AuditRow, len(recs))
	var maxTime time.Time
	for i, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		ids, _ := json.Marshal(r.RecordIDs)
		rows[i] = parquet.AuditRow{Sequence: r.Sequence, Time: r.Time.UTC(), CorrelationID: r.CorrelationID,
			Environment: r.Environment, Domain: r.Domain, Entity: r.Entity, Operation: r.Operation, Route: r.Route,
			UserSubject: r.Principal.Subject, UserEmail: r.Principal.Email, Consumer: r.Principal.Consumer,
			Decision: r.Decision, Status: int64(r.Status), RecordIDs: string(ids), Count: int64(r.Count),
			Record: string(b), PrevHash: r.PrevHash, Hash: r.Hash}
		if r.Time.After(maxTime) {
			maxTime = r.Time
		}
	}
	var buf bytes.Buffer
	if err := parquet.WriteAudit(&buf, rows, map[string]string{metaAuditMaxTime: maxTime.UTC().Format(time.RFC3339Nano)}); err != nil {
		return err
	}
	key := AuditPrefix + PartitionPath(recs[0].Time) + "/" + PartName(uint64(recs[0].Sequence), uint64(recs[len(recs)-1].Sequence))
	return a.target.Put(ctx, key, buf.Bytes())
}

// TrimThrough returns the highest sequence through which the hot audit
// trail may be trimmed: every record up to it is archived (the archive
// runs without a gap from record 1) and older than cutoff.
func (a *AuditArchive) TrimThrough(ctx context.Context, cutoff time.Time) (int64, error) {
	files, err := a.files(ctx)
	if err != nil {
		return 0, err
	}
	var through int64
	for _, f := range files {
		if f.first != through+1 {
			break // a gap: stop before it
		}
		body, err := a.target.Get(ctx, f.key)
		if err != nil {
			return 0, err
		}
		info, err := parquet.Inspect(body)
		if err != nil {
			return 0, err
		}
		maxTime, err := time.Parse(time.RFC3339Nano, info.Metadata[metaAuditMaxTime])
		if err != nil || !maxTime.Before(cutoff) {
			break
		}
		through = f.last
	}
	return through, nil
}
