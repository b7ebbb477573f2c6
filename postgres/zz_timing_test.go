package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/plinth-data/plinth"
)

func TestZZTiming(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var tb, tl, ti, tc time.Duration
	const n = 500
	for i := 0; i < n; i++ {
		t0 := time.Now()
		ptx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		x := &tx{s: s, tx: ptx}
		var seq int64
		var h string
		if err := ptx.QueryRow(ctx, lockAuditHeadSQL).Scan(&seq, &h); err != nil {
			t.Fatal(err)
		}
		t2 := time.Now()
		recs := []plinth.AuditRecord{normalizeAudit(benchAuditRecord(i))}
		seq, h = chain(recs, seq, h)
		args, _ := auditArgs(recs)
		b := &pgx.Batch{}
		b.Queue(insertAuditSQL, args...)
		b.Queue(updateAuditHeadSQL, seq, h)
		if err := ptx.SendBatch(ctx, b).Close(); err != nil {
			t.Fatal(err)
		}
		t3 := time.Now()
		if err := ptx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		t4 := time.Now()
		_ = x
		tb += t1.Sub(t0)
		tl += t2.Sub(t1)
		ti += t3.Sub(t2)
		tc += t4.Sub(t3)
	}
	t.Logf("begin %v lock %v insert %v commit %v", tb/n, tl/n, ti/n, tc/n)
}
