package plinth

import (
	"context"
	"errors"
	"time"
)

// DataClass is the class of the data a store (or an export bundle) holds.
// The organisation's rule: development holds only dummy data; staging
// dummy or obfuscated data; production real data.
type DataClass string

// Data classes.
const (
	ClassDummy      DataClass = "dummy"      // made up by plinth seed
	ClassObfuscated DataClass = "obfuscated" // pseudonymised from real data by plinth obfuscate
	ClassReal       DataClass = "real"       // real people's data
)

// Provenance says what class of data a store holds, where it came from
// and when. Stores made before provenance was recorded hold ClassReal
// unless Plinth's own seed filled them.
type Provenance struct {
	Class DataClass `json:"class"`
	// Source says where the data came from: "seed" (Detail: the seed
	// number), "obfuscate" (Detail: the source and the key's fingerprint),
	// "migrate" (Detail: the legacy system), "load" (Detail: the bundle),
	// "mark" (Detail: the reason a person gave).
	Source string    `json:"source"`
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at"`
	// By is who recorded it, for a mark.
	By string `json:"by,omitempty"`
}

// ErrNoProvenance is returned by a ProvenanceStore that has none recorded.
var ErrNoProvenance = errors.New("no provenance recorded")

// ProvenanceStore keeps a store's provenance. The sqlite and postgres
// stores implement it next to Store.
type ProvenanceStore interface {
	// Provenance returns the recorded provenance; ErrNoProvenance when none.
	Provenance(ctx context.Context) (Provenance, error)
	// SetProvenance records p, replacing what was recorded.
	SetProvenance(ctx context.Context, p Provenance) error
}
