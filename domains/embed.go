// Package domains ships the domain specs Plinth serves when no other
// directory is configured. They are also templates for new domains.
package domains

import "embed"

// FS holds the shipped specs, *.yaml at its root.
//
//go:embed *.yaml
var FS embed.FS
