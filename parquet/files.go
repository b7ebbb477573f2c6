package parquet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	pq "github.com/parquet-go/parquet-go"
)

// Files of the lake are rewritten (compaction, erasure) without knowing
// their entity: what is below works on any flat file this package wrote,
// keeping its schema, and its footer's key-value metadata unless told.

// FileInfo is what the lake needs to know of a file.
type FileInfo struct {
	Schema   string // the schema as text; files with equal text can be merged
	Rows     int64
	Metadata map[string]string
}

// Inspect reads a file's footer.
func Inspect(file []byte) (FileInfo, error) {
	f, err := pq.OpenFile(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		return FileInfo{}, fmt.Errorf("parquet: %w", err)
	}
	info := FileInfo{Schema: f.Schema().String(), Rows: f.NumRows(), Metadata: map[string]string{}}
	for _, kv := range f.Metadata().KeyValueMetadata {
		info.Metadata[kv.Key] = kv.Value
	}
	return info, nil
}

// Merge writes the rows of files, which must have one schema, into one
// file, in the order given, with the footer metadata meta.
func Merge(w io.Writer, files [][]byte, meta map[string]string) (int64, error) {
	return rewrite(w, files, meta, nil)
}

// Drop writes file's rows less those whose value in the named top-level
// column drop accepts (the value as text: a string as it is, an integer
// in decimal). The footer's metadata is kept. It returns the rows kept
// and dropped.
func Drop(w io.Writer, file []byte, column string, drop func(string) bool) (kept, dropped int64, err error) {
	f, err := pq.OpenFile(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		return 0, 0, fmt.Errorf("parquet: %w", err)
	}
	leaf, ok := f.Schema().Lookup(column)
	if !ok {
		return 0, 0, fmt.Errorf("parquet: no column %q", column)
	}
	meta := map[string]string{}
	for _, kv := range f.Metadata().KeyValueMetadata {
		meta[kv.Key] = kv.Value
	}
	keep := func(row pq.Row) bool {
		for _, v := range row {
			if v.Column() == leaf.ColumnIndex {
				if drop(valueText(v)) {
					dropped++
					return false
				}
				return true
			}
		}
		return true
	}
	kept, err = rewrite(w, [][]byte{file}, meta, keep)
	return kept, dropped, err
}

// Matches counts the rows of a file whose value in the named column
// drop accepts, reading that column only.
func Matches(file []byte, column string, match func(string) bool) (int64, error) {
	f, err := pq.OpenFile(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		return 0, fmt.Errorf("parquet: %w", err)
	}
	leaf, ok := f.Schema().Lookup(column)
	if !ok {
		return 0, nil
	}
	var n int64
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
				return 0, fmt.Errorf("parquet: %w", err)
			}
			vr := p.Values()
			for {
				k, err := vr.ReadValues(buf)
				for _, v := range buf[:k] {
					if !v.IsNull() && match(valueText(v)) {
						n++
					}
				}
				if err != nil {
					break
				}
			}
			pq.Release(p)
		}
		pages.Close()
	}
	return n, nil
}

func valueText(v pq.Value) string {
	switch v.Kind() {
	case pq.Int64:
		return strconv.FormatInt(v.Int64(), 10)
	case pq.Int32:
		return strconv.FormatInt(int64(v.Int32()), 10)
	case pq.ByteArray:
		return string(v.ByteArray())
	}
	return v.String()
}

// rewrite copies the rows of files that keep accepts (every row when keep
// is nil) into one zstd file with the first file's schema.
func rewrite(w io.Writer, files [][]byte, meta map[string]string, keep func(pq.Row) bool) (int64, error) {
	var out *pq.Writer
	var schema *pq.Schema
	var n int64
	rows := make([]pq.Row, 256)
	for i, file := range files {
		f, err := pq.OpenFile(bytes.NewReader(file), int64(len(file)))
		if err != nil {
			return 0, fmt.Errorf("parquet: file %d: %w", i, err)
		}
		if out == nil {
			schema = f.Schema()
			opts := []pq.WriterOption{schema, pq.Compression(&pq.Zstd), pq.CreatedBy("plinth", "", ""),
				pq.MaxRowsPerRowGroup(DefaultRowGroupRows * 10)}
			for k, v := range meta {
				opts = append(opts, pq.KeyValueMetadata(k, v))
			}
			out = pq.NewWriter(w, opts...)
		} else if f.Schema().String() != schema.String() {
			return 0, fmt.Errorf("parquet: file %d has another schema", i)
		}
		for _, rg := range f.RowGroups() {
			rr := rg.Rows()
			for {
				k, err := rr.ReadRows(rows)
				batch := rows[:k]
				if keep != nil {
					batch = batch[:0]
					for _, r := range rows[:k] {
						if keep(r) {
							batch = append(batch, r)
						}
					}
				}
				if len(batch) > 0 {
					if _, werr := out.WriteRows(batch); werr != nil {
						rr.Close()
						return 0, fmt.Errorf("parquet: %w", werr)
					}
					n += int64(len(batch))
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					rr.Close()
					return 0, fmt.Errorf("parquet: %w", err)
				}
			}
			rr.Close()
		}
	}
	if out == nil {
		return 0, errors.New("parquet: nothing to write")
	}
	if err := out.Close(); err != nil {
		return 0, fmt.Errorf("parquet: %w", err)
	}
	return n, nil
}

// Columns returns the type of each top-level column of a schema, as text
// (physical and logical type): two files whose columns have the same
// text hold the same kind of values there.
func Columns(s *pq.Schema) map[string]string {
	out := map[string]string{}
	for _, f := range s.Fields() {
		t := f.Type()
		text := t.Kind().String()
		if lt := t.LogicalType(); lt != nil {
			text += " " + lt.String()
		}
		out[f.Name()] = text
	}
	return out
}

// FileColumns is Columns of a file's schema.
func FileColumns(file []byte) (map[string]string, error) {
	f, err := pq.OpenFile(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		return nil, fmt.Errorf("parquet: %w", err)
	}
	return Columns(f.Schema()), nil
}
