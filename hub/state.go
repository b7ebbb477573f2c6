package hub

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/plinth-data/plinth"
)

// stateCheckpoint is where the Hub keeps its access requests, keys and
// contracts: a checkpoint of the default store, changed only through
// plinth.Writer.State so each step commits with its audit record and the
// grants it makes, and swapped (compare-and-set) so that concurrent steps
// of several replicas never overwrite each other (Server.step).
const stateCheckpoint = "plinth.hub"

// Request statuses.
const (
	StatusPending  = "pending"  // waiting for an owner
	StatusRejected = "rejected" // an owner said no
	StatusApproved = "approved" // the contract waits for signatures
	StatusInForce  = "in force" // both signed; the grants exist
	StatusRevoked  = "revoked"  // the contract was revoked; its grants are disabled
)

// Request is an access request and, once approved, its contract.
type Request struct {
	ID string `json:"id"`
	// Kind is "" for an access request, else KindException or KindEndpoint.
	Kind             string            `json:"kind,omitempty"`
	Status           string            `json:"status"`
	Requester        plinth.Principal  `json:"requester"`
	API              string            `json:"api"`
	Environment      string            `json:"environment"`
	Entities         []string          `json:"entities"`
	Operations       []string          `json:"operations"`
	Purpose          string            `json:"purpose"`
	LegalBasis       string            `json:"legalBasis"`
	SpecialCondition string            `json:"specialCondition,omitempty"`
	RetentionDays    int               `json:"retentionDays"`
	Consumer         string            `json:"consumer"`
	GrantKind        string            `json:"grantKind"`
	Group            string            `json:"group,omitempty"`
	DurationDays     int               `json:"durationDays"` // how long the contract is to run
	CreatedAt        time.Time         `json:"createdAt"`
	DecidedBy        *plinth.Principal `json:"decidedBy,omitempty"`
	Comment          string            `json:"comment,omitempty"`
	DecidedAt        time.Time         `json:"decidedAt,omitzero"`
	Contract         *SignedContract   `json:"contract,omitempty"`
	Grants           []string          `json:"grants,omitempty"`  // ids of the grants the contract made
	Entries          []policyEntry     `json:"entries,omitempty"` // the policy entries a group contract justifies
	History          []Step            `json:"history"`
	// Hours is how long an exception's direct access lasts; Opened is its
	// support grant, once made.
	Hours  int           `json:"hours,omitempty"`
	Opened *openedAccess `json:"opened,omitempty"`
	// Need is what an endpoint request asks for.
	Need string `json:"need,omitempty"`
}

// StatusExpired is shown for a contract in force past its expiry: its
// grants have expired with it.
const StatusExpired = "expired"

// Shown is the status as of now: a contract in force, or an exception's
// direct access, past its expiry is expired.
func (r *Request) Shown(now time.Time) string {
	if r.Status == StatusInForce && r.Contract != nil && !now.Before(r.Contract.Contract.Expiry()) {
		return StatusExpired
	}
	if r.Status == StatusOpened && r.Opened != nil && !now.Before(r.Opened.ExpiresAt) {
		return StatusExpired
	}
	return r.Status
}

// Step is one line of a request's history.
type Step struct {
	At   time.Time `json:"at"`
	By   string    `json:"by"`
	What string    `json:"what"`
}

// Key is a registered public key of a user.
type Key struct {
	PublicKey string    `json:"publicKey"`
	ID        string    `json:"id"`
	AddedAt   time.Time `json:"addedAt"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
}

// state is everything the Hub keeps.
type state struct {
	Requests []*Request       `json:"requests"` // oldest first
	Keys     map[string][]Key `json:"keys"`     // by subject
	// HubEntries are the policy entries the Hub added for group contracts
	// (and may take away again); the rest of a policy is never touched.
	HubEntries []hubEntry `json:"hubEntries,omitempty"`
}

// gzipMagic starts a gzip stream; JSON never does.
var gzipMagic = []byte{0x1f, 0x8b}

// encode is the state as stored: gzip-compressed JSON, several times
// smaller (a DynamoDB item holds at most 400 KB).
func (s *state) encode() ([]byte, error) {
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	if err := json.NewEncoder(z).Encode(s); err != nil {
		return nil, err
	}
	if err := z.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func decodeState(c plinth.Checkpoint, found bool) (*state, error) {
	s := &state{Keys: map[string][]Key{}}
	if !found {
		return s, nil
	}
	b := c.Value
	if bytes.HasPrefix(b, gzipMagic) {
		z, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("the Hub's state does not decompress: %w", err)
		}
		if b, err = io.ReadAll(z); err != nil {
			return nil, fmt.Errorf("the Hub's state does not decompress: %w", err)
		}
	}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("the Hub's state does not decode: %w", err)
	}
	if s.Keys == nil {
		s.Keys = map[string][]Key{}
	}
	return s, nil
}

func loadState(ctx context.Context, st plinth.Store) (*state, error) {
	c, found, err := st.Checkpoint(ctx, stateCheckpoint)
	if err != nil {
		return nil, err
	}
	return decodeState(c, found)
}

func (s *state) request(id string) *Request {
	for _, r := range s.Requests {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// currentKey is the user's newest key not revoked.
func (s *state) currentKey(subject string) (Key, bool) {
	keys := s.Keys[subject]
	for i := len(keys) - 1; i >= 0; i-- {
		if keys[i].RevokedAt.IsZero() {
			return keys[i], true
		}
	}
	return Key{}, false
}

// serviceGrants are the grants a contract asks for: one per endpoint and
// method its entities and operations reach.
func serviceGrants(c Contract, expires time.Time) []plinth.Grant {
	var gs []plinth.Grant
	for _, plural := range c.Entities {
		eps := plinth.EntityEndpoints(plural)
		eps = append(eps, plinth.ReportEndpoints(plural)...)
		for _, ep := range eps {
			if !slices.Contains(c.Operations, string(ep.Operation)) {
				continue
			}
			gs = append(gs, plinth.Grant{
				Consumer: c.Consumer, ConsumerType: "service", API: c.API, Endpoint: ep.Template,
				Methods: []string{ep.Method}, Environment: c.Environment, ExpiresAt: expires,
				RequestedBy: c.Requester.who(), AuthorisedBy: c.Approver.who(), Contract: c.ID,
			})
		}
	}
	return gs
}

// who names a party in a grant: by email, else by subject.
func (p Party) who() string {
	if p.Email != "" {
		return p.Email
	}
	return p.Subject
}
