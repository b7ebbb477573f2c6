package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/spec"
)

// LoadDomains loads the specs of the configured domains folder, or the
// shipped ones when none is set. Every binary loads them here, so a folder
// means the same domains (and the same messages) everywhere.
func (c Config) LoadDomains() ([]*plinth.Domain, error) {
	return LoadDomains(c.Domains)
}

// LoadDomains loads the specs in dir, or the shipped ones when dir is empty.
func LoadDomains(dir string) ([]*plinth.Domain, error) {
	var ds []*plinth.Domain
	var err error
	if dir == "" {
		ds, err = spec.LoadFS(domains.FS, ".")
	} else {
		ds, err = loadFolder(dir)
	}
	if se, ok := err.(*spec.Error); ok {
		return nil, fmt.Errorf("the domain specs have %d problem(s):\n%s", len(se.Problems), se)
	}
	return ds, err
}

// loadFolder reads the folder itself, so that messages name it as the user
// did (spec.LoadFS knows it only as ".").
func loadFolder(dir string) ([]*plinth.Domain, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading domain specs: %w", err)
	}
	if !slices.ContainsFunc(entries, func(e os.DirEntry) bool {
		return !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml"))
	}) {
		return nil, fmt.Errorf("no domain specs (*.yaml) found in %s", dir)
	}
	ds, err := spec.LoadFS(os.DirFS(dir), ".")
	var pe *fs.PathError
	if errors.As(err, &pe) {
		pe.Path = filepath.Join(dir, pe.Path)
	}
	if se, ok := err.(*spec.Error); ok {
		// Name files as the user wrote the folder.
		for i, p := range se.Problems {
			se.Problems[i] = strings.TrimPrefix(dir+"/"+p, "./")
		}
	}
	return ds, err
}
