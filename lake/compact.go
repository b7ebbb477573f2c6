package lake

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/plinth-data/plinth/parquet"
)

// MetaCompactedFrom is the footer key of a compacted file: the JSON list
// of the files it replaces. A compaction that stopped between writing the
// file and removing them is finished from it.
const MetaCompactedFrom = "plinth.compactedFrom"

// DefaultCompactTarget is the size compaction aims at.
const DefaultCompactTarget = 128 << 20

// CompactOptions tune Compact.
type CompactOptions struct {
	// Target is the size of the files to make (default 128 MiB): small
	// files are merged until the next would pass it.
	Target int64
	// Before: only partitions of days before it are compacted (default
	// today, UTC): the open partition is never touched.
	Before time.Time
	// Progress, when set, is called after each partition.
	Progress func(partition string, merged, files int)
}

// CompactStats counts what Compact did.
type CompactStats struct {
	Partitions   int
	FilesMerged  int
	FilesWritten int
	Rows         int64
	Recovered    int // leftovers of an interrupted compaction removed
}

// Compact merges the small event files of closed partitions below prefix
// (such as "residents/" or "residents/residents/"). Files are merged only
// with files of the same schema, in sequence order; the merged file is
// written (and durable) before the files it replaces are removed, so a
// crash leaves at worst both, and the next Compact removes the old ones.
// Rows are copied as they are: the multiset of rows does not change.
func Compact(ctx context.Context, target Target, prefix string, opts CompactOptions) (CompactStats, error) {
	if opts.Target <= 0 {
		opts.Target = DefaultCompactTarget
	}
	if opts.Before.IsZero() {
		opts.Before = time.Now().UTC().Truncate(24 * time.Hour)
	}
	objs, err := target.List(ctx, prefix)
	if err != nil {
		return CompactStats{}, err
	}
	parts := map[string][]Object{}
	for _, o := range objs {
		if !strings.Contains(o.Key, "/"+DatasetEvents+"/") {
			continue
		}
		if _, _, ok := ParsePartName(o.Key); !ok {
			continue
		}
		day, ok := PartitionDay(o.Key)
		if !ok || !day.Before(opts.Before) {
			continue
		}
		folder := o.Key[:strings.LastIndex(o.Key, "/")+1]
		parts[folder] = append(parts[folder], o)
	}
	keys := make([]string, 0, len(parts))
	for k := range parts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var st CompactStats
	for _, k := range keys {
		if err := compactPartition(ctx, target, k, parts[k], opts, &st); err != nil {
			return st, err
		}
	}
	return st, nil
}

type compactFile struct {
	Object
	first, last uint64
	body        []byte
	info        parquet.FileInfo
}

func compactPartition(ctx context.Context, target Target, folder string, objs []Object, opts CompactOptions, st *CompactStats) error {
	var files []*compactFile
	present := map[string]bool{}
	for _, o := range objs {
		present[o.Key] = true
	}
	gone := map[string]bool{}
	for _, o := range objs {
		if gone[o.Key] {
			continue // removed below as a leftover
		}
		first, last, _ := ParsePartName(o.Key)
		// A compacted file holding another file's range may be one whose
		// compaction stopped before removing its inputs: read it.
		recover := isCompacted(o.Key) && coversAnother(o, first, last, objs)
		if o.Size >= opts.Target && !recover {
			continue // big already
		}
		body, err := target.Get(ctx, o.Key)
		if err != nil {
			return err
		}
		info, err := parquet.Inspect(body)
		if err != nil {
			return fmt.Errorf("lake: %s: %w", o.Key, err)
		}
		if from := info.Metadata[MetaCompactedFrom]; recover && from != "" {
			var old []string
			if err := json.Unmarshal([]byte(from), &old); err == nil {
				for _, k := range old {
					if present[k] && !gone[k] && k != o.Key {
						if err := target.Delete(ctx, k); err != nil {
							return err
						}
						gone[k] = true
						st.Recovered++
					}
				}
			}
		}
		files = append(files, &compactFile{Object: o, first: first, last: last, body: body, info: info})
	}
	kept := files[:0]
	for _, f := range files {
		if !gone[f.Key] && f.Size < opts.Target {
			kept = append(kept, f)
		}
	}
	files = kept
	sort.Slice(files, func(i, j int) bool { return files[i].first < files[j].first })
	st.Partitions++
	merged := 0
	for _, bin := range bins(files, opts.Target) {
		if len(bin) < 2 {
			continue
		}
		if err := mergeBin(ctx, target, folder, bin, st); err != nil {
			return err
		}
		merged += len(bin)
	}
	if opts.Progress != nil {
		opts.Progress(folder, merged, len(objs))
	}
	return nil
}

// bins groups files, in order, into runs of one schema whose sizes add up
// to at most target.
func bins(files []*compactFile, target int64) [][]*compactFile {
	var out [][]*compactFile
	var cur []*compactFile
	var size int64
	for _, f := range files {
		if len(cur) > 0 && (size+f.Size > target || f.info.Schema != cur[0].info.Schema) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, f)
		size += f.Size
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func mergeBin(ctx context.Context, target Target, folder string, bin []*compactFile, st *CompactStats) error {
	bodies := make([][]byte, len(bin))
	keys := make([]string, len(bin))
	first, last := bin[0].first, bin[0].last
	var rows int64
	for i, f := range bin {
		bodies[i], keys[i] = f.body, f.Key
		first, last = min(first, f.first), max(last, f.last)
		rows += f.info.Rows
	}
	meta := map[string]string{}
	for k, v := range bin[0].info.Metadata {
		meta[k] = v
	}
	from, _ := json.Marshal(keys)
	meta[MetaCompactedFrom] = string(from)
	var buf bytes.Buffer
	n, err := parquet.Merge(&buf, bodies, meta)
	if err != nil {
		return fmt.Errorf("lake: compacting %s: %w", folder, err)
	}
	if n != rows {
		return fmt.Errorf("lake: compacting %s: wrote %d rows of %d", folder, n, rows)
	}
	// The suffix keeps the name apart from every input's, even one of the
	// same range (a compacted file compacted again).
	key := folder + strings.TrimSuffix(PartName(first, last), ".parquet") + "-c" + strconv.FormatInt(time.Now().UnixNano(), 36) + ".parquet"
	if err := target.Put(ctx, key, buf.Bytes()); err != nil {
		return err
	}
	for _, k := range keys {
		if err := target.Delete(ctx, k); err != nil {
			return err
		}
	}
	st.FilesMerged += len(bin)
	st.FilesWritten++
	st.Rows += n
	return nil
}

// isCompacted reports whether a part file was made by Compact.
func isCompacted(key string) bool { return strings.Contains(path.Base(key), "-c") }

// coversAnother reports whether another file's range lies within
// first…last.
func coversAnother(o Object, first, last uint64, objs []Object) bool {
	for _, x := range objs {
		if x.Key == o.Key {
			continue
		}
		if a, b, ok := ParsePartName(x.Key); ok && a >= first && b <= last {
			return true
		}
	}
	return false
}
