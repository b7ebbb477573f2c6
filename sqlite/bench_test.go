package sqlite_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/report"
	"github.com/plinth-data/plinth/spec"
	"github.com/plinth-data/plinth/sqlite"
	"github.com/plinth-data/plinth/storetest"
)

// benchResidents is how many residents the benchmark database holds.
const benchResidents = 100_000

// fixture is the benchmark database, built once per test binary run (it
// takes a few seconds) and removed by TestMain.
var fixture struct {
	once     sync.Once
	dir      string
	path     string
	postcode string // the postcode of one resident's address
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture.dir != "" {
		os.RemoveAll(fixture.dir)
	}
	os.Exit(code)
}

var (
	benchFirst = []string{"Olivia", "Amelia", "Isla", "Ava", "Mia", "Ivy", "Lily", "Isabella", "Rosie", "Sophia",
		"Grace", "Freya", "Zoë", "Seán", "Noah", "Oliver", "George", "Arthur", "Muhammad", "Leo", "Harry", "Oscar",
		"Archie", "Henry", "Theodore", "Jack", "Charlie", "Łukasz", "Aleksandra", "Chidi", "Adaeze", "Mehmet", "Ayşe",
		"Priya", "Arjun", "Wei", "Mei", "Kofi", "Ama", "Fatima"}
	benchLast = []string{"Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
		"Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Thomas", "Clarke",
		"Jackson", "Wood", "Harris", "Edwards", "Turner", "Martin", "Cooper", "Hill", "Ward", "Hughes", "Moore",
		"Clark", "King", "Harrison", "Lewis", "Baker", "Lee", "Allen", "Morris", "Khan", "Scott", "Watson", "Davis",
		"Parker", "James", "Bennett", "Young", "Phillips", "Richardson", "Mitchell", "Bailey", "Carter", "Cook",
		"Singh", "Shaw", "Bell", "Collins", "Morgan", "Kelly", "Begum", "O'Brien", "Nowak", "Okafor", "Yılmaz"}
	benchAreas   = []string{"E", "N", "SE", "SW", "NW", "W", "EC", "WC", "IG", "RM"}
	benchLetters = "ABDEFGHJLNPQRSTUWXYZ"
)

// benchResident makes the i-th resident, the same on every run.
func benchResident(r *rand.Rand, i int) map[string]any {
	postcode := func() string {
		return fmt.Sprintf("%s%d %d%c%c", benchAreas[r.IntN(len(benchAreas))], 1+r.IntN(20), r.IntN(10),
			benchLetters[r.IntN(len(benchLetters))], benchLetters[r.IntN(len(benchLetters))])
	}
	last := benchLast[r.IntN(len(benchLast))]
	if i%1000 == 0 {
		last = "Quartermaine" // rare: one in a thousand
	}
	addresses := []any{map[string]any{
		"addressLine1": fmt.Sprintf("%d %s Road", 1+r.IntN(200), benchLast[r.IntN(len(benchLast))]),
		"postCode":     postcode(),
		"startDate":    time.Date(2000+r.IntN(24), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC).Format(time.DateOnly),
	}}
	if r.IntN(3) == 0 {
		addresses = append(addresses, map[string]any{"addressLine1": "Flat " + fmt.Sprint(1+r.IntN(40)), "postCode": postcode()})
	}
	return map[string]any{
		"title":       []string{"Mr", "Ms", "Mrs", "Mx", "Dr"}[r.IntN(5)],
		"firstName":   benchFirst[r.IntN(len(benchFirst))],
		"lastName":    last,
		"dateOfBirth": time.Date(1930+r.IntN(90), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC).Format(time.DateOnly),
		"gender":      []string{"F", "M", "I", "U"}[r.IntN(4)],
		"restricted":  r.IntN(50) == 0,
		"ageContext":  []string{"A", "C", "B"}[r.IntN(3)],
		"uprn":        fmt.Sprint(100000000 + r.IntN(900000000)),
		"phoneNumbers": []any{map[string]any{
			"number": fmt.Sprintf("020 7946 %04d", r.IntN(10000)),
			"type":   "home",
		}},
		"addresses": addresses,
	}
}

