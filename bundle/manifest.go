// Package bundle reads and writes export bundles: a folder that moves the
// records of one or more domains between stores and environments.
//
// Layout:
//
//	DIR/manifest.json
//	DIR/<domain>/<plural>.ndjson.gz
//
// Each data file is gzip-compressed NDJSON: one record per line, exactly the
// API's JSON of the record (plinth.Entity.MarshalRecord: every field in spec
// order, null when absent, then version, createdAt and updatedAt), in key
// order (a bundle plinth obfuscate wrote keeps its source's order, which is
// not key order when the key was pseudonymised), all read from one
// snapshot of the entity (Store.Scan). The manifest
// names every file with its record count and the SHA-256 of its bytes, the
// spec hash of each domain (SpecHash) and the data class and provenance of
// the store it came from. The manifest is written last, so a folder without
// one is not a bundle.
//
// A reader verifies every checksum (and then every record against the
// target's spec) before it loads anything; see Load.
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/plinth-data/plinth"
)

// FormatName and FormatVersion identify the bundle format in a manifest.
const (
	FormatName    = "plinth-bundle"
	FormatVersion = 1
)

// ManifestFile is the name of the manifest in a bundle's folder.
const ManifestFile = "manifest.json"

// Manifest describes a bundle.
type Manifest struct {
	Format        string    `json:"format"`
	FormatVersion int       `json:"formatVersion"`
	CreatedAt     time.Time `json:"createdAt"`
	// Class is the class of the data the bundle holds (the provenance's).
	Class plinth.DataClass `json:"class"`
	// Provenance is the provenance recorded in the store the bundle was
	// exported from; nil when it had none, and then Class is real.
	Provenance *plinth.Provenance `json:"provenance,omitempty"`
	Domains    []DomainManifest   `json:"domains"`
}

// DomainManifest describes the files of one domain.
type DomainManifest struct {
	Name string `json:"name"`
	// SpecHash is SpecHash of the domain the records were exported with.
	SpecHash string           `json:"specHash"`
	Entities []EntityManifest `json:"entities"`
}

// EntityManifest describes the file of one entity.
type EntityManifest struct {
	Name    string `json:"name"`
	Plural  string `json:"plural"`
	File    string `json:"file"` // relative to the bundle's folder, with forward slashes
	Records int64  `json:"records"`
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256"` // hex SHA-256 of the file's bytes (the compressed file)
	// Watermark is the source store's watermark of the snapshot the file
	// was read from; meaningful only to that store (an incremental export
	// from it could start there).
	Watermark string `json:"watermark,omitempty"`
}

// Domain returns the named domain of the manifest, or nil.
func (m *Manifest) Domain(name string) *DomainManifest {
	for i := range m.Domains {
		if m.Domains[i].Name == name {
			return &m.Domains[i]
		}
	}
	return nil
}

// ReadManifest reads and checks the manifest of the bundle in dir.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is not an export bundle: it has no %s (an export that did not finish writes none)", dir, ManifestFile)
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	if m.Format != FormatName {
		return nil, fmt.Errorf("%s: format %q is not %s", filepath.Join(dir, ManifestFile), m.Format, FormatName)
	}
	if m.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("%s: format version %d; this plinth reads version %d", filepath.Join(dir, ManifestFile), m.FormatVersion, FormatVersion)
	}
	switch m.Class {
	case plinth.ClassDummy, plinth.ClassObfuscated, plinth.ClassReal:
	default:
		return nil, fmt.Errorf("%s: data class %q: must be dummy, obfuscated or real", filepath.Join(dir, ManifestFile), m.Class)
	}
	for _, d := range m.Domains {
		for _, e := range d.Entities {
			if !filepath.IsLocal(filepath.FromSlash(e.File)) {
				return nil, fmt.Errorf("%s: file %q of %s is outside the bundle", filepath.Join(dir, ManifestFile), e.File, e.Plural)
			}
		}
	}
	return &m, nil
}

// writeManifest writes m to dir atomically (a temporary file, then rename).
func writeManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, ManifestFile), append(b, '\n'))
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// SpecHash is the hex SHA-256 of a canonical JSON encoding of what in a
// domain's spec decides which records are valid and how they are stored:
// the domain's name and, for each entity in spec order, its name, plural,
// key (name, type, generated) and fields in spec order with their type,
// required, maxLength, enum, pattern, min, max, format, nested fields and
// array items. Descriptions, owners, PII classes and filters are left out:
// changing them changes no record. Two stores whose specs have the same
// hash hold records of the same shape.
func SpecHash(d *plinth.Domain) string {
	type key struct {
		Name      string `json:"name"`
		Type      string `json:"type"`
		Generated bool   `json:"generated"`
	}
	type entity struct {
		Name   string      `json:"name"`
		Plural string      `json:"plural"`
		Key    key         `json:"key"`
		Fields []hashField `json:"fields"`
	}
	doc := struct {
		Domain   string   `json:"domain"`
		Entities []entity `json:"entities"`
	}{Domain: d.Name}
	for _, e := range d.Entities {
		doc.Entities = append(doc.Entities, entity{Name: e.Name, Plural: e.Plural,
			Key: key{e.Key.Name, string(e.Key.Type), e.Key.Generated}, Fields: hashFields(e.Fields)})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err) // plain structs always encode
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

type hashField struct {
	Name      string      `json:"name,omitempty"`
	Type      string      `json:"type"`
	Required  bool        `json:"required,omitempty"`
	MaxLength *int        `json:"maxLength,omitempty"`
	Enum      []string    `json:"enum,omitempty"`
	Pattern   string      `json:"pattern,omitempty"`
	Min       *float64    `json:"min,omitempty"`
	Max       *float64    `json:"max,omitempty"`
	Format    string      `json:"format,omitempty"`
	Fields    []hashField `json:"fields,omitempty"`
	Items     *hashField  `json:"items,omitempty"`
}

func hashFields(fs []*plinth.Field) []hashField {
	out := make([]hashField, 0, len(fs))
	for _, f := range fs {
		out = append(out, hashOf(f))
	}
	return out
}

func hashOf(f *plinth.Field) hashField {
	h := hashField{Name: f.Name, Type: string(f.Type), Required: f.Required, MaxLength: f.MaxLength,
		Enum: f.Enum, Min: f.Min, Max: f.Max, Format: string(f.Format)}
	if f.Pattern != nil {
		h.Pattern = f.Pattern.String()
	}
	if len(f.Fields) > 0 {
		h.Fields = hashFields(f.Fields)
	}
	if f.Items != nil {
		it := hashOf(f.Items)
		h.Items = &it
	}
	return h
}

// FileName is the path of an entity's file in a bundle, relative to its
// folder.
func FileName(e *plinth.Entity) string {
	return e.Domain.Name + "/" + e.Plural + ".ndjson.gz"
}
