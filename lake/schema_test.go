package lake_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/lake"
	plinthnats "github.com/plinth-data/plinth/nats"
	rt "github.com/plinth-data/plinth/report/reporttest"
)

// withField returns a copy of e's domain in which e has one more field
// (or, with replace, a field of that name changed).
func withField(e *plinth.Entity, f *plinth.Field) *plinth.Entity {
	d := *e.Domain
	ne := *e
	ne.Domain = &d
	ne.Fields = nil
	replaced := false
	for _, x := range e.Fields {
		if x.Name == f.Name {
			x, replaced = f, true
		}
		ne.Fields = append(ne.Fields, x)
	}
	if !replaced {
		ne.Fields = append(ne.Fields, f)
	}
	d.Entities = []*plinth.Entity{&ne}
	return &ne
}

// A new field is a new column in new files, null in older ones; a field
// whose type changed is refused, naming the column.
func TestSchemaEvolution(t *testing.T) {
	e, recs := rt.Sample(t, 20)
	b := newBus(t, e.Domain)
	b.publish(t, e, recs[:10], time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	root := t.TempDir()
	cfg := lake.Config{FlushInterval: 200 * time.Millisecond}
	land(t, b, e.Domain, lake.Dir(root), cfg)

	e2 := withField(e, &plinth.Field{Name: "nickname", Type: plinth.TypeString, PII: plinth.PIINone})
	for i := range recs[10:] {
		recs[10+i].Data["nickname"] = fmt.Sprintf("nick%d", i)
	}
	b.publish(t, e2, recs[10:], time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	land(t, b, e2.Domain, lake.Dir(root), cfg)
	res := lakeEvents(t, root, e, "SELECT count(*) FILTER (WHERE state_nickname IS NULL AND eventType LIKE '%%Created%%'), count(*) FILTER (WHERE state_nickname LIKE 'nick%%' AND eventType LIKE '%%Created%%') FROM %s")
	if fmt.Sprint(res.Rows[0]) != "[10 10]" {
		t.Fatalf("old rows with a null nickname, new rows with one: %v", res.Rows)
	}

	e3 := withField(e2, &plinth.Field{Name: "label", Type: plinth.TypeInteger, PII: plinth.PIINone})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := plinthnats.NewBatchSource(ctx, b.js, b.stream, "lake", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	err = lake.NewLander(e3.Domain, lake.Dir(root), cfg).Run(ctx, src)
	if !errors.Is(err, lake.ErrSchema) || !strings.Contains(err.Error(), "state_label") {
		t.Fatalf("a changed type was not refused: %v", err)
	}
}

// Special-category fields stay out of the domain's datasets; a domain
// that opts in gets them in a dataset of their own under _special/.
func TestSpecialCategoryDataset(t *testing.T) {
	e, recs := rt.Residents(t, 20)
	for i := range recs {
		recs[i].Data["ethnicity"] = fmt.Sprintf("group-%d", i)
	}
	b := newBus(t, e.Domain)
	ids := b.publish(t, e, recs, time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	root := t.TempDir()
	land(t, b, e.Domain, lake.Dir(root), lake.Config{FlushInterval: 200 * time.Millisecond, Special: true})

	main := lakeEvents(t, root, e, "SELECT * FROM %s")
	for _, c := range main.Columns {
		if strings.Contains(c, "ethnicity") || strings.Contains(c, "religion") {
			t.Fatalf("special-category column %s in the main dataset", c)
		}
	}
	for _, r := range main.Rows {
		for _, v := range r {
			if s, ok := v.(string); ok && strings.Contains(s, "group-") {
				t.Fatalf("a special-category value in the main dataset: %s", s)
			}
		}
	}
	glob := root + "/_special/" + lake.EntityPrefix(e) + "events/**/*.parquet"
	special := rt.DuckDB(t, "SELECT * EXCLUDE (import_year, import_month, import_day, import_date) FROM read_parquet("+rt.SQLString(glob)+", hive_partitioning = true)")[0]
	if len(special.Rows) != len(ids) {
		t.Fatalf("the special dataset holds %d events, want %d", len(special.Rows), len(ids))
	}
	want := "sequence id eventType entityId entityVersion dateTime userName userEmail correlationId sourceSystem oldData newData state_mosaicId state_ethnicity state_religion state_version state_createdAt state_updatedAt"
	if got := strings.Join(special.Columns, " "); got != want {
		t.Fatalf("special dataset columns\n %s\nwant\n %s", got, want)
	}
}
