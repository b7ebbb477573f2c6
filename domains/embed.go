// Package domains ships the domain specs Plinth serves when no other
// directory is configured. They are also templates for new domains.
package domains

import "embed"

// FS holds the shipped specs, *.yaml at its root, and under templates/
// the legacy system templates (benefits, housing) with their mappings,
// which are not served by default.
//
//go:embed *.yaml templates/*.yaml
var FS embed.FS
