package lake

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Target is where the lake's files live: a local folder (Dir) or an S3
// bucket and prefix (package s3). Keys are slash-separated paths below
// the lake's root.
type Target interface {
	// Put writes an object atomically: a reader sees all of it or none,
	// and once Put returns it is durable. It keeps no reference to body
	// once it returns: the lander writes its next file into the same
	// buffer.
	Put(ctx context.Context, key string, body []byte) error
	// Get reads an object; an error wrapping ErrNotFound when there is none.
	Get(ctx context.Context, key string) ([]byte, error)
	// List returns the objects whose keys start with prefix, in key order.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes an object; deleting one that is not there is no error.
	Delete(ctx context.Context, key string) error
	// String names the target for messages ("/data/lake", "s3://b/p").
	String() string
}

// Object is a file of the lake.
type Object struct {
	Key  string
	Size int64
}

// ErrNotFound is wrapped by Target.Get for a key with no object.
var ErrNotFound = errors.New("no such object in the lake")

// Dir is a lake in a local folder. Files become visible by rename, after
// their data and the rename are synced.
type Dir string

func (d Dir) String() string { return string(d) }

func (d Dir) path(key string) string { return filepath.Join(string(d), filepath.FromSlash(key)) }

// tempSuffix ends the names of files being written; readers' globs
// (*.parquet) never match them, and OpenDir's cleaning removes leftovers.
const tempSuffix = ".tmp"

// Put writes body to a temporary file beside the key, syncs it, renames
// it into place and syncs the folder.
func (d Dir) Put(ctx context.Context, key string, body []byte) error {
	s, err := FileSpool(filepath.Dir(d.path(key)), d.landFile)
	if err != nil {
		return fmt.Errorf("lake: writing %s: %w", d.path(key), err)
	}
	if _, err := s.Write(body); err != nil {
		s.Discard()
		return fmt.Errorf("lake: writing %s: %w", d.path(key), err)
	}
	return s.Land(ctx, key)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("lake: syncing %s: %w", dir, err)
	}
	return nil
}

// Get reads the file of a key.
func (d Dir) Get(_ context.Context, key string) ([]byte, error) {
	b, err := os.ReadFile(d.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return b, err
}

// List walks the folder below prefix. Temporary files are not listed.
func (d Dir) List(_ context.Context, prefix string) ([]Object, error) {
	// Walk from the deepest folder the prefix names.
	start := prefix
	if i := strings.LastIndex(start, "/"); i >= 0 {
		start = start[:i]
	} else {
		start = ""
	}
	var out []Object
	err := filepath.WalkDir(d.path(start), func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if de.IsDir() || strings.HasSuffix(p, tempSuffix) {
			return nil
		}
		rel, err := filepath.Rel(string(d), p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := de.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		out = append(out, Object{Key: key, Size: info.Size()})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, err
}

// Delete removes the file of a key.
func (d Dir) Delete(_ context.Context, key string) error {
	err := os.Remove(d.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// CleanTemp removes temporary files a crashed writer left below the
// folder: those no live process holds locked (a lander's file being
// written is; see Spool).
func (d Dir) CleanTemp() error {
	return filepath.WalkDir(string(d), func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !de.IsDir() && strings.HasSuffix(p, tempSuffix) && strings.HasPrefix(de.Name(), ".") && !spoolInUse(p) {
			return os.Remove(p)
		}
		return nil
	})
}
