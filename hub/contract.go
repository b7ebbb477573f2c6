// Package hub is the Developer Hub: the catalogue of the APIs Plinth
// serves, access requests and the digitally signed data contracts that
// grant access, served as server-rendered pages at /hub.
package hub

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gowebpki/jcs"

	"github.com/plinth-data/plinth"
)

// ContractFormat names the format of a contract file; it is signed with
// the rest, so a future format cannot be mistaken for this one.
const ContractFormat = "plinth.data-contract/v1"

// Signing roles: both must sign before a contract is in force.
const (
	RoleRequester = "requester"
	RoleApprover  = "approver"
)

// Grant kinds a contract may ask for.
const (
	GrantGroup   = "group"   // a user group gets access through the domain's policy
	GrantService = "service" // service-token grants, one per endpoint and method
)

// Operations a contract may cover: the access policy's operations.
var contractOperations = []string{string(plinth.OpRead), string(plinth.OpWrite), string(plinth.OpReport)}

// Article6Bases are the lawful bases of UK GDPR Article 6(1).
var Article6Bases = []string{"consent", "contract", "legal-obligation", "vital-interests", "public-task", "legitimate-interests"}

// Article9Conditions are the conditions of UK GDPR Article 9(2) for
// special-category data.
var Article9Conditions = []string{"explicit-consent", "employment-social-security", "vital-interests", "not-for-profit-bodies",
	"made-public", "legal-claims", "substantial-public-interest", "health-social-care", "public-health", "archiving-research-statistics"}

// Party is one signer of a contract: who they are and the Ed25519 public
// key (base64 of its 32 bytes) they sign with.
type Party struct {
	Subject   string `json:"subject"`
	Email     string `json:"email,omitempty"`
	Name      string `json:"name,omitempty"`
	PublicKey string `json:"publicKey"`
}

// Contract is the terms of a data contract: what both parties sign.
type Contract struct {
	Format      string   `json:"format"`
	ID          string   `json:"id"`
	Request     string   `json:"request,omitempty"` // the access request it came from
	Requester   Party    `json:"requester"`
	Approver    Party    `json:"approver"`
	API         string   `json:"api"` // the domain
	Environment string   `json:"environment"`
	Entities    []string `json:"entities"` // plurals
	Operations  []string `json:"operations"`
	Purpose     string   `json:"purpose"`
	LegalBasis  string   `json:"legalBasis"`
	// SpecialCondition is the Article 9 condition; required when the
	// entities hold special-category fields.
	SpecialCondition string `json:"specialCondition,omitempty"`
	RetentionDays    int    `json:"retentionDays"`
	Consumer         string `json:"consumer"`  // the consuming application
	GrantKind        string `json:"grantKind"` // group or service
	Group            string `json:"group,omitempty"`
	IssuedAt         string `json:"issuedAt"`  // RFC 3339 UTC
	ExpiresAt        string `json:"expiresAt"` // RFC 3339 UTC
}

// Signature is one party's Ed25519 signature (base64) over the
// contract's canonical JSON (RFC 8785).
type Signature struct {
	Role      string `json:"role"`
	Signature string `json:"signature"`
}

// SignedContract is a contract file: the terms and the signatures made so
// far.
type SignedContract struct {
	Contract   Contract    `json:"contract"`
	Signatures []Signature `json:"signatures"`
}

// Canonical returns the RFC 8785 canonical JSON of v.
func Canonical(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jcs.Transform(b)
}

