// Package lambda adapts Plinth to AWS Lambda. Authorizer is an API Gateway
// REQUEST authorizer that applies the same access decision as the HTTP
// middleware (package auth), so the same rules hold on a server and behind
// API Gateway; with RequireAccounts it also denies a request whose AWS
// account (requestContext.accountId) is not the domain's. API serves the
// Platform API itself from Lambda: API Gateway events through the
// http.Handler plinth serve runs (api.go).
//
// # Deploying the authorizer
//
// Build cmd/plinth-authorizer for the provided.al2023 runtime (the binary is
// named bootstrap) and attach it to a REST API as a REQUEST authorizer
// (payload version 1.0, the only one REST APIs have):
//
//   - Authorization caching: off (TTL 0; API Gateway's default is 300 s). A
//     decision depends on the method and path, and the policy returned
//     allows only the request's own method ARN, so a result cached by token
//     would wrongly deny the token's next call to another resource. Caching
//     would also stretch the revocation bound of service tokens (at most
//     5 s, from package auth's caches) to the TTL.
//   - Identity source: method.request.header.Authorization, or none; with
//     caching off it is optional and the function is called either way,
//     answering "Unauthorized" itself when the header is missing.
//   - Name stages "prod", "staging", "dev" and the like. Called on the
//     execute-api endpoint, the path carries the stage as its first segment,
//     which Handle removes; a stage named like a route segment ("api",
//     "admin") makes that ambiguous (Handle then compares the path with the
//     resource template).
//
// # Responses
//
//   - Allowed: an IAM policy allowing execute-api:Invoke on the request's
//     method ARN, with principalId and a context map the backend reads from
//     requestContext.authorizer: subject, email, name, groups (comma-joined:
//     context values must be strings, numbers or booleans), tokenId,
//     consumer, reason, status, route, domain, operation.
//   - 401 (no, malformed, expired or badly signed token): the error
//     "Unauthorized". That exact message is API Gateway's signal to answer
//     401 Unauthorized; it does not cache that result.
//   - 403 (valid token without permission) and 503 (the store could not be
//     read): a policy denying execute-api:Invoke on the method ARN. API
//     Gateway answers 403; the context map (reason, status) is available to
//     gateway-response templates as $context.authorizer.*.
//   - Anything unexpected (a panic, a missing method or path, a path that
//     is not a Plinth route) denies; several different Authorization headers
//     answer "Unauthorized". Only an event without a methodArn, which API
//     Gateway never sends, returns another error (API Gateway: 500).
package lambda

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"github.com/plinth-data/plinth"
)

// ErrUnauthorized is the error API Gateway turns into a 401 response. Its
// message must be exactly "Unauthorized".
var ErrUnauthorized = errors.New("Unauthorized")

// anonymous is the principalId of a response without a known principal.
const anonymous = "anonymous"

// Authorizer is an API Gateway (REST API) REQUEST authorizer.
type Authorizer struct {
	decider  plinth.Decider
	log      *slog.Logger
	accounts map[string]string // domain → the AWS account its API must run in
}

// NewAuthorizer returns an authorizer that asks a for every decision. It
// logs through slog.Default.
func NewAuthorizer(a plinth.Decider) *Authorizer {
	return &Authorizer{decider: a, log: slog.Default()}
}

// RequireAccounts makes the authorizer deny a request to a domain's API
// unless API Gateway says the API runs in the domain's AWS account
// (requestContext.accountId), so a token cannot be used against a copy of
// the API deployed in another account. accounts maps a domain to its
// account id; a domain not in it is not checked. It returns h.
func (h *Authorizer) RequireAccounts(accounts map[string]string) *Authorizer {
	h.accounts = accounts
	return h
}

// Handle answers one authorizer invocation; pass it to lambda.Start. It
// returns ErrUnauthorized for a missing or invalid token and otherwise an
// Allow or Deny policy for ev.MethodArn (see the package documentation).
func (h *Authorizer) Handle(ctx context.Context, ev events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
	if ev.MethodArn == "" {
		// Without the ARN there is nothing to deny; API Gateway always sends
		// it, so this event did not come from API Gateway.
		h.log.ErrorContext(ctx, "authorizer: the event has no methodArn; is the function configured as a REQUEST authorizer?",
			"requestId", ev.RequestContext.RequestID, "type", ev.Type)
		return events.APIGatewayCustomAuthorizerResponse{}, errors.New("plinth authorizer: the event has no methodArn")
	}
	d, err := h.decide(ctx, ev)
	if err != nil {
		return events.APIGatewayCustomAuthorizerResponse{}, err
	}
	return response(ev.MethodArn, d), nil
}

