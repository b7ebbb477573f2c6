package bundle

import (
	"context"
	"fmt"
	"io"

	"github.com/plinth-data/plinth"
)

// Source reads the records of a bundle, for a reader other than Load (such
// as obfuscation): open it with Open, which checks the manifest, matches
// its domains with the specs and verifies every checksum, then stream each
// entity with Records.
type Source struct {
	Dir      string
	Manifest *Manifest
	plan     []planned
}

// SourceEntity is one entity of a Source: the target spec's entity and
// what the manifest says of its file.
type SourceEntity struct {
	Entity *plinth.Entity
	File   EntityManifest
}

// Open reads the bundle in dir for the domains ds (only those named in
// domains, when given), refusing it, before any record is read, when its
// manifest is not valid, a domain or entity is not in the specs, a
// domain's spec hash differs from its spec (unless allowSpecChange), or a
// file does not match its checksum (a *ChecksumError).
func Open(dir string, ds []*plinth.Domain, domains []string, allowSpecChange bool) (*Source, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	plan, err := planLoad(m, ds, LoadOptions{Domains: domains, AllowSpecChange: allowSpecChange})
	if err != nil {
		return nil, err
	}
	for _, p := range plan {
		if err := verifyFile(dir, p.em); err != nil {
			return nil, err
		}
	}
	return &Source{Dir: dir, Manifest: m, plan: plan}, nil
}

// Entities returns the entities the source holds, in the bundle's order.
func (s *Source) Entities() []SourceEntity {
	out := make([]SourceEntity, len(s.plan))
	for i, p := range s.plan {
		out[i] = SourceEntity{Entity: p.e, File: p.em}
	}
	return out
}

// Records calls fn with each record of se's file (canonical data, version
// and times as written) after the first skip lines, in the file's order,
// each validated against
// the spec as Load validates it (a bad line is a *RecordError). It checks
// that the file holds as many records as the manifest says. fn's error
// stops the reading and is returned.
func (s *Source) Records(ctx context.Context, se SourceEntity, skip int64, fn func(line int64, rec plinth.Record) error) error {
	r, err := openLines(s.Dir, se.File.File)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", s.Dir, err)
	}
	defer r.Close()
	rf := recordField(se.Entity)
	for {
		line, err := r.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("bundle %s: %s line %d: %w", s.Dir, se.File.File, r.line+1, err)
		}
		if r.line <= skip {
			continue
		}
		if r.line%1000 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		d, _, err := checkRecord(se.Entity, rf, se.File.File, r.line, line)
		if err != nil {
			return err
		}
		if err := fn(r.line, d); err != nil {
			return err
		}
	}
	if r.line != se.File.Records {
		return fmt.Errorf("bundle %s: %s holds %d records; the manifest says %d", s.Dir, se.File.File, r.line, se.File.Records)
	}
	return nil
}