// Validate checks the terms: every field present and well formed.
// Whether special-category data is involved depends on the spec, so
// CheckAgainst checks the Article 9 condition.
func (c Contract) Validate() error {
	var errs []string
	need := func(field, v string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, field+" is required")
		}
	}
	if c.Format != ContractFormat {
		errs = append(errs, fmt.Sprintf("format must be %q", ContractFormat))
	}
	need("id", c.ID)
	for role, p := range map[string]Party{RoleRequester: c.Requester, RoleApprover: c.Approver} {
		need(role+".subject", p.Subject)
		if _, err := DecodePublicKey(p.PublicKey); err != nil {
			errs = append(errs, role+".publicKey: "+err.Error())
		}
	}
	need("api", c.API)
	if !slices.Contains([]string{plinth.EnvDevelopment, plinth.EnvStaging, plinth.EnvProduction}, c.Environment) {
		errs = append(errs, "environment must be development, staging or production")
	}
	if len(c.Entities) == 0 {
		errs = append(errs, "entities must name at least one entity")
	}
	if len(c.Operations) == 0 {
		errs = append(errs, "operations must name at least one of read, write, report")
	}
	for _, op := range c.Operations {
		if !slices.Contains(contractOperations, op) {
			errs = append(errs, fmt.Sprintf("operations: %q is not one of read, write, report", op))
		}
	}
	need("purpose", c.Purpose)
	if !slices.Contains(Article6Bases, c.LegalBasis) {
		errs = append(errs, "legalBasis must be one of "+strings.Join(Article6Bases, ", "))
	}
	if c.SpecialCondition != "" && !slices.Contains(Article9Conditions, c.SpecialCondition) {
		errs = append(errs, "specialCondition must be one of "+strings.Join(Article9Conditions, ", "))
	}
	if c.RetentionDays <= 0 {
		errs = append(errs, "retentionDays must be a positive number of days")
	}
	need("consumer", c.Consumer)
	switch c.GrantKind {
	case GrantGroup:
		need("group", c.Group)
	case GrantService:
		if c.Group != "" {
			errs = append(errs, "group is only for grantKind group")
		}
	default:
		errs = append(errs, "grantKind must be group or service")
	}
	issued, err1 := parseUTC(c.IssuedAt)
	expires, err2 := parseUTC(c.ExpiresAt)
	if err1 != nil {
		errs = append(errs, "issuedAt: "+err1.Error())
	}
	if err2 != nil {
		errs = append(errs, "expiresAt: "+err2.Error())
	}
	if err1 == nil && err2 == nil && !expires.After(issued) {
		errs = append(errs, "expiresAt must be after issuedAt")
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return errors.New("contract: " + strings.Join(errs, "; "))
	}
	return nil
}

// Expiry returns the contract's expiry time.
func (c Contract) Expiry() time.Time { t, _ := parseUTC(c.ExpiresAt); return t }

func parseUTC(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", s)
	}
	if t.Location() != time.UTC {
		return time.Time{}, fmt.Errorf("%q is not in UTC (end it with Z)", s)
	}
	return t, nil
}

// CheckAgainst checks the contract against the served domains: the API
// and entities exist, and special-category fields come with an Article 9
// condition.
func (c Contract) CheckAgainst(ds []*plinth.Domain) error {
	d := findDomain(ds, c.API)
	if d == nil {
		return fmt.Errorf("contract: api %q is not a served domain", c.API)
	}
	special := false
	for _, plural := range c.Entities {
		e := findEntity(d, plural)
		if e == nil {
			return fmt.Errorf("contract: entities: %q is not an entity of %s", plural, d.Name)
		}
		special = special || hasSpecial(e.Fields)
	}
	if special && c.SpecialCondition == "" {
		return errors.New("contract: specialCondition (UK GDPR Article 9) is required: the entities hold special-category fields")
	}
	return nil
}

// Sign adds (or replaces) role's signature, made with priv, whose public
// key must be the one the contract names for role.
func (s *SignedContract) Sign(role string, priv ed25519.PrivateKey) error {
	party, err := s.Contract.party(role)
	if err != nil {
		return err
	}
	if err := s.Contract.Validate(); err != nil {
		return err
	}
	pub, _ := DecodePublicKey(party.PublicKey)
	if !bytes.Equal(priv.Public().(ed25519.PublicKey), pub) {
		return fmt.Errorf("the key is not the %s's: the contract names key %s", role, KeyID(pub))
	}
	msg, err := Canonical(s.Contract)
	if err != nil {
		return err
	}
	sig := Signature{Role: role, Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, msg))}
	s.Signatures = slices.DeleteFunc(s.Signatures, func(x Signature) bool { return x.Role == role })
	s.Signatures = append(s.Signatures, sig)
	slices.SortFunc(s.Signatures, func(a, b Signature) int { return strings.Compare(a.Role, b.Role) })
	return nil
}

