package legacy

import (
	"context"
	"testing"

	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/mariadbtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
)

// BenchmarkReadAndBuild reads case-system persons with their addresses
// and phones from MariaDB and builds their records: the source side of a
// full load (rows/s in the output).
func BenchmarkReadAndBuild(b *testing.B) {
	ctx := context.Background()
	src, err := Open(ctx, mariadbtest.Database(b))
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	const rows = 5000
	if err := Fixture(ctx, src, FixtureOptions{System: "case", Rows: rows, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	m := shipped(b, "residents.case.mapping.yaml")
	if err := Check(ctx, src, m); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		snap, err := src.Snapshot(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var after LegacyKey
		for {
			batch, err := snap.readBatch(ctx, m, after, DefaultBatch)
			if err != nil {
				b.Fatal(err)
			}
			if len(batch) == 0 {
				break
			}
			after = batch[len(batch)-1].Legacy
		}
		snap.Close()
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkFullLoad loads case-system persons (with addresses and phones)
// from MariaDB into an empty PostgreSQL store: persons/s in the output.
func BenchmarkFullLoad(b *testing.B) {
	ctx := context.Background()
	src, err := Open(ctx, mariadbtest.Database(b))
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	rows := 20000
	if err := Fixture(ctx, src, FixtureOptions{System: "case", Rows: rows, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	m := shipped(b, "residents.case.mapping.yaml")
	if err := Check(ctx, src, m); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		st, err := postgres.Open(ctx, pgtest.Database(b))
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Prepare(ctx, plinthtest.Domains(b)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := Full(ctx, src, st, m, FullOptions{Batch: 2000}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "persons/s")
}

// BenchmarkReadAndBuildDeepJoins reads and builds the records of the
// templates whose joins go deeper than one level: tenancies with members
// and their phones and emails through contact links (three levels),
// tax payers with occupations and each property's address (two).
// Rows/s counts root rows (the fixture's 200 a run).
func BenchmarkReadAndBuildDeepJoins(b *testing.B) {
	for _, tc := range []struct{ system, mapping string }{
		{"housing", "housing.universal-housing.mapping.yaml"},
		{"benefits", "benefits.academy-council-tax.mapping.yaml"},
	} {
		b.Run(tc.system, func(b *testing.B) {
			ctx := context.Background()
			src := templateSource(b, KindMariaDB, tc.system)
			m, _ := templateMapping(b, src, tc.mapping)
			b.ResetTimer()
			n := 0
			for range b.N {
				snap, err := src.Snapshot(ctx)
				if err != nil {
					b.Fatal(err)
				}
				var after LegacyKey
				for {
					batch, err := snap.readBatch(ctx, m, after, DefaultBatch)
					if err != nil {
						b.Fatal(err)
					}
					if len(batch) == 0 {
						break
					}
					n += len(batch)
					after = batch[len(batch)-1].Legacy
				}
				snap.Close()
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
