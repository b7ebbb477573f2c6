package plinth

import (
	"context"
	"encoding/json"
	"fmt"
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

// provenanceCheckpoint is the checkpoint a store's provenance is kept in:
// every store keeps checkpoints, so provenance needs nothing more of them.
const provenanceCheckpoint = "plinth.provenance"

// StoreProvenance returns the provenance recorded in a store; found is
// false when none was (see Provenance for what that means).
func StoreProvenance(ctx context.Context, st Store) (p Provenance, found bool, err error) {
	c, found, err := st.Checkpoint(ctx, provenanceCheckpoint)
	if err != nil || !found {
		return Provenance{}, false, err
	}
	if err := json.Unmarshal(c.Value, &p); err != nil {
		return Provenance{}, false, fmt.Errorf("the store's provenance does not decode: %w", err)
	}
	return p, true, nil
}

// SetStoreProvenance records p in the store, replacing what was recorded.
func SetStoreProvenance(ctx context.Context, st Store, p Provenance) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return st.SetCheckpoint(ctx, provenanceCheckpoint, b)
}
