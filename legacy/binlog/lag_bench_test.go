package binlog

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/legacy"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
)

// BenchmarkCDCLag drives a steady rate of source updates (BENCH_CDC_RATE,
// default 1,000/s, for b.N seconds of traffic… one second per iteration)
// into a private MariaDB and measures the end-to-end lag of each: from its
// commit in the source to when its record's update is seen committed in
// the target (looked for every 50 ms). Reports p50 and p99 in seconds.
func BenchmarkCDCLag(b *testing.B) {
	const persons = 2000
	f := setup(b, persons)
	ctx := context.Background()
	// The target is PostgreSQL, as in production.
	pg, err := postgres.Open(ctx, pgtest.Database(b))
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Close()
	if err := pg.Prepare(ctx, plinthtest.Domains(b)); err != nil {
		b.Fatal(err)
	}
	f.St = pg
	var mu sync.Mutex
	var lags []float64
	// Per person, the changes sent and not yet seen, in order: a change's
	// lag ends when the target shows it or a later change of the person
	// (which overwrote it at the source).
	type mark struct {
		k  int
		at time.Time // commit time at the source
	}
	sent := map[int][]mark{}
	seen := func(k int) {
		p := k % persons
		marks := sent[p]
		i := 0
		for ; i < len(marks) && marks[i].k <= k; i++ {
			lags = append(lags, time.Since(marks[i].at).Seconds())
		}
		if i > 0 {
			sent[p] = marks[i:]
		}
	}
	w, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: f.St, Environment: "development", Events: true, Audit: true})
	if err != nil {
		b.Fatal(err)
	}
	f.W = w
	capture, err := New(ctx, f.Src, f.url, f.M)
	if err != nil {
		b.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- legacy.RunCDC(cctx, f.Src, f.St, w, f.M, capture, legacy.CDCOptions{})
	}()
	// Wait for the initial load.
	for {
		c, found, _ := f.St.Checkpoint(ctx, f.M.CheckpointName("cdc"))
		if found && strings.Contains(string(c.Value), `"snapshotDone":true`) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Watch the target: a record whose last name is a sent marker arrived.
	watch := make(chan struct{})
	go func() {
		defer close(watch)
		since := time.Now().Add(-time.Second)
		for cctx.Err() == nil {
			// Only what changed since the last look, with a margin for
			// transactions that committed late (a record's updatedAt is
			// taken before its transaction commits): the watch must cost
			// little. A record's lag ends when the watch sees it, which
			// counts the commit and up to one look's delay.
			next := time.Now().Add(-500 * time.Millisecond)
			_, _ = f.St.Scan(cctx, f.M.Entity, plinth.ScanQuery{UpdatedSince: since}, func(r plinth.Record) error {
				name, _ := r.Data["lastName"].(string)
				if k, err := strconv.Atoi(strings.TrimPrefix(name, "Lag")); err == nil && strings.HasPrefix(name, "Lag") {
					mu.Lock()
					seen(k)
					mu.Unlock()
				}
				return nil
			})
			since = next
			time.Sleep(50 * time.Millisecond)
		}
	}()
	// Eight writers share the rate; change k goes to person k mod persons,
	// each paced to its slot in the second.
	const rate, writers = 1000, 8
	b.ResetTimer()
	seq := 0
	for range b.N {
		start := time.Now()
		var wg sync.WaitGroup
		for wr := 0; wr < writers; wr++ {
			wg.Add(1)
			go func(wr, base int) {
				defer wg.Done()
				for i := wr; i < rate; i += writers {
					if next := start.Add(time.Duration(i) * time.Second / rate); time.Until(next) > 0 {
						time.Sleep(time.Until(next))
					}
					k := base + i
					name := "Lag" + strconv.Itoa(k)
					if _, err := f.Src.DB.ExecContext(ctx, "UPDATE dm_persons SET last_name = ?, marked_for_deletion = 'N' WHERE person_id = ?", name, 1+k%persons); err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					sent[k%persons] = append(sent[k%persons], mark{k, time.Now()})
					mu.Unlock()
				}
			}(wr, seq)
		}
		wg.Wait()
		seq += rate
	}
	b.StopTimer()
	waiting := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, marks := range sent {
			n += len(marks)
		}
		return n
	}
	for deadline := time.Now().Add(60 * time.Second); waiting() > 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
	}
	cancel()
	<-done
	<-watch
	if n := waiting(); n > 0 {
		b.Fatalf("%d changes never arrived", n)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lags)
	if len(lags) == 0 {
		b.Fatal("no change arrived")
	}
	q := func(p float64) float64 { return lags[min(len(lags)-1, int(p*float64(len(lags))))] }
	b.ReportMetric(q(0.5), "p50-lag-s")
	b.ReportMetric(q(0.99), "p99-lag-s")
	b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "changes/s")
	b.Log(fmt.Sprintf("%d changes sent, %d seen in the target (or overwritten by a later one that was)", seq, len(lags)))
}
