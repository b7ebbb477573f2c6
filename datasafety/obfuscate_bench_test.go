package datasafety_test

import (
	"testing"

	"github.com/plinth-data/plinth/datasafety"
)

// BenchmarkObfuscateResidents measures the engine on the shipped residents
// entity (records from the dummy generator): records/s on one core.
func BenchmarkObfuscateResidents(b *testing.B) {
	var es = shippedEntities(&testing.T{})
	var e = es[0]
	for _, x := range es {
		if x.Plural == "residents" {
			e = x
		}
	}
	docs := datasafety.NewGenerator(1).Records(e, 1000)
	recs := make([]map[string]any, len(docs))
	for i, d := range docs {
		v, err := e.Validate(d, true)
		if err != nil {
			b.Fatal(err)
		}
		v[e.Key.Name] = int64(i + 1)
		recs[i] = v
	}
	o := datasafety.NewObfuscator(obfKey)
	n := 0
	for b.Loop() {
		if _, err := o.Record(e, recs[n%len(recs)]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkObfuscateInteger(b *testing.B) {
	o := datasafety.NewObfuscator(obfKey)
	for i := 0; b.Loop(); i++ {
		o.Integer(int64(10_000_000+i), nil, nil)
	}
}

// BenchmarkGenerateResidents measures dummy-data generation of the shipped
// residents entity (what plinth seed spends most of its CPU on): records/s
// on one core.
func BenchmarkGenerateResidents(b *testing.B) {
	var es = shippedEntities(&testing.T{})
	var e = es[0]
	for _, x := range es {
		if x.Plural == "residents" {
			e = x
		}
	}
	g := datasafety.NewGenerator(1)
	n := 0
	for b.Loop() {
		g.Records(e, 100)
		n += 100
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