// AddSignature checks a signature made elsewhere (in the browser) and adds it.
func (s *SignedContract) AddSignature(sig Signature) error {
	if err := s.checkSignature(sig); err != nil {
		return err
	}
	s.Signatures = slices.DeleteFunc(s.Signatures, func(x Signature) bool { return x.Role == sig.Role })
	s.Signatures = append(s.Signatures, sig)
	slices.SortFunc(s.Signatures, func(a, b Signature) int { return strings.Compare(a.Role, b.Role) })
	return nil
}

func (c Contract) party(role string) (Party, error) {
	switch role {
	case RoleRequester:
		return c.Requester, nil
	case RoleApprover:
		return c.Approver, nil
	}
	return Party{}, fmt.Errorf("role must be %s or %s, not %q", RoleRequester, RoleApprover, role)
}

// checkSignature verifies one signature against the party's key.
func (s *SignedContract) checkSignature(sig Signature) error {
	party, err := s.Contract.party(sig.Role)
	if err != nil {
		return err
	}
	pub, err := DecodePublicKey(party.PublicKey)
	if err != nil {
		return fmt.Errorf("%s.publicKey: %w", sig.Role, err)
	}
	raw, err := base64.StdEncoding.DecodeString(sig.Signature)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return fmt.Errorf("the %s's signature is not base64 of %d bytes", sig.Role, ed25519.SignatureSize)
	}
	msg, err := Canonical(s.Contract)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, raw) {
		return fmt.Errorf("the %s's signature does not match the contract: it was changed after signing, or signed with another key", sig.Role)
	}
	return nil
}

// Verification is what Verify found.
type Verification struct {
	Signed   []string // roles whose signatures verify
	Missing  []string // roles that have not signed
	Complete bool     // both parties signed
}

// ParseContractFile reads a contract file, which must be canonical JSON
// (RFC 8785, optionally followed by one newline) with no unknown fields.
func ParseContractFile(b []byte) (SignedContract, error) {
	body := bytes.TrimSuffix(b, []byte("\n"))
	canon, err := jcs.Transform(body)
	if err != nil {
		return SignedContract{}, fmt.Errorf("the contract file is not valid JSON: %w", err)
	}
	if !bytes.Equal(canon, body) {
		return SignedContract{}, errors.New("the contract file is not in canonical form (RFC 8785): it was edited or written by another tool; a signed contract must be byte for byte canonical")
	}
	var s SignedContract
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return SignedContract{}, fmt.Errorf("the contract file does not decode: %w", err)
	}
	// A field the decoder dropped or reshaped (null for a list, a number
	// written otherwise) changes the re-encoded form.
	again, err := Canonical(s)
	if err != nil {
		return SignedContract{}, err
	}
	if !bytes.Equal(again, body) {
		return SignedContract{}, errors.New("the contract file holds values the contract format does not (check for null, empty or misspelt fields)")
	}
	return s, nil
}

// Verify checks the terms and every signature present. An error means the
// contract is malformed or a signature fails; missing signatures are
// reported in the Verification.
func (s SignedContract) Verify() (Verification, error) {
	var v Verification
	if err := s.Contract.Validate(); err != nil {
		return v, err
	}
	seen := map[string]bool{}
	for _, sig := range s.Signatures {
		if seen[sig.Role] {
			return v, fmt.Errorf("the %s signed twice", sig.Role)
		}
		seen[sig.Role] = true
		if err := s.checkSignature(sig); err != nil {
			return v, err
		}
		v.Signed = append(v.Signed, sig.Role)
	}
	for _, role := range []string{RoleApprover, RoleRequester} {
		if !seen[role] {
			v.Missing = append(v.Missing, role)
		}
	}
	v.Complete = len(v.Missing) == 0
	return v, nil
}

// Encode returns the contract file's bytes: canonical JSON and a newline.
func (s SignedContract) Encode() ([]byte, error) {
	if s.Signatures == nil {
		s.Signatures = []Signature{}
	}
	b, err := Canonical(s)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// EncodePublicKey is the contract's form of a public key: base64 of its
// 32 bytes (what WebCrypto exports as "raw").
func EncodePublicKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// DecodePublicKey reads a public key in the contract's form.
func DecodePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("not an Ed25519 public key (base64 of %d bytes)", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// KeyID is a short fingerprint of a public key for people to compare.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}