// decide builds the request, asks the decider and logs the outcome. The
// error is ErrUnauthorized or nil; a panic becomes a 500 decision, which
// denies.
func (h *Authorizer) decide(ctx context.Context, ev events.APIGatewayCustomAuthorizerRequestTypeRequest) (d plinth.Decision, err error) {
	method := ev.HTTPMethod
	if method == "" {
		method = ev.RequestContext.HTTPMethod
	}
	req := plinth.AuthRequest{Method: strings.ToUpper(method), Path: requestPath(ev)}
	log := h.log.With("requestId", ev.RequestContext.RequestID, "method", req.Method, "path", req.Path,
		"sourceIp", ev.RequestContext.Identity.SourceIP)

	defer func() {
		if v := recover(); v != nil {
			log.ErrorContext(ctx, "authorizer: the access decision panicked; denying", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			d, err = plinth.Decision{Status: http.StatusInternalServerError, Reason: "internal error"}, nil
		}
	}()

	authz, ok := authorization(ev)
	if !ok {
		log.WarnContext(ctx, "authorizer: several different Authorization headers; answering 401", "status", http.StatusUnauthorized)
		return plinth.Decision{Status: http.StatusUnauthorized, Reason: "ambiguous Authorization header"}, ErrUnauthorized
	}
	req.Authorization = authz

	switch {
	case h.decider == nil:
		d = plinth.Decision{Status: http.StatusInternalServerError, Reason: "no decider configured"}
	case req.Method == "" || req.Path == "":
		d = plinth.Decision{Status: http.StatusForbidden, Reason: "the event has no method or path"}
	default:
		d = h.decider.Decide(ctx, req)
		if allowed(d) && d.Route.Operation == "" {
			// Package auth leaves a path it does not know to the router
			// (404) once the token is valid. Here there is no router
			// after the decision, and the path seen may differ from the
			// backend's (a stage prefix not removed), so deny instead.
			d = plinth.Decision{Status: http.StatusForbidden, Reason: "not a Plinth route", Principal: d.Principal}
		}
		if want := h.accounts[d.Route.Domain]; allowed(d) && want != "" && ev.RequestContext.AccountID != want {
			d = plinth.Decision{Status: http.StatusForbidden, Principal: d.Principal, Route: d.Route,
				Reason: fmt.Sprintf("the %s API must run in AWS account %s, not %q", d.Route.Domain, want, ev.RequestContext.AccountID)}
		}
	}

	attrs := []any{"status", d.Status, "allow", allowed(d), "reason", d.Reason, "route", d.Route.Template}
	if p := d.Principal; p.Subject != "" || p.TokenID != "" {
		attrs = append(attrs, "subject", p.Subject, "email", p.Email, "tokenId", p.TokenID, "consumer", p.Consumer)
	}
	switch {
	case allowed(d):
		log.InfoContext(ctx, "authorizer: allowed", attrs...)
	case d.Status == http.StatusUnauthorized:
		log.InfoContext(ctx, "authorizer: unauthenticated", attrs...)
		return d, ErrUnauthorized
	case d.Status >= 500:
		log.ErrorContext(ctx, "authorizer: denied, no decision could be made", attrs...)
	default:
		log.InfoContext(ctx, "authorizer: denied", attrs...)
	}
	return d, nil
}

// allowed reports whether a decision allows. A decision that says Allow with
// an error status is inconsistent and denies.
func allowed(d plinth.Decision) bool {
	return d.Allow && (d.Status == http.StatusOK || d.Status == 0)
}

// response is the IAM policy and context of a decision.
func response(methodARN string, d plinth.Decision) events.APIGatewayCustomAuthorizerResponse {
	effect := "Deny"
	if allowed(d) {
		effect = "Allow"
	}
	status := d.Status
	if status == 0 {
		status = http.StatusOK
		if effect == "Deny" {
			status = http.StatusForbidden
		}
	}
	p := d.Principal
	// API Gateway accepts only strings, numbers and booleans as context
	// values: no arrays, objects or nulls.
	ctx := map[string]any{
		"subject":   p.Subject,
		"email":     p.Email,
		"name":      p.Name,
		"groups":    strings.Join(p.Groups, ","),
		"tokenId":   p.TokenID,
		"consumer":  p.Consumer,
		"reason":    d.Reason,
		"status":    status,
		"route":     d.Route.Template,
		"domain":    d.Route.Domain,
		"operation": string(d.Route.Operation),
	}
	return events.APIGatewayCustomAuthorizerResponse{
		PrincipalID: principalID(p),
		PolicyDocument: events.APIGatewayCustomAuthorizerPolicy{
			Version: "2012-10-17",
			Statement: []events.IAMPolicyStatement{{
				Action:   []string{"execute-api:Invoke"},
				Effect:   effect,
				Resource: []string{methodARN},
			}},
		},
		Context: ctx,
	}
}

// principalID names the principal for API Gateway's logs: the subject, the
// service token, or "anonymous".
func principalID(p plinth.Principal) string {
	switch {
	case p.Subject != "":
		return p.Subject
	case p.TokenID != "":
		return "token:" + p.TokenID
	default:
		return anonymous
	}
}

// authorization returns the Authorization header, looked up without regard
// to case in Headers and MultiValueHeaders. It reports false when the event
// carries several different values, which must not be resolved by guessing.
func authorization(ev events.APIGatewayCustomAuthorizerRequestTypeRequest) (string, bool) {
	var found []string
	for k, v := range ev.Headers {
		if strings.EqualFold(k, "Authorization") {
			found = append(found, v)
		}
	}
	for k, vs := range ev.MultiValueHeaders {
		if strings.EqualFold(k, "Authorization") {
			found = append(found, vs...)
		}
	}
	value := ""
	for _, v := range found {
		v = strings.TrimSpace(v)
		switch {
		case v == "":
		case value == "":
			value = v
		case v != value:
			return "", false
		}
	}
	return value, true
}

// requestPath is the path of the request as the Platform API routes it:
// ev.Path, without the stage.
//
// API Gateway's path field is the path of the resource, without the stage,
// when the API is called through a custom domain, but it may carry the stage
// as its first segment ("/prod/api/v1/residents/42") when called on the
// execute-api endpoint; requestContext.path always carries it there. When the
// first segment equals requestContext.stage it is removed, unless the
// resource template (ev.Resource, which never carries the stage) itself
// starts with that segment and the path has no extra segment — so a stage
// named like a route segment ("api") still works, though stage names such as
// "prod", "staging" or "dev" are clearer.
func requestPath(ev events.APIGatewayCustomAuthorizerRequestTypeRequest) string {
	p := ev.Path
	if p == "" {
		p = ev.RequestContext.Path
	}
	return stripStage(p, ev.RequestContext.Stage, ev.Resource)
}
