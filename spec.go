// Package plinth holds the domain language of Plinth: domain specs, records,
// queries, pages and cursors, errors, and the interfaces (Store, Tx) that the
// outer packages implement. It imports no drivers and no HTTP.
package plinth

import (
	"regexp"
	"strings"
)

// Domain is one data domain published as a Platform API, loaded from a spec.
type Domain struct {
	Name         string
	Description  string
	Owner        Owner
	SourceSystem string
	// DataSafety is the domain's data-safety policy (spec key dataSafety).
	DataSafety DataSafety
	Entities   []*Entity
	File       string // the spec file it was loaded from, for messages
}

// DataSafety is a domain's data-safety policy.
type DataSafety struct {
	// Special is what obfuscation does with the domain's special-category
	// fields; empty means SpecialRemove. A field's own Special wins.
	Special SpecialHandling
}

// SpecialHandling is what obfuscation does with special-category data
// (pii: special): remove it from the copy, or keep a generalised form.
type SpecialHandling string

const (
	SpecialRemove     SpecialHandling = "remove"
	SpecialGeneralise SpecialHandling = "generalise"
)

// Owner says who is accountable for a domain.
type Owner struct {
	ServiceArea  string
	ProductOwner string // contact e-mail of the product owner
	CloudAccount string // label of the cloud account the domain runs in
	// Groups are the user groups that own the domain: they approve access
	// requests to it in the Developer Hub (spec key owner.groups).
	Groups []string
}

// Entity is one kind of record in a domain, served at /api/v1/{Plural}.
type Entity struct {
	Name        string // singular, camelCase: "resident"
	Plural      string // plural kebab-case path segment: "residents"
	Description string
	Key         Key
	Fields      []*Field // top-level fields; Fields[0] is always the key field
	Filters     []*Filter
	Domain      *Domain
}

// KeyType is the type of an entity's key.
type KeyType string

const (
	KeyUUID    KeyType = "uuid"
	KeyInteger KeyType = "integer"
	KeyText    KeyType = "string"
)

// Key names an entity's identifying field.
type Key struct {
	Name      string
	Type      KeyType
	Generated bool // assigned by Plinth on create; otherwise the client supplies it
}

// Type is the type of a field.
type Type string

const (
	TypeString   Type = "string"
	TypeInteger  Type = "integer"
	TypeNumber   Type = "number"
	TypeBoolean  Type = "boolean"
	TypeDate     Type = "date"
	TypeDateTime Type = "datetime"
	TypeUUID     Type = "uuid"
	TypeObject   Type = "object"
	TypeArray    Type = "array"
)

// Types lists every field type, in the order the docs present them.
var Types = []Type{TypeString, TypeInteger, TypeNumber, TypeBoolean, TypeDate, TypeDateTime, TypeUUID, TypeObject, TypeArray}

// Format is a named, checked shape of a string (or, for uprn, integer) value.
type Format string

const (
	FormatEmail      Format = "email"
	FormatPhone      Format = "phone"
	FormatUKPostcode Format = "ukPostcode"
	FormatNHSNumber  Format = "nhsNumber"
	FormatNINumber   Format = "niNumber"
	FormatUPRN       Format = "uprn"
)

// Formats lists every known format.
var Formats = []Format{FormatEmail, FormatPhone, FormatUKPostcode, FormatNHSNumber, FormatNINumber, FormatUPRN}

// PII is the personal-data class of a field.
type PII string

const (
	PIINone     PII = "none"
	PIIPersonal PII = "personal"
	PIISpecial  PII = "special" // UK GDPR special category: health, ethnicity, religion …
)

// Field is one field of an entity, or of a nested object or array item.
type Field struct {
	Name        string
	Type        Type
	Description string
	Required    bool
	MaxLength   *int
	Enum        []string
	Pattern     *regexp.Regexp
	Min, Max    *float64
	Format      Format
	PII         PII
	// References is the plural of the entity whose key the field holds
	// ("residents"), when it refers to another record; the field's type
	// matches that entity's key type.
	References string
	// Special, set only on special-category fields (spec key
	// dataSafety.special), overrides the domain's DataSafety.Special.
	Special SpecialHandling
	Fields  []*Field // for objects: the nested fields
	Items   *Field   // for arrays: the item (its Name is empty)
}

// IsNested reports whether the field is an object or an array, whose
// values stores keep as JSON.
func (f *Field) IsNested() bool { return f.Type == TypeObject || f.Type == TypeArray }

// FieldByName returns the named field among fields, or nil.
func FieldByName(fields []*Field, name string) *Field {
	for _, f := range fields {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// Match is how a filter compares a query value with a field.
type Match string

const (
	MatchExact    Match = "exact"
	MatchPrefix   Match = "prefix"   // case- and accent-insensitive
	MatchContains Match = "contains" // case- and accent-insensitive
	MatchRange    Match = "range"    // {param}_from and {param}_to, inclusive; {param} alone is exact
)

// Filter is a query parameter of a list route.
type Filter struct {
	Param string // snake_case query parameter: "last_name"
	Path  []string
	Match Match
	// Field is the filtered scalar field (the leaf of Path).
	Field *Field
	// Array is set when the filter reaches into an array of objects:
	// the top-level array field, with Path[1] the item field.
	Array *Field
}

// PathString is the dotted field path of the filter: "addresses.postCode".
func (f *Filter) PathString() string { return strings.Join(f.Path, ".") }

// Folded reports whether the filter compares folded (case- and
// accent-insensitive) text.
func (f *Filter) Folded() bool { return f.Match == MatchPrefix || f.Match == MatchContains }

// KeyField returns the key field of the entity.
func (e *Entity) KeyField() *Field { return e.Fields[0] }

// Field returns the named top-level field, or nil.
func (e *Entity) Field(name string) *Field { return FieldByName(e.Fields, name) }

// Filter returns the filter with the query parameter name, or nil.
func (e *Entity) Filter(param string) *Filter {
	for _, f := range e.Filters {
		if f.Param == param {
			return f
		}
	}
	return nil
}

// SystemFields are set by Plinth on every record and may not be declared.
var SystemFields = []string{"version", "createdAt", "updatedAt"}
