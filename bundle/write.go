package bundle

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/plinth-data/plinth"
)

// Meter and MeterFunc are the root package's: a progress display the CLI
// provides.
type (
	Meter     = plinth.Meter
	MeterFunc = plinth.MeterFunc
)

// Writer writes a bundle: one EntityWriter per entity, then Finish writes
// the manifest. Obfuscation writes its output through it too.
type Writer struct {
	dir     string
	created bool // the folder was made by Create
	files   []string
	m       Manifest
	open    bool // an EntityWriter is open
}

// Create starts a bundle in dir, which must not exist or be empty, so a
// bundle never mixes with other files.
func Create(dir string) (*Writer, error) {
	w := &Writer{dir: dir, m: Manifest{Format: FormatName, FormatVersion: FormatVersion}}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		w.created = true
	case err != nil:
		return nil, err
	case len(entries) > 0:
		return nil, fmt.Errorf("%s is not empty: export into a new or empty folder", dir)
	}
	return w, nil
}

// EntityWriter writes the file of one entity.
type EntityWriter struct {
	w     *Writer
	e     *plinth.Entity
	rel   string
	f     *os.File
	hash  hash.Hash
	count *countingWriter
	buf   *bufio.Writer
	gz    *gzip.Writer
	n     int64
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Entity starts the file of e. Entities of one domain are written one after
// another; each at most once.
func (w *Writer) Entity(e *plinth.Entity) (*EntityWriter, error) {
	if w.open {
		return nil, errors.New("bundle: the previous entity's file is still open")
	}
	d := w.m.Domain(e.Domain.Name)
	if d == nil {
		w.m.Domains = append(w.m.Domains, DomainManifest{Name: e.Domain.Name, SpecHash: SpecHash(e.Domain)})
		d = &w.m.Domains[len(w.m.Domains)-1]
	}
	for _, em := range d.Entities {
		if em.Plural == e.Plural {
			return nil, fmt.Errorf("bundle: %s written twice", e.Plural)
		}
	}
	rel := FileName(e)
	path := filepath.Join(w.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	w.files = append(w.files, path)
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(f, h)}
	buf := bufio.NewWriterSize(cw, 256<<10)
	gz, _ := gzip.NewWriterLevel(buf, gzip.DefaultCompression)
	w.open = true
	return &EntityWriter{w: w, e: e, rel: rel, f: f, hash: h, count: cw, buf: buf, gz: gz}, nil
}

// Write appends a record as the API's JSON of it, one line.
func (ew *EntityWriter) Write(r plinth.Record) error {
	b := ew.e.MarshalRecord(r)
	if _, err := ew.gz.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing %s: %w", ew.rel, err)
	}
	ew.n++
	return nil
}

// Close ends the file, syncs it and adds it to the manifest. watermark is
// the source's watermark of the snapshot the records came from ("" when
// there is none).
func (ew *EntityWriter) Close(watermark string) error {
	ew.w.open = false
	err := ew.gz.Close()
	if err == nil {
		err = ew.buf.Flush()
	}
	if err == nil {
		err = ew.f.Sync()
	}
	if cerr := ew.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", ew.rel, err)
	}
	d := ew.w.m.Domain(ew.e.Domain.Name)
	d.Entities = append(d.Entities, EntityManifest{Name: ew.e.Name, Plural: ew.e.Plural, File: ew.rel,
		Records: ew.n, Bytes: ew.count.n, SHA256: hex.EncodeToString(ew.hash.Sum(nil)), Watermark: watermark})
	return nil
}

// Abort closes the file without adding it.
func (ew *EntityWriter) Abort() {
	ew.w.open = false
	ew.f.Close()
}

// Finish writes the manifest, with the data class of the records and the
// provenance of their source (nil when it had none recorded; the class is
// then real). The bundle is complete once it returns.
func (w *Writer) Finish(class plinth.DataClass, p *plinth.Provenance) (*Manifest, error) {
	if w.open {
		return nil, errors.New("bundle: an entity's file is still open")
	}
	w.m.CreatedAt = plinth.Now()
	w.m.Class = class
	w.m.Provenance = p
	if err := writeManifest(w.dir, &w.m); err != nil {
		return nil, err
	}
	m := w.m
	return &m, nil
}

// Abort removes what the writer wrote (and the folder, if Create made it).
func (w *Writer) Abort() {
	for _, f := range w.files {
		os.Remove(f)
		os.Remove(filepath.Dir(f)) // only when empty
	}
	os.Remove(filepath.Join(w.dir, ManifestFile+".tmp"))
	if w.created {
		os.Remove(w.dir)
	}
}

// SourceProvenance is the class and provenance of the data an export
// reads: what the store recorded, or what plinth.ClassOf concludes (a
// seeded store is dummy, anything else unrecorded is real). The provenance
// is nil when nothing was recorded.
func SourceProvenance(ctx context.Context, st plinth.Store, ds []*plinth.Domain) (plinth.DataClass, *plinth.Provenance, error) {
	p, err := plinth.ClassOf(ctx, st, ds)
	if err != nil {
		return plinth.ClassReal, nil, err
	}
	if !p.Recorded() {
		return p.Class, nil, nil
	}
	return p.Class, &p, nil
}

// ExportOptions tune Export.
type ExportOptions struct {
	Meter MeterFunc
}

// Export writes every entity of the domains ds from st into a new bundle in
// dir: each entity streamed from one snapshot (Store.Scan), so memory stays
// flat. On failure what it wrote is removed.
func Export(ctx context.Context, st plinth.Store, ds []*plinth.Domain, dir string, opts ExportOptions) (m *Manifest, err error) {
	class, p, err := SourceProvenance(ctx, st, ds)
	if err != nil {
		return nil, err
	}
	w, err := Create(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	for _, d := range ds {
		for _, e := range d.Entities {
			if err := exportEntity(ctx, st, w, e, opts.Meter); err != nil {
				return nil, err
			}
		}
	}
	return w.Finish(class, p)
}

func exportEntity(ctx context.Context, st plinth.Store, w *Writer, e *plinth.Entity, meter MeterFunc) error {
	total, err := st.Count(ctx, e)
	if err != nil {
		return err
	}
	ew, err := w.Entity(e)
	if err != nil {
		return err
	}
	mt := meter.Start("exporting "+e.Domain.Name+"/"+e.Plural, total)
	pending := 0
	wm, err := st.Scan(ctx, e, plinth.ScanQuery{}, func(r plinth.Record) error {
		if err := ew.Write(r); err != nil {
			return err
		}
		if pending++; pending == 1000 {
			mt.Add(pending)
			pending = 0
		}
		return nil
	})
	mt.Add(pending)
	if err != nil {
		ew.Abort()
		mt.Stop()
		return fmt.Errorf("exporting %s: %w", e.Plural, err)
	}
	if err := ew.Close(string(wm)); err != nil {
		mt.Stop()
		return err
	}
	mt.Finish()
	return nil
}
