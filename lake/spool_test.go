package lake_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/plinth-data/plinth/lake"
	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/parquet"
	"github.com/plinth-data/plinth/plinthtest/natstest"
	"github.com/plinth-data/plinth/plinthtest/s3test"
	rt "github.com/plinth-data/plinth/report/reporttest"
	"github.com/plinth-data/plinth/s3"
)

// temps lists the temporary files below root.
func temps(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() && filepath.Ext(p) == ".tmp" {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A Dir spool is invisible until it lands, survives another process's
// cleaning while it is written, and lands exactly what was written;
// CleanTemp removes what a dead writer left and Discard what it wrote.
func TestDirSpool(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d := lake.Dir(root)
	sp, err := d.Spool("residents/date=20260301/")
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 40_000) // past the spool's buffer
	if _, err := sp.Write(body); err != nil {
		t.Fatal(err)
	}
	if sp.Size() != int64(len(body)) {
		t.Fatalf("size %d, wrote %d", sp.Size(), len(body))
	}
	leftover := filepath.Join(root, "residents", "date=20260301", ".spool-dead.tmp")
	if err := os.WriteFile(leftover, []byte("a crashed writer's"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.CleanTemp(); err != nil {
		t.Fatal(err)
	}
	if got := temps(t, root); len(got) != 1 || got[0] == leftover {
		t.Fatalf("after CleanTemp, temporary files %v: want only the spool being written", got)
	}
	if objs, err := d.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Fatalf("a spool not landed is listed: %v %v", objs, err)
	}
	key := "residents/date=20260301/" + lake.PartName(1, 9)
	if err := sp.Land(ctx, key); err != nil {
		t.Fatal(err)
	}
	got, err := d.Get(ctx, key)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("landed %d bytes (%v), wrote %d", len(got), err, len(body))
	}
	gone, err := d.Spool("residents/")
	if err != nil {
		t.Fatal(err)
	}
	gone.Write(body)
	gone.Discard()
	if got := temps(t, root); len(got) != 0 {
		t.Fatalf("temporary files left: %v", got)
	}
}

// The lander writes a file into its spool as row groups fill, not into
// memory: before anything lands, the partition's spool on disk grows (in
// the folder for a Dir, in $TMPDIR for S3).
func TestLanderSpoolsToDisk(t *testing.T) {
	t.Run("dir", func(t *testing.T) {
		root := t.TempDir()
		testLanderSpools(t, lake.Dir(root), root)
	})
	t.Run("s3", func(t *testing.T) {
		endpoint := s3test.Start(t, "lake")
		target, err := s3.Open(context.Background(), "s3://lake/raw", s3.Options{Endpoint: endpoint})
		if err != nil {
			t.Fatal(err)
		}
		tmp := t.TempDir()
		t.Setenv("TMPDIR", tmp)
		testLanderSpools(t, target, tmp)
	})
}

func testLanderSpools(t *testing.T, target lake.Target, spools string) {
	e, recs := rt.Sample(t, 3000)
	b := newBus(t, e.Domain)
	b.publish(t, e, recs, time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := plinthnats.NewBatchSource(ctx, b.js, b.stream, "lake", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	l := lake.NewLander(e.Domain, target, lake.Config{FlushInterval: time.Hour,
		Parquet: parquet.Options{RowGroupBytes: 32 << 10}, Logger: slog.New(slog.DiscardHandler)})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Run(runCtx, src) }()
	var spooled int64
	for deadline := time.Now().Add(30 * time.Second); spooled < 512<<10 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		spooled = 0
		for _, p := range temps(t, spools) {
			if fi, err := os.Stat(p); err == nil {
				spooled += fi.Size()
			}
		}
	}
	objs, err := target.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if spooled < 512<<10 || len(objs) != 0 {
		t.Fatalf("before landing: %d bytes spooled on disk, %d files landed; want ≥ 512 KiB and none", spooled, len(objs))
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Landed != int64(natstest.StreamCount(t, b.js, b.stream)) || st.Files == 0 {
		t.Fatalf("landed %+v", st)
	}
	if got := temps(t, spools); len(got) != 0 {
		t.Fatalf("temporary files left after landing: %v", got)
	}
	if objs, err = target.List(ctx, ""); err != nil || int64(len(objs)) < l.Stats().Files {
		t.Fatalf("%d objects listed (%v) after landing %d files", len(objs), err, l.Stats().Files)
	}
}
