package lake

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/plinth-data/plinth/parquet"
)

// landedIndex answers whether a partition's files already hold an event,
// by its stream sequence. Each partition's file names (their sequence
// ranges) are listed once; a sequence that falls in a file's range is
// looked up in the file's own sequence column, so the answer is exact
// whatever the boundaries of the batches, compaction or redeliveries.
// Only sequences that come again (after a crash or a redelivery) fall in
// a range, so files are rarely read.
type landedIndex struct {
	target     Target
	partitions map[string][]landedFile
}

type landedFile struct {
	key         string
	first, last uint64
	seqs        map[uint64]bool // read when first needed
}

func newLandedIndex(t Target) *landedIndex {
	return &landedIndex{target: t, partitions: map[string][]landedFile{}}
}

// has reports whether a file of the partition holds seq.
func (x *landedIndex) has(ctx context.Context, partition string, seq uint64) (bool, error) {
	files, ok := x.partitions[partition]
	if !ok {
		objs, err := x.target.List(ctx, partition)
		if err != nil {
			return false, fmt.Errorf("lake: listing %s: %w", partition, err)
		}
		for _, o := range objs {
			if first, last, ok := ParsePartName(o.Key); ok {
				files = append(files, landedFile{key: o.Key, first: first, last: last})
			}
		}
		x.partitions[partition] = files
	}
	for i := range files {
		f := &files[i]
		if seq < f.first || seq > f.last {
			continue
		}
		if f.seqs == nil {
			seqs, err := readSequences(ctx, x.target, f.key)
			if errors.Is(err, ErrNotFound) {
				// Compacted away since it was listed: list again.
				delete(x.partitions, partition)
				return x.has(ctx, partition, seq)
			}
			if err != nil {
				return false, err
			}
			f.seqs = make(map[uint64]bool, len(seqs))
			for _, s := range seqs {
				f.seqs[uint64(s)] = true
			}
		}
		if f.seqs[seq] {
			return true, nil
		}
	}
	return false, nil
}

// add records a file just landed.
func (x *landedIndex) add(partition, key string, first, last uint64) {
	if _, ok := x.partitions[partition]; !ok {
		return // listed when first asked, with this file
	}
	x.partitions[partition] = append(x.partitions[partition], landedFile{key: key, first: first, last: last})
}

// readSequences returns the sequence column of an events file.
func readSequences(ctx context.Context, t Target, key string) ([]int64, error) {
	b, err := t.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	seqs, err := parquet.ReadInt64Column(bytes.NewReader(b), int64(len(b)), "sequence")
	if err != nil {
		return nil, fmt.Errorf("lake: reading %s: %w", key, err)
	}
	return seqs, nil
}
