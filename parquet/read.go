package parquet

import (
	"errors"
	"fmt"
	"io"

	pq "github.com/parquet-go/parquet-go"
)

// ReadInt64Column returns every value of a top-level INT64 column of a
// Parquet file, nulls left out. The lake reads its files' sequence
// columns with it.
func ReadInt64Column(r io.ReaderAt, size int64, name string) ([]int64, error) {
	f, err := pq.OpenFile(r, size)
	if err != nil {
		return nil, fmt.Errorf("parquet: %w", err)
	}
	leaf, ok := f.Schema().Lookup(name)
	if !ok {
		return nil, fmt.Errorf("parquet: no column %q", name)
	}
	out := make([]int64, 0, f.NumRows())
	buf := make([]pq.Value, 1024)
	for _, rg := range f.RowGroups() {
		pages := rg.ColumnChunks()[leaf.ColumnIndex].Pages()
		for {
			p, err := pages.ReadPage()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				pages.Close()
				return nil, fmt.Errorf("parquet: %w", err)
			}
			vr := p.Values()
			for {
				n, err := vr.ReadValues(buf)
				for _, v := range buf[:n] {
					if !v.IsNull() {
						out = append(out, v.Int64())
					}
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					pages.Close()
					return nil, fmt.Errorf("parquet: %w", err)
				}
			}
			pq.Release(p)
		}
		pages.Close()
	}
	return out, nil
}
