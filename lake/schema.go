package lake

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/plinth-data/plinth/parquet"
)

// ErrSchema is wrapped by the error of a lander whose entity's columns
// changed type since the lake's newest file of it.
var ErrSchema = errors.New("a column of the lake would change its type")

// checkSchema compares the columns an entity's events are landed with now
// with those of its newest events file. A new field is a new column (older
// files read it as null); a removed field leaves its column in older files
// only. A field whose type changed would give one column two types, which
// readers cannot union: it is refused.
func (v *entityView) checkSchema(ctx context.Context, target Target) error {
	objs, err := target.List(ctx, v.prefix+DatasetEvents+"/")
	if err != nil {
		return err
	}
	var newest string
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".parquet") && o.Key > newest {
			newest = o.Key
		}
	}
	if newest == "" {
		return nil
	}
	body, err := target.Get(ctx, newest)
	if errors.Is(err, ErrNotFound) {
		return nil // compacted away meanwhile; the next start checks
	}
	if err != nil {
		return err
	}
	was, err := parquet.FileColumns(body)
	if err != nil {
		return fmt.Errorf("lake: %s: %w", newest, err)
	}
	var changed []string
	for name, typ := range parquet.Columns(parquet.EventSchemaFor(v.e)) {
		if old, ok := was[name]; ok && old != typ {
			changed = append(changed, fmt.Sprintf("%s (%s in the lake, %s now)", name, old, typ))
		}
	}
	if len(changed) == 0 {
		return nil
	}
	sort.Strings(changed)
	return fmt.Errorf("%w: %s%s: %s. Give the changed field a new name (a new column), or land the entity under a new lake root",
		ErrSchema, v.prefix, DatasetEvents, strings.Join(changed, "; "))
}