func residentsEntity(b testing.TB) ([]*plinth.Domain, *plinth.Entity) {
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		b.Fatal(err)
	}
	return ds, entity(b, ds, "residents")
}

// benchStore opens the benchmark database, building it on first use.
func benchStore(b *testing.B) (*sqlite.Store, *plinth.Entity) {
	ds, e := residentsEntity(b)
	fixture.once.Do(func() {
		fixture.dir, fixture.err = os.MkdirTemp("", "plinth-sqlite-bench-")
		if fixture.err != nil {
			return
		}
		fixture.path = filepath.Join(fixture.dir, "residents.db")
		fixture.err = buildFixture(b, ds, e)
	})
	if fixture.err != nil {
		b.Fatal(fixture.err)
	}
	s, err := sqlite.Open(context.Background(), fixture.path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.Prepare(context.Background(), ds); err != nil {
		b.Fatal(err)
	}
	return s, e
}

func buildFixture(b *testing.B, ds []*plinth.Domain, e *plinth.Entity) error {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, fixture.path)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Prepare(ctx, ds); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]map[string]any, benchResidents)
	for i := range data {
		d, err := e.Validate(benchResident(r, i), true)
		if err != nil {
			return fmt.Errorf("resident %d: %w", i, err)
		}
		data[i] = d
	}
	fixture.postcode = data[benchResidents/2]["addresses"].([]any)[0].(map[string]any)["postCode"].(string)
	start := time.Now()
	if err := s.BulkInsert(ctx, e, data); err != nil {
		return err
	}
	b.Logf("bulk-inserted %d residents in %s", benchResidents, time.Since(start).Round(time.Millisecond))
	return nil
}

func BenchmarkGet(b *testing.B) {
	s, e := benchStore(b)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	for b.Loop() {
		id := int64(1 + r.IntN(benchResidents))
		if _, err := s.Get(ctx, e, id); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetParallel(b *testing.B) {
	s, e := benchStore(b)
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 5))
		for pb.Next() {
			if _, err := s.Get(ctx, e, int64(1+r.IntN(benchResidents))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkList(b *testing.B) {
	s, e := benchStore(b)
	ctx := context.Background()
	for _, bc := range []struct{ name, query string }{
		{"FirstPage", ""},
		{"LastNameContains", "last_name=son"},
		{"LastNameContainsRare", "last_name=quarterm"},
		{"FirstNamePrefix", "first_name=ol"},
		{"DateOfBirthRange", "date_of_birth_from=1990-01-01&date_of_birth_to=1990-12-31"},
		{"Postcode", "postcode=" + url.QueryEscape(fixture.postcode)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			v, err := url.ParseQuery(bc.query)
			if err != nil {
				b.Fatal(err)
			}
			q, err := e.ParseQuery(v)
			if err != nil {
				b.Fatal(err)
			}
			var n int
			for b.Loop() {
				p, err := s.List(ctx, e, q)
				if err != nil {
					b.Fatal(err)
				}
				n = len(p.Records)
			}
			b.ReportMetric(float64(n), "records/op")
		})
	}
}

// BenchmarkScanReport: every resident through Scan and a report encoder,
// as the Reporting API exports them (less HTTP), with the process's CPU
// time per record beside the wall time: on a busy machine the CPU time is
// the steadier figure.
func BenchmarkScanReport(b *testing.B) {
	s, e := benchStore(b)
	for _, f := range []report.Format{report.FormatCSV, report.FormatNDJSON} {
		b.Run(string(f), func(b *testing.B) { storetest.BenchScanReport(b, s, e, f) })
	}
}

// BenchmarkAuditAppendAndChain is what each audited request costs the
// SQLite writer: records appended 8 at a time (as the API's group commit
// does under load), then chained 256 at a time (as the chainer's polls
// do). Reported per record.
func BenchmarkAuditAppendAndChain(b *testing.B) {
	ctx := context.Background()
	s, batch := auditBench(b, 8)
	pending := 0
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := s.AppendAudit(ctx, batch); err != nil {
			b.Fatal(err)
		}
		if pending += len(batch); pending >= 256 {
			if _, err := audit.ChainPending(ctx, s); err != nil {
				b.Fatal(err)
			}
			pending = 0
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(batch)), "µs/record")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N*len(batch)), "cpu-µs/record")
}

