package lake

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Spooler is a Target that takes a file while it is being written, so
// that a lander holds no whole file in memory. A lander's file holds up
// to FlushEvents events (100,000 by default, tens of megabytes of
// Parquet); built in memory, it stayed there, with two spare buffers of
// its size, for as long as the lander ran. Dir and the S3 target are
// Spoolers; other targets get each file whole, by Put, from a temporary
// file.
type Spooler interface {
	// Spool starts a file in folder (a key prefix: "" or ending in "/").
	Spool(folder string) (Spool, error)
}

// Spool is a file being written; nothing of it is visible before Land.
type Spool interface {
	io.Writer
	// Size is how many bytes were written.
	Size() int64
	// Land makes what was written the object key, atomically and
	// durably, as Put does. The spool is done with, landed or not.
	Land(ctx context.Context, key string) error
	// Discard drops what was written.
	Discard()
}

// spoolBuffer is how much a file spool gathers before each write.
const spoolBuffer = 256 << 10

// spoolPattern names a spool's temporary file: hidden and ending in
// tempSuffix, so that readers' globs (*.parquet) and Dir.List skip it and
// CleanTemp knows it.
const spoolPattern = ".spool-*" + tempSuffix

// LandFile makes a spool's file, written and flushed, the object key.
// It owns the file: it closes it and renames or removes it. On error the
// spool removes what is left.
type LandFile func(ctx context.Context, key string, f *os.File, size int64) error

// FileSpool returns a spool in a new temporary file of dir, locked while
// it is written so that CleanTemp in another process leaves it alone;
// land makes it an object.
func FileSpool(dir string, land LandFile) (Spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, spoolPattern)
	if err != nil {
		return nil, err
	}
	if err := lockSpool(f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("lake: locking %s: %w", f.Name(), err)
	}
	return &fileSpool{f: f, w: bufio.NewWriterSize(f, spoolBuffer), land: land}, nil
}

// fileSpool is a file being written in a temporary file.
type fileSpool struct {
	f    *os.File
	w    *bufio.Writer
	n    int64
	land LandFile
}

func (s *fileSpool) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.n += int64(n)
	return n, err
}

func (s *fileSpool) Size() int64 { return s.n }

func (s *fileSpool) Land(ctx context.Context, key string) error {
	err := s.w.Flush()
	if err == nil {
		err = s.land(ctx, key, s.f, s.n)
	}
	if err != nil {
		s.Discard()
	}
	return err
}

func (s *fileSpool) Discard() {
	s.f.Close()
	os.Remove(s.f.Name())
}

// Spool starts a file in a temporary file of the folder, which Land
// renames into place.
func (d Dir) Spool(folder string) (Spool, error) { return FileSpool(d.path(folder), d.landFile) }

// landFile syncs the file, renames it to the key's path and syncs the
// folder.
func (d Dir) landFile(_ context.Context, key string, f *os.File, _ int64) error {
	path := d.path(key)
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.MkdirAll(filepath.Dir(path), 0o750)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("lake: writing %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// newSpool starts the file of a partition: in the target when it is a
// Spooler, else in a temporary file of $TMPDIR put whole when it lands.
func (l *Lander) newSpool(partition string) (Spool, error) {
	if t, ok := l.target.(Spooler); ok {
		return t.Spool(partition)
	}
	return FileSpool(os.TempDir(), func(ctx context.Context, key string, f *os.File, _ int64) error {
		defer func() {
			f.Close()
			os.Remove(f.Name())
		}()
		body, err := os.ReadFile(f.Name())
		if err != nil {
			return err
		}
		return l.target.Put(ctx, key, body)
	})
}
