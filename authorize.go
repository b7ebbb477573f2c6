package plinth

import (
	"context"
	"strings"
)

// Operation is what a route does, for the access policy check.
type Operation string

// Operations.
const (
	OpPublic Operation = "public"
	OpRead   Operation = "read"
	OpWrite  Operation = "write"
	OpReport Operation = "report"
	OpAdmin  Operation = "admin"
)

// Route is a classified request route.
type Route struct {
	// Template is the route pattern, as grants name it:
	// "/api/v1/residents/{id}". Empty for an admin path that is not a
	// known admin route.
	Template string
	// Domain is the domain name and Entity the entity plural, for API and
	// Reporting API routes.
	Domain    string
	Entity    string
	Operation Operation
}

// AuthRequest is what an authorizer needs of an HTTP request.
type AuthRequest struct {
	// Authorization is the raw header value: "Bearer <jwt>".
	Authorization string
	// Method is the HTTP method; Path the path the router routes on
	// (for chi: r.URL.RawPath when set, else r.URL.Path), not cleaned.
	Method, Path string
}

// Decision is the answer to an AuthRequest.
type Decision struct {
	Allow bool
	// Status is 200 when allowed; 401 for a missing or invalid token; 403
	// for a valid token without permission; 503 when the store could not be
	// asked (the authorizer fails closed).
	Status int
	// Reason is safe to show to the caller; it never details why a
	// signature failed.
	Reason    string
	Principal Principal
	Route     Route
	// MayRead says, for an allowed request on an entity, whether the
	// principal may also read the entity's records: the answer to a write
	// carries the record only then.
	MayRead bool
}

// Reasons with a fixed text that callers may compare with.
const (
	ReasonMissingToken = "no bearer token was sent"
	ReasonUnavailable  = "access could not be checked just now; try again shortly"
)

// statusUnauthorized is HTTP 401, written out so that the domain language
// does not import net/http.
const statusUnauthorized = 401

// WWWAuthenticate is the WWW-Authenticate header value for a 401 decision
// (RFC 6750): `Bearer realm="plinth"` when no token was sent, otherwise
// with error="invalid_token" and the reason. It is empty for decisions
// that are not 401. It lives with the decision so that every entry point
// answers a 401 the same way without importing the authorizer.
func (d Decision) WWWAuthenticate() string {
	if d.Status != statusUnauthorized {
		return ""
	}
	if d.Reason == ReasonMissingToken || d.Reason == "" {
		return `Bearer realm="plinth"`
	}
	return `Bearer realm="plinth", error="invalid_token", error_description="` + quoteSafe(d.Reason) + `"`
}

// quoteSafe keeps the printable ASCII of s that may stand in a quoted
// string, without quotes and backslashes.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}

// Decider decides whether a request may go ahead, and as whom. The HTTP
// middleware and the Lambda authorizer both ask one, so the same rules hold
// on a server and behind API Gateway.
type Decider interface {
	Decide(ctx context.Context, r AuthRequest) Decision
}

// GrantWriter stores a grant: an AccessStore, or a write transaction's
// AccessTx so the grant commits with its audit record.
type GrantWriter interface {
	CreateGrant(ctx context.Context, g Grant) error
}

// Authorizer decides requests and issues service tokens; package auth
// implements it. It is safe for concurrent use.
type Authorizer interface {
	Decider
	// IssueServiceTokenIn validates and signs a grant and stores it
	// through w (a write transaction, so it commits with its audit record).
	IssueServiceTokenIn(ctx context.Context, w GrantWriter, g Grant) (string, Grant, error)
}
