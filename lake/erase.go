package lake

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/parquet"
)

// EraseStats counts what Erase did.
type EraseStats struct {
	FilesRead      int
	FilesRewritten int
	FilesRemoved   int
	Rows           int64
}

// Erase removes every row of one record from the lake: its events (by
// entityId) and its snapshot rows (by key), in the entity's datasets and
// its special-category dataset. Each file holding the record is
// rewritten without it under the same name (atomically: a reader sees the
// old file or the new one), or removed when nothing else is left; a
// crash part-way leaves some files done, and running Erase again
// finishes the rest.
func Erase(ctx context.Context, target Target, e *plinth.Entity, entityID string) (EraseStats, error) {
	var st EraseStats
	for _, prefix := range []string{EntityPrefix(e), SpecialPrefix(e)} {
		objs, err := target.List(ctx, prefix)
		if err != nil {
			return st, err
		}
		for _, o := range objs {
			if !strings.HasSuffix(o.Key, ".parquet") {
				continue
			}
			column := e.Key.Name
			if strings.HasPrefix(o.Key, prefix+DatasetEvents+"/") {
				column = "entityId"
			}
			if err := eraseFile(ctx, target, o.Key, column, entityID, &st); err != nil {
				return st, err
			}
		}
	}
	return st, nil
}

func eraseFile(ctx context.Context, target Target, key, column, id string, st *EraseStats) error {
	body, err := target.Get(ctx, key)
	if err != nil {
		return err
	}
	st.FilesRead++
	match := func(v string) bool { return v == id }
	n, err := parquet.Matches(body, column, match)
	if err != nil {
		return fmt.Errorf("lake: %s: %w", key, err)
	}
	if n == 0 {
		return nil
	}
	var buf bytes.Buffer
	kept, dropped, err := parquet.Drop(&buf, body, column, match)
	if err != nil {
		return fmt.Errorf("lake: erasing from %s: %w", key, err)
	}
	st.Rows += dropped
	if kept == 0 {
		st.FilesRemoved++
		return target.Delete(ctx, key)
	}
	st.FilesRewritten++
	return target.Put(ctx, key, buf.Bytes())
}