// BenchmarkChainAudit is the chainer's share alone: 256 records appended
// in one batch (not timed), then chained in one ChainAudit. CPU time per
// record (the process's user and system time, steadier than wall time on
// a busy machine).
func BenchmarkChainAudit(b *testing.B) {
	s, batch := auditBench(b, 256)
	benchChain(b, s, batch)
}

// BenchmarkChainAuditList is BenchmarkChainAudit for list records: each
// names the same 20 record ids (a first page's, as a popular page's
// records do).
func BenchmarkChainAuditList(b *testing.B) {
	s, batch := auditBench(b, 256)
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	for i := range batch {
		batch[i].Operation, batch[i].RecordIDs, batch[i].Count = "list", ids, len(ids)
	}
	benchChain(b, s, batch)
}

// benchChain appends batch (not timed) and chains it, over and over,
// reporting the CPU time per chained record.
func benchChain(b *testing.B, s *sqlite.Store, batch []plinth.AuditRecord) {
	ctx := context.Background()
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		if _, err := s.AppendAudit(ctx, batch); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cpu0 := cpuTime()
		if n, err := audit.ChainPending(ctx, s); err != nil || n != int64(len(batch)) {
			b.Fatal(n, err)
		}
		cpu += cpuTime() - cpu0
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*len(batch)), "cpu-µs/record")
}

// auditBench opens a store with the system tables only, closed when b
// ends, and a batch of n copies of benchAuditRecord.
func auditBench(b *testing.B, n int) (*sqlite.Store, []plinth.AuditRecord) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "audit.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.Prepare(ctx, nil); err != nil {
		b.Fatal(err)
	}
	batch := make([]plinth.AuditRecord, n)
	for i := range batch {
		batch[i] = benchAuditRecord
	}
	return s, batch
}

var benchAuditRecord = plinth.AuditRecord{CorrelationID: "c0ffee", Environment: "development", Domain: "residents",
	Entity: "residents", Operation: "view", Method: "GET", Route: "/api/v1/residents/{id}",
	Principal: plinth.Principal{Subject: "developer", Email: "developer@example.org", Groups: []string{"plinth-developers"}},
	Decision:  plinth.DecisionAllow, Status: 200, RecordIDs: []string{"12345"}, Count: 1, DurationMs: 0.4,
	ClientAddress: "127.0.0.1", UserAgent: "bench"}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRelayPass is the relay's share of the embedded store: 256
// events of about 2 KB appended (not timed), then read as pending and
// marked sent, as one relay pass does. CPU time per event.
func BenchmarkRelayPass(b *testing.B) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "outbox.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.Prepare(ctx, nil); err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"data":"` + strings.Repeat("x", 2000) + `"}`)
	const batch = 256
	var cpu time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		if err := s.Write(ctx, func(tx plinth.Tx) error {
			for range batch {
				n++
				e := plinth.OutboxEntry{EventID: strconv.Itoa(n), Subject: "s", Domain: "d", Payload: payload}
				if err := tx.(plinth.EventTx).AppendEvent(ctx, e); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cpu0 := cpuTime()
		es, err := s.PendingEvents(ctx, batch)
		if err != nil || len(es) != batch {
			b.Fatal(len(es), err)
		}
		ids := make([]string, len(es))
		for i, e := range es {
			ids[i] = e.EventID
		}
		if err := s.MarkEventsSent(ctx, ids); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - cpu0
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*batch), "cpu-µs/event")
}
