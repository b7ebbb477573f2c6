package bundle

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
	"github.com/plinth-data/plinth/sqlite"
)

// sqliteStore opens a new SQLite store prepared for ds.
func sqliteStore(t *testing.T, ds []*plinth.Domain) plinth.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "plinth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Prepare(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	return st
}

// filled returns a SQLite store with n dummy records of every entity, some
// of them updated (version 2), and its domains.
func filled(t *testing.T, n int) (plinth.Store, []*plinth.Domain) {
	t.Helper()
	ctx := context.Background()
	ds := plinthtest.Domains(t)
	st := sqliteStore(t, ds)
	for i, d := range ds {
		for _, e := range d.Entities {
			g := datasafety.NewGenerator(uint64(42 + i))
			if err := st.BulkInsert(ctx, e, g.Records(e, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Update a few records so versions and times differ between records.
	for _, d := range ds {
		e := d.Entities[0]
		page, err := st.List(ctx, e, plinth.Query{Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Records {
			if err := st.Write(ctx, func(tx plinth.Tx) error {
				_, err := tx.Update(ctx, e, e.KeyOf(r), r.Version, r.Data)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return st, ds
}

func scanAll(t *testing.T, st plinth.Store, e *plinth.Entity) []plinth.Record {
	t.Helper()
	var out []plinth.Record
	if _, err := st.Scan(context.Background(), e, plinth.ScanQuery{}, func(r plinth.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameRecords compares the data of two scans field by field, and their
// versions and times.
func sameRecords(t *testing.T, e *plinth.Entity, src, dst []plinth.Record) {
	t.Helper()
	if len(src) != len(dst) {
		t.Fatalf("%s: %d records loaded, %d exported", e.Plural, len(dst), len(src))
	}
	for i := range src {
		a, b := src[i], dst[i]
		for _, f := range e.Fields {
			ja, _ := json.Marshal(a.Data[f.Name])
			jb, _ := json.Marshal(b.Data[f.Name])
			if !bytes.Equal(ja, jb) {
				t.Fatalf("%s record %d field %s: exported %s, loaded %s", e.Plural, i, f.Name, ja, jb)
			}
		}
		if len(a.Data) != len(b.Data) {
			t.Fatalf("%s record %d: %d fields exported, %d loaded", e.Plural, i, len(a.Data), len(b.Data))
		}
		// Load keeps each record's version and times exactly.
		if b.Version != a.Version || !b.CreatedAt.Equal(a.CreatedAt) || !b.UpdatedAt.Equal(a.UpdatedAt) {
			t.Fatalf("%s record %d: loaded version %d, createdAt %s, updatedAt %s; exported %d, %s, %s",
				e.Plural, i, b.Version, b.CreatedAt, b.UpdatedAt, a.Version, a.CreatedAt, a.UpdatedAt)
		}

	}
}

func TestBundleRoundTripSQLiteToPostgres(t *testing.T) {
	ctx := context.Background()
	src, ds := filled(t, 1200)
	if err := plinth.SetStoreProvenance(ctx, src, plinth.Provenance{Class: plinth.ClassDummy, Source: "seed", Detail: "seed 42", At: plinth.Now()}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := Export(ctx, src, ds, dir, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	pg, err := postgres.Open(ctx, pgtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if err := pg.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	start := plinth.Now()
	res, err := Load(ctx, pg, ds, dir, LoadOptions{Environment: plinth.EnvDevelopment})
	if err != nil {
		t.Fatal(err)
	}
	for _, er := range res.Entities {
		if er.Records != 1200 || er.Inserted != 1200 || er.Skipped != 0 || er.Resumed != 0 {
			t.Fatalf("result %+v", er)
		}
	}
	for _, d := range ds {
		for _, e := range d.Entities {
			sameRecords(t, e, scanAll(t, src, e), scanAll(t, pg, e))
		}
	}
	p, found, err := plinth.StoreProvenance(ctx, pg)
	if err != nil || !found {
		t.Fatalf("no provenance recorded: %v", err)
	}
	abs, _ := filepath.Abs(dir)
	if p.Class != plinth.ClassDummy || p.Source != "load" || p.Detail != "bundle "+abs+" of dummy data (seed seed 42)" || p.At.Before(start) {
		t.Fatalf("provenance %+v", p)
	}
	// Loading again changes nothing: every entity is done.
	res, err = Load(ctx, pg, ds, dir, LoadOptions{Environment: plinth.EnvDevelopment})
	if err != nil {
		t.Fatal(err)
	}
	for _, er := range res.Entities {
		if er.Resumed != 1200 || er.Inserted != 0 {
			t.Fatalf("second load %+v", er)
		}
	}
	// Exported again from PostgreSQL, the data lines are the same but for
	// version and times.
	dir2 := filepath.Join(t.TempDir(), "again")
	if _, err := Export(ctx, pg, ds, dir2, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		for _, e := range d.Entities {
			a, b := readLines(t, dir, FileName(e)), readLines(t, dir2, FileName(e))
			for i := range a {
				if stripMeta(a[i]) != stripMeta(b[i]) {
					t.Fatalf("%s line %d:\n%s\n%s", e.Plural, i+1, a[i], b[i])
				}
			}
		}
	}
}

func readLines(t *testing.T, dir, rel string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func stripMeta(line string) string {
	i := strings.LastIndex(line, `,"version":`)
	return line[:i]
}

func TestBundleManifest(t *testing.T) {
	ctx := context.Background()
	src, ds := filled(t, 300)
	dir := filepath.Join(t.TempDir(), "bundle")
	before := plinth.Now()
	m, err := Export(ctx, src, ds, dir, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	read, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	// No provenance recorded in the source, which holds generated data:
	// recognised as dummy, with no provenance to pass on.
	if read.Format != "plinth-bundle" || read.FormatVersion != 1 || read.Class != plinth.ClassDummy || read.Provenance != nil ||
		read.CreatedAt.Before(before) || len(read.Domains) != len(ds) {
		t.Fatalf("manifest %+v", read)
	}
	if b1, _ := json.Marshal(m); true {
		b2, _ := json.Marshal(read)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("Export returned\n%s\nthe file holds\n%s", b1, b2)
		}
	}
	for i, d := range ds {
		dm := read.Domains[i]
		if dm.Name != d.Name || dm.SpecHash != SpecHash(d) || len(dm.SpecHash) != 64 || len(dm.Entities) != len(d.Entities) {
			t.Fatalf("domain %+v", dm)
		}
		for j, e := range d.Entities {
			em := dm.Entities[j]
			b, err := os.ReadFile(filepath.Join(dir, em.File))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			lines := readLines(t, dir, em.File)
			if em.Name != e.Name || em.Plural != e.Plural || em.File != d.Name+"/"+e.Plural+".ndjson.gz" || em.Records != 300 ||
				em.Bytes != int64(len(b)) || em.SHA256 != hex.EncodeToString(sum[:]) || !strings.HasPrefix(em.Watermark, "sqlite.") || len(lines) != 300 {
				t.Fatalf("entity %+v (%d lines)", em, len(lines))
			}
			// Each line is the API's JSON of the record.
			recs := scanAll(t, src, e)
			for k, r := range recs {
				if lines[k] != string(e.MarshalRecord(r)) {
					t.Fatalf("%s line %d:\n%s\nwant\n%s", e.Plural, k+1, lines[k], e.MarshalRecord(r))
				}
			}
		}
	}
	// With provenance recorded, the manifest carries it.
	p := plinth.Provenance{Class: plinth.ClassObfuscated, Source: "obfuscate", Detail: "of x with key k", At: plinth.Now()}
	if err := plinth.SetStoreProvenance(ctx, src, p); err != nil {
		t.Fatal(err)
	}
	dir2 := filepath.Join(t.TempDir(), "b2")
	if _, err := Export(ctx, src, ds[:1], dir2, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	read, err = ReadManifest(dir2)
	if err != nil {
		t.Fatal(err)
	}
	if read.Class != plinth.ClassObfuscated || read.Provenance == nil || *read.Provenance != p || len(read.Domains) != 1 {
		t.Fatalf("manifest %+v", read)
	}
	// A folder that is not empty is refused.
	if _, err := Export(ctx, src, ds, dir2, ExportOptions{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("export into a bundle: %v", err)
	}
	// The spec hash changes with what decides validity, not with descriptions.
	h := SpecHash(ds[0])
	ds[0].Entities[0].Description = "changed"
	ds[0].Entities[0].Fields[1].Description = "changed"
	if SpecHash(ds[0]) != h {
		t.Fatal("a description changed the spec hash")
	}
	ml := 3
	ds[0].Entities[0].Fields[1].MaxLength = &ml
	if SpecHash(ds[0]) == h {
		t.Fatal("maxLength did not change the spec hash")
	}
}

// nothingLoaded checks that the target holds no records, no provenance and
// no load checkpoint.
func nothingLoaded(t *testing.T, st plinth.Store, ds []*plinth.Domain) {
	t.Helper()
	ctx := context.Background()
	for _, d := range ds {
		for _, e := range d.Entities {
			if n, err := st.Count(ctx, e); err != nil || n != 0 {
				t.Fatalf("%s: %d records loaded (%v)", e.Plural, n, err)
			}
			if _, found, _ := st.Checkpoint(ctx, CheckpointName(e)); found {
				t.Fatalf("%s: a load checkpoint was written", e.Plural)
			}
		}
	}
	if _, found, _ := plinth.StoreProvenance(ctx, st); found {
		t.Fatal("provenance recorded by a refused load")
	}
}

func TestBundleChecksumMismatchRefused(t *testing.T) {
	ctx := context.Background()
	src, ds := filled(t, 200)
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := Export(ctx, src, ds, dir, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	// Flip one byte of the last file: the first is fine, so a loader that
	// checked file by file while loading would already have loaded it.
	last := ds[len(ds)-1].Entities[0]
	path := filepath.Join(dir, FileName(last))
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0xff
	os.WriteFile(path, b, 0o644)
	dst := sqliteStore(t, ds)
	_, err := Load(ctx, dst, ds, dir, LoadOptions{Environment: plinth.EnvProduction})
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.File != FileName(last) || !strings.Contains(err.Error(), "does not match its checksum") || !strings.Contains(err.Error(), "nothing was loaded") {
		t.Fatalf("corrupted file: %v", err)
	}
	nothingLoaded(t, dst, ds)
	// A file that is shorter (a truncated copy) is refused the same way.
	os.WriteFile(path, b[:len(b)/2], 0o644)
	if _, err := Load(ctx, dst, ds, dir, LoadOptions{Environment: plinth.EnvProduction}); !errors.As(err, &ce) {
		t.Fatalf("truncated file: %v", err)
	}
	nothingLoaded(t, dst, ds)
	// No manifest, no bundle.
	os.Remove(filepath.Join(dir, ManifestFile))
	if _, err := Load(ctx, dst, ds, dir, LoadOptions{Environment: plinth.EnvProduction}); err == nil || !strings.Contains(err.Error(), "not an export bundle") {
		t.Fatalf("no manifest: %v", err)
	}
}

func TestBundleClassRefusedByEnvironment(t *testing.T) {
	ctx := context.Background()
	src, ds := filled(t, 50)
	export := func(class plinth.DataClass) string {
		if class != "" {
			if err := plinth.SetStoreProvenance(ctx, src, plinth.Provenance{Class: class, Source: "mark", At: plinth.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		dir := filepath.Join(t.TempDir(), "bundle")
		if _, err := Export(ctx, src, ds, dir, ExportOptions{}); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	unrecorded := export("") // no provenance, seeded data: recognised as dummy (plinth.ClassOf)
	real := export(plinth.ClassReal)
	obfuscated := export(plinth.ClassObfuscated)
	dummy := export(plinth.ClassDummy)
	for _, c := range []struct {
		dir, env string
		refused  string
	}{
		{unrecorded, plinth.EnvDevelopment, ""},
		{real, plinth.EnvDevelopment, "holds real data, and development holds only dummy data"},
		{real, plinth.EnvStaging, "holds real data, and staging holds only dummy or obfuscated data"},
		{obfuscated, plinth.EnvDevelopment, "holds obfuscated data, and development holds only dummy data"},
		{real, plinth.EnvProduction, ""},
		{obfuscated, plinth.EnvStaging, ""},
		{dummy, plinth.EnvDevelopment, ""},
		{dummy, plinth.EnvStaging, ""},
	} {
		dst := sqliteStore(t, ds)
		res, err := Load(ctx, dst, ds, c.dir, LoadOptions{Environment: c.env})
		if c.refused != "" {
			if err == nil || !strings.Contains(err.Error(), c.refused) {
				t.Fatalf("%s into %s: %v", c.dir, c.env, err)
			}
			nothingLoaded(t, dst, ds)
			continue
		}
		if err != nil {
			t.Fatalf("%s into %s: %v", c.dir, c.env, err)
		}
		m, _ := ReadManifest(c.dir)
		if res.Provenance.Class != m.Class {
			t.Fatalf("into %s: provenance %+v, bundle class %s", c.env, res.Provenance, m.Class)
		}
	}
	// Dummy data loaded into a store that already holds real data leaves
	// it real.
	dst := sqliteStore(t, ds)
	if _, err := Load(ctx, dst, ds, real, LoadOptions{Environment: plinth.EnvProduction, Domains: []string{ds[0].Name}}); err != nil {
		t.Fatal(err)
	}
	res, err := Load(ctx, dst, ds, dummy, LoadOptions{Environment: plinth.EnvProduction, Domains: []string{ds[1].Name}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Provenance.Class != plinth.ClassReal || !strings.Contains(res.Provenance.Detail, "added to real data already in the store") {
		t.Fatalf("mixed provenance %+v", res.Provenance)
	}
}

func TestBundleResumeAfterInterruption(t *testing.T) {
	ctx := context.Background()
	src, ds := filled(t, 1500)
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := Export(ctx, src, ds, dir, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Run("sqlite", func(t *testing.T) { resumeInto(t, src, ds, dir, sqliteStore(t, ds)) })
	t.Run("postgres", func(t *testing.T) {
		pg, err := postgres.Open(ctx, pgtest.Database(t))
		if err != nil {
			t.Fatal(err)
		}
		defer pg.Close()
		if err := pg.Prepare(ctx, ds); err != nil {
			t.Fatal(err)
		}
		resumeInto(t, src, ds, dir, pg)
	})
}

// resumeInto interrupts a load of the bundle into dst after three batches,
// then loads again, and compares the result with the source.
func resumeInto(t *testing.T, src plinth.Store, ds []*plinth.Domain, dir string, dst plinth.Store) {
	ctx := context.Background()
	stop := errors.New("interrupted")
	batches := 0
	first := ds[0].Entities[0]
	_, err := Load(ctx, dst, ds, dir, LoadOptions{Environment: plinth.EnvProduction, Batch: 300,
		AfterBatch: func(plural string, line int64) error {
			if batches++; batches == 3 {
				return stop
			}
			return nil
		}})
	if !errors.Is(err, stop) {
		t.Fatalf("interrupted load: %v", err)
	}
	if n, _ := dst.Count(ctx, first); n != 900 {
		t.Fatalf("%d records after three batches, want 900", n)
	}
	c, found, _ := dst.Checkpoint(ctx, CheckpointName(first))
	if !found || !strings.Contains(string(c.Value), `"line":900`) {
		t.Fatalf("checkpoint %s", c.Value)
	}
	// An interruption that the checkpoint did not see: records of the next
	// batch are already stored (as if written by another loader); the
	// resumed load skips them.
	lines := readLines(t, dir, FileName(first))
	var extra []map[string]any
	var meta []plinth.RecordMeta
	for i := 900; i < 950; i++ {
		d, err := decodeRecord(first, FileName(first), int64(i+1), []byte(lines[i]))
		if err != nil {
			t.Fatal(err)
		}
		extra = append(extra, d.Data)
		meta = append(meta, plinth.RecordMeta{Version: d.Version, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt})
	}
	if _, err := dst.BulkLoad(ctx, first, extra, plinth.BulkOptions{Metadata: meta}); err != nil {
		t.Fatal(err)
	}
	res, err := Load(ctx, dst, ds, dir, LoadOptions{Environment: plinth.EnvProduction, Batch: 300})
	if err != nil {
		t.Fatal(err)
	}
	for _, er := range res.Entities {
		want := EntityResult{Domain: er.Domain, Plural: er.Plural, Records: 1500, Inserted: 1500}
		if er.Plural == first.Plural {
			want.Resumed, want.Inserted, want.Skipped = 900, 550, 50
		}
		if er != want {
			t.Fatalf("resumed load %+v, want %+v", er, want)
		}
	}
	for _, d := range ds {
		for _, e := range d.Entities {
			sameRecords(t, e, scanAll(t, src, e), scanAll(t, dst, e))
		}
	}
}

// writeBundle writes a bundle of hand-made records of one entity.
func writeBundle(t *testing.T, e *plinth.Entity, class plinth.DataClass, recs ...map[string]any) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	ew, err := w.Entity(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range recs {
		if err := ew.Write(plinth.Record{Data: d, Version: 1, CreatedAt: plinth.Now(), UpdatedAt: plinth.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ew.Close(""); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Finish(class, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBundleInvalidRecordRefused(t *testing.T) {
	ctx := context.Background()
	ds := plinthtest.Domains(t)
	e := plinthtest.Entity(t, ds, "residents")
	g := datasafety.NewGenerator(1)
	recs := g.Records(e, 5)
	for i, r := range recs {
		r[e.Key.Name] = int64(100 + i)
	}
	good := func() []map[string]any {
		out := make([]map[string]any, len(recs))
		for i, r := range recs {
			c := make(map[string]any, len(r))
			for k, v := range r {
				c[k] = v
			}
			out[i] = c
		}
		return out
	}
	for _, c := range []struct {
		name   string
		change func(rs []map[string]any)
		want   string
	}{
		{"invalid date", func(rs []map[string]any) { rs[2]["dateOfBirth"] = "1990-13-45" },
			"residents/residents.ndjson.gz line 3 (resident): field dateOfBirth must be a date"},
		{"no key", func(rs []map[string]any) { delete(rs[0], e.Key.Name) },
			"line 1 (resident): field mosaicId is missing"},
		// A value the store would keep in another form is refused, not changed.
		{"not canonical", func(rs []map[string]any) { rs[1]["firstName"] = "Ada"; rs[1]["nhsNumber"] = "999 000 0018" },
			"line 2 (resident): field nhsNumber would be stored as"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs := good()
			c.change(rs)
			dir := writeBundle(t, e, plinth.ClassDummy, rs...)
			dst := sqliteStore(t, ds)
			_, err := Load(ctx, dst, ds, dir, LoadOptions{Environment: plinth.EnvDevelopment})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant %s", err, c.want)
			}
			nothingLoaded(t, dst, ds)
		})
	}
	// A line with a member the spec does not have (MarshalRecord would not
	// write one, so the line is written by hand).
	t.Run("unknown field", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "bundle")
		w, _ := Create(dir)
		ew, _ := w.Entity(e)
		ew.gz.Write([]byte(`{"mosaicId":1,"firstName":"Ada","lastName":"Lovelace","shoeSize":9}` + "\n"))
		ew.n++
		ew.Close("")
		w.Finish(plinth.ClassDummy, nil)
		dst := sqliteStore(t, ds)
		_, err := Load(ctx, dst, ds, dir, LoadOptions{Environment: plinth.EnvDevelopment})
		if err == nil || !strings.Contains(err.Error(), "line 1 (resident): field shoeSize is not a field of this record") {
			t.Fatalf("got %v", err)
		}
		nothingLoaded(t, dst, ds)
	})
	// In a longer file checked on several cores, the first bad line is
	// named, whichever worker found a bad line first.
	t.Run("first bad line of many", func(t *testing.T) {
		many := datasafety.NewGenerator(2).Records(e, 2500)
		for i, r := range many {
			r[e.Key.Name] = int64(1000 + i)
		}
		many[2099]["dateOfBirth"] = "not a date"
		many[1499]["dateOfBirth"] = "1990-02-30"
		dst := sqliteStore(t, ds)
		// Batches of 100: fourteen good ones come before the bad line.
		_, err := Load(ctx, dst, ds, writeBundle(t, e, plinth.ClassDummy, many...), LoadOptions{Environment: plinth.EnvDevelopment, Batch: 100})
		if err == nil || !strings.Contains(err.Error(), "line 1500 (resident): field dateOfBirth must be a date") {
			t.Fatalf("got %v", err)
		}
		nothingLoaded(t, dst, ds)
	})
	// The good records load.
	dst := sqliteStore(t, ds)
	if _, err := Load(ctx, dst, ds, writeBundle(t, e, plinth.ClassDummy, good()...), LoadOptions{Environment: plinth.EnvDevelopment}); err != nil {
		t.Fatal(err)
	}
	if n, _ := dst.Count(ctx, e); n != 5 {
		t.Fatalf("%d loaded", n)
	}
}

// TestBundleDuplicateKeysSkipped loads a bundle that holds a key twice,
// in one batch and across two: Load copies batches straight in until a key
// is found stored, then merges; the first record of a key stays, the
// later ones are counted as skipped, on both stores.
func TestBundleDuplicateKeysSkipped(t *testing.T) {
	ctx := context.Background()
	ds := plinthtest.Domains(t)
	e := plinthtest.Entity(t, ds, "residents")
	recs := datasafety.NewGenerator(3).Records(e, 10)
	for i, r := range recs {
		r[e.Key.Name] = int64(500 + i)
	}
	recs[2][e.Key.Name] = int64(500) // in the first batch of four, with line 1
	recs[6][e.Key.Name] = int64(501) // in the second, with line 2 of the first
	dir := writeBundle(t, e, plinth.ClassDummy, recs...)
	check := func(t *testing.T, dst plinth.Store) {
		res, err := Load(ctx, dst, ds, dir, LoadOptions{Environment: plinth.EnvDevelopment, Batch: 4})
		if err != nil {
			t.Fatal(err)
		}
		if er := res.Entities[0]; er.Inserted != 8 || er.Skipped != 2 {
			t.Fatalf("%+v, want 8 inserted and 2 skipped", er)
		}
		got := scanAll(t, dst, e)
		if len(got) != 8 {
			t.Fatalf("%d stored, want 8", len(got))
		}
		for _, r := range got {
			if k := r.Data[e.Key.Name]; k == int64(500) || k == int64(501) {
				want := recs[k.(int64)-500]
				if r.Data["firstName"] != want["firstName"] || r.Data["lastName"] != want["lastName"] {
					t.Fatalf("key %v holds %v %v, want the first record's %v %v", k, r.Data["firstName"], r.Data["lastName"], want["firstName"], want["lastName"])
				}
			}
		}
	}
	t.Run("sqlite", func(t *testing.T) { check(t, sqliteStore(t, ds)) })
	t.Run("postgres", func(t *testing.T) {
		pg, err := postgres.Open(ctx, pgtest.Database(t))
		if err != nil {
			t.Fatal(err)
		}
		defer pg.Close()
		if err := pg.Prepare(ctx, ds); err != nil {
			t.Fatal(err)
		}
		check(t, pg)
	})
}

func TestBundleSpecChangeRefused(t *testing.T) {
	ctx := context.Background()
	src, ds := filled(t, 100)
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := Export(ctx, src, ds, dir, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	// The target's spec of residents allows longer first names.
	target := plinthtest.Domains(t)
	e := plinthtest.Entity(t, target, "residents")
	ml := 500
	e.Field("firstName").MaxLength = &ml
	dst := sqliteStore(t, target)
	_, err := Load(ctx, dst, target, dir, LoadOptions{Environment: plinth.EnvProduction})
	if err == nil || !strings.Contains(err.Error(), "domain residents was exported with a different spec") || !strings.Contains(err.Error(), "--allow-spec-change") {
		t.Fatalf("spec change: %v", err)
	}
	nothingLoaded(t, dst, target)
	if _, err := Load(ctx, dst, target, dir, LoadOptions{Environment: plinth.EnvProduction, AllowSpecChange: true}); err != nil {
		t.Fatal(err)
	}
	if n, _ := dst.Count(ctx, e); n != 100 {
		t.Fatalf("%d loaded", n)
	}
	// A domain the target does not have is refused.
	dst = sqliteStore(t, target[:1])
	if _, err := Load(ctx, dst, target[:1], dir, LoadOptions{Environment: plinth.EnvProduction}); err == nil || !strings.Contains(err.Error(), "is not among the target's domains") {
		t.Fatalf("unknown domain: %v", err)
	}
}

func BenchmarkBundleDecodeRecord(b *testing.B) {
	ds := plinthtest.Domains(b)
	e := plinthtest.Entity(b, ds, "residents")
	d := datasafety.NewGenerator(1).Record(e)
	d[e.Key.Name] = int64(7)
	data, err := e.Validate(d, false)
	if err != nil {
		b.Fatal(err)
	}
	line := e.MarshalRecord(plinth.Record{Data: data, Version: 1, CreatedAt: plinth.Now(), UpdatedAt: plinth.Now()})
	rf := recordField(e)
	// The full way (a line that is not exact, or plinth obfuscate reading
	// a bundle), the check pass's way and the load pass's.
	b.Run("full", func(b *testing.B) {
		for range b.N {
			if _, err := decodeRecord(e, "f", 1, line); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("check", func(b *testing.B) {
		for range b.N {
			if _, exact, err := checkRecord(e, rf, "f", 1, line); err != nil || !exact {
				b.Fatal(exact, err)
			}
		}
	})
	b.Run("checked", func(b *testing.B) {
		for range b.N {
			if _, err := decodeChecked(e, rf, "f", 1, line); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestDecodeCheckedSameAsValidated decodes every line of a bundle of every
// test domain's entities both ways: the load pass's decoding of a checked
// line, and the check pass's cheaper way, must give exactly the data and
// metadata that validating the generic decoding gives.
func TestDecodeCheckedSameAsValidated(t *testing.T) {
	ctx := context.Background()
	src, ds := filled(t, 300)
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := Export(ctx, src, ds, dir, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		for _, e := range d.Entities {
			rf := recordField(e)
			for i, line := range readLines(t, dir, FileName(e)) {
				var exact bool
				want, err := validateLine(e, "f", int64(i+1), []byte(line), &exact)
				if err != nil || !exact {
					t.Fatalf("%s line %d: exact %v, %v", e.Plural, i+1, exact, err)
				}
				got, err := decodeChecked(e, rf, "f", int64(i+1), []byte(line))
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s line %d:\nchecked   %#v\nvalidated %#v", e.Plural, i+1, got, want)
				}
				// The check pass's cheaper way gives the same, and finds
				// the line exact too.
				if got, fast, err := checkRecord(e, rf, "f", int64(i+1), []byte(line)); err != nil || !fast || !reflect.DeepEqual(got, want) {
					t.Fatalf("%s line %d: checkRecord gave %#v, exact %v, %v;\nvalidated %#v", e.Plural, i+1, got, fast, err, want)
				}
			}
		}
	}
}

// TestBundleChangedAfterCheckValidatedAgain loads a file that was changed
// (to hold a bad record) after the check pass passed it: the load pass
// finds the batch's lines are not the ones checked, validates them, and
// refuses the bad record.
func TestBundleChangedAfterCheckValidatedAgain(t *testing.T) {
	ctx := context.Background()
	ds := plinthtest.Domains(t)
	e := plinthtest.Entity(t, ds, "residents")
	recs := datasafety.NewGenerator(4).Records(e, 6)
	for i, r := range recs {
		r[e.Key.Name] = int64(700 + i)
	}
	goodDir := writeBundle(t, e, plinth.ClassDummy, recs...)
	recs[4]["dateOfBirth"] = "1990-02-30"
	badDir := writeBundle(t, e, plinth.ClassDummy, recs...)
	m, err := ReadManifest(badDir)
	if err != nil {
		t.Fatal(err)
	}
	p := planned{e: e, em: m.Domains[0].Entities[0]}
	checked, err := checkRecords(ctx, goodDir, p, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(checked) != 2 {
		t.Fatalf("%d batches checked exact, want 2", len(checked))
	}
	dst := sqliteStore(t, ds)
	_, err = loadEntity(ctx, dst, badDir, p, checked, 3, LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "line 5 (resident): field dateOfBirth must be a date") {
		t.Fatalf("got %v", err)
	}
	if n, _ := dst.Count(ctx, e); n != 3 {
		t.Fatalf("%d records loaded, want the first batch's 3", n)
	}
}
