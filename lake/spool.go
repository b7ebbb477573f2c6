package lake

import (
	"bufio"
	"bytes"
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
// its size, for as long as the lander ran. Dir is a Spooler; other
// targets get each file whole, by Put.
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

// spoolBuffer is how much a Dir spool gathers before each write.
const spoolBuffer = 256 << 10

// spoolPattern names a Dir spool: hidden and ending in tempSuffix, so
// readers' globs (*.parquet) and List skip it and CleanTemp knows it.
const spoolPattern = ".spool-*" + tempSuffix

// Spool starts a temporary file in the folder, locked while it is written
// so that CleanTemp in another process leaves it alone.
func (d Dir) Spool(folder string) (Spool, error) { return d.spoolIn(d.path(folder)) }

func (d Dir) spoolIn(dir string) (*dirSpool, error) {
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
	return &dirSpool{d: d, f: f, w: bufio.NewWriterSize(f, spoolBuffer)}, nil
}

// dirSpool is a file of a Dir being written.
type dirSpool struct {
	d Dir
	f *os.File
	w *bufio.Writer
	n int64
}

func (s *dirSpool) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.n += int64(n)
	return n, err
}

func (s *dirSpool) Size() int64 { return s.n }

// Land syncs the file, renames it to the key's path and syncs the folder.
func (s *dirSpool) Land(_ context.Context, key string) error {
	path := s.d.path(key)
	err := s.w.Flush()
	if err == nil {
		err = s.f.Sync()
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.MkdirAll(filepath.Dir(path), 0o750)
	}
	if err == nil {
		err = os.Rename(s.f.Name(), path)
	}
	if err != nil {
		os.Remove(s.f.Name())
		return fmt.Errorf("lake: writing %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func (s *dirSpool) Discard() {
	s.f.Close()
	os.Remove(s.f.Name())
}

// newSpool starts the file of a partition: in the target when it is a
// Spooler, else in memory.
func (l *Lander) newSpool(partition string) (Spool, error) {
	if t, ok := l.target.(Spooler); ok {
		return t.Spool(partition)
	}
	return &bufferSpool{l: l, buf: l.buffer()}, nil
}

// bufferSpool is a file built in memory and put whole.
type bufferSpool struct {
	l   *Lander
	buf *bytes.Buffer
}

func (s *bufferSpool) Write(p []byte) (int, error) { return s.buf.Write(p) }

func (s *bufferSpool) Size() int64 { return int64(s.buf.Len()) }

func (s *bufferSpool) Land(ctx context.Context, key string) error {
	defer s.Discard()
	if err := s.l.target.Put(ctx, key, s.buf.Bytes()); err != nil {
		return err
	}
	s.l.hint = min(max(s.l.hint, s.buf.Len()), s.l.cfg.FlushBytes)
	return nil
}

func (s *bufferSpool) Discard() {
	if s.buf != nil {
		s.l.recycle(s.buf)
		s.buf = nil
	}
}
