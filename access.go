package plinth

import (
	"context"
	"time"
)

// Principal is who a request acts for: an end user from the organisation's
// single sign-on, or a service holding a service token.
type Principal struct {
	Subject string   `json:"subject"`
	Email   string   `json:"email,omitempty"`
	Name    string   `json:"name,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	// TokenID and Consumer are set for service tokens.
	TokenID  string `json:"tokenId,omitempty"`
	Consumer string `json:"consumer,omitempty"`
}

// IsService reports whether the principal holds a service token.
func (p Principal) IsService() bool { return p.TokenID != "" }

type principalKey struct{}

// WithPrincipal returns a context carrying the principal.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal of a request, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Environments a Plinth deployment runs in.
const (
	EnvDevelopment = "development"
	EnvStaging     = "staging"
	EnvProduction  = "production"
)

// Grant is the record behind a service token: what one consumer may call.
// The token (a signed JWT) carries only the grant's ID and consumer; the
// grant itself is checked on every call, so disabling it revokes the token.
type Grant struct {
	ID           string    `json:"id"`
	Consumer     string    `json:"consumer"`     // "housing-benefits-listener"
	ConsumerType string    `json:"consumerType"` // "service", "listener", "frontend", …
	API          string    `json:"api"`          // the domain: "residents"
	Endpoint     string    `json:"endpoint"`     // route template: "/api/v1/residents/{id}"
	Methods      []string  `json:"methods"`      // "GET", "PATCH", …
	Environment  string    `json:"environment"`
	ExpiresAt    time.Time `json:"expiresAt"`
	RequestedBy  string    `json:"requestedBy"`
	AuthorisedBy string    `json:"authorisedBy"`
	Enabled      bool      `json:"enabled"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
	// Contract is the ID of the data contract that made the grant (the
	// Developer Hub's); "" for a grant made by hand.
	Contract string `json:"contract,omitempty"`
}

// AccessPolicy says which user groups may use one domain's API in one
// environment.
type AccessPolicy struct {
	Domain      string `json:"domain" yaml:"domain"`
	Environment string `json:"environment" yaml:"environment"`
	// ReadGroups may list and view every entity of the domain.
	ReadGroups []string `json:"readGroups" yaml:"readGroups"`
	// WriteGroups may create, update and delete. Writing does not imply
	// reading unless WriteImpliesRead is set.
	WriteGroups      []string `json:"writeGroups" yaml:"writeGroups"`
	WriteImpliesRead bool     `json:"writeImpliesRead" yaml:"writeImpliesRead"`
	// ReportingGroups may use the Reporting API of the domain.
	ReportingGroups []string `json:"reportingGroups" yaml:"reportingGroups"`
	// Entities override the read and write groups for single entities,
	// by plural: {"residents": {...}}.
	Entities  map[string]EntityPolicy `json:"entities,omitempty" yaml:"entities"`
	UpdatedAt time.Time               `json:"updatedAt" yaml:"-"`
}

// EntityPolicy overrides a domain policy for one entity. A nil list (JSON
// null or absent) keeps the domain's groups; an empty list lets nobody in.
type EntityPolicy struct {
	ReadGroups  []string `json:"readGroups" yaml:"readGroups"`
	WriteGroups []string `json:"writeGroups" yaml:"writeGroups"`
}

// AccessStore keeps service-token grants and access policies. The sqlite and
// postgres stores implement it next to Store.
type AccessStore interface {
	// CreateGrant stores a new grant; ErrConflict if the ID exists.
	CreateGrant(ctx context.Context, g Grant) error
	// Grant returns one grant; ErrNotFound when there is none.
	Grant(ctx context.Context, id string) (Grant, error)
	// SetGrantEnabled enables or disables a grant and returns it.
	SetGrantEnabled(ctx context.Context, id string, enabled bool) (Grant, error)
	// Grants lists grants in ID order after the ID after ("" for the
	// first page); more reports whether others follow.
	Grants(ctx context.Context, after string, limit int) (grants []Grant, more bool, err error)
	// PutPolicy creates or replaces the policy of its domain and environment.
	PutPolicy(ctx context.Context, p AccessPolicy) error
	// DeletePolicy removes a policy; ErrNotFound when there is none.
	DeletePolicy(ctx context.Context, domain, environment string) error
	// Policies returns every policy of an environment, by domain.
	Policies(ctx context.Context, environment string) ([]AccessPolicy, error)
}

// AccessTx is implemented by a store's Tx so that changes to grants and
// policies commit together with their audit record.
type AccessTx interface {
	CreateGrant(ctx context.Context, g Grant) error
	SetGrantEnabled(ctx context.Context, id string, enabled bool) (Grant, error)
	PutPolicy(ctx context.Context, p AccessPolicy) error
	DeletePolicy(ctx context.Context, domain, environment string) error
}
