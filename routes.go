package plinth

import "slices"

// The route templates of the Platform API, written once: the router serves
// them, the authorizer classifies requests by them (and grants name them),
// and the OpenAPI document describes them. Templates use the router's
// syntax: "{id}" is one path segment.
const (
	APIBase   = "/api/v1"
	AdminBase = "/admin/v1"

	RoutePing    = APIBase + "/healthcheck/ping"
	RouteReady   = APIBase + "/healthcheck/ready"
	RouteOpenAPI = APIBase + "/openapi.json"
	// RouteMetrics is for Prometheus, not for API consumers: it is served
	// and public, but not part of the OpenAPI document.
	RouteMetrics = "/metrics"

	// RouteReports lists what the caller may report on; each entity's
	// reporting routes are ReportEndpoints.
	RouteReports = APIBase + "/reports"

	RouteTokens       = AdminBase + "/tokens"
	RouteToken        = AdminBase + "/tokens/{id}"
	RouteAccess       = AdminBase + "/access"
	RouteAccessPolicy = AdminBase + "/access/{domain}/{environment}"
	RouteAudit        = AdminBase + "/audit"
)

// Endpoint is one method on one route template.
type Endpoint struct {
	Method    string // "GET", "POST", "PUT", "PATCH" or "DELETE"; HEAD goes with GET
	Template  string
	Operation Operation
	// Name says what the endpoint does. For an entity it is one of the
	// Action names (the audit trail's operation); for the platform and
	// admin routes it is the OpenAPI operationId.
	Name string
}

// What an entity endpoint does.
const (
	ActionList   = "list"
	ActionView   = "view"
	ActionCreate = "create"
	ActionUpdate = "update"
	ActionDelete = "delete"
)

// PlatformEndpoints are the public routes of the API that are not about a
// domain: the health checks and the OpenAPI document.
func PlatformEndpoints() []Endpoint {
	return []Endpoint{
		{"GET", RoutePing, OpPublic, "ping"},
		{"GET", RouteReady, OpPublic, "getReadiness"},
		{"GET", RouteOpenAPI, OpPublic, "getOpenApiDocument"},
	}
}

// AdminEndpoints are the routes of the admin API, in the order the OpenAPI
// document lists them.
func AdminEndpoints() []Endpoint {
	return []Endpoint{
		{"GET", RouteTokens, OpAdmin, "listTokens"},
		{"POST", RouteTokens, OpAdmin, "issueToken"},
		{"GET", RouteToken, OpAdmin, "getToken"},
		{"PATCH", RouteToken, OpAdmin, "updateToken"},
		{"GET", RouteAccess, OpAdmin, "listAccessPolicies"},
		{"PUT", RouteAccessPolicy, OpAdmin, "putAccessPolicy"},
		{"DELETE", RouteAccessPolicy, OpAdmin, "deleteAccessPolicy"},
		{"GET", RouteAudit, OpAdmin, "searchAudit"},
	}
}

// EntityCollection is the route template of an entity's records:
// "/api/v1/residents".
func EntityCollection(plural string) string { return APIBase + "/" + plural }

// EntityItem is the route template of one record of an entity:
// "/api/v1/residents/{id}".
func EntityItem(plural string) string { return EntityCollection(plural) + "/{id}" }

// EntityEndpoints are the five endpoints of an entity, collection first.
func EntityEndpoints(plural string) []Endpoint {
	coll, item := EntityCollection(plural), EntityItem(plural)
	return []Endpoint{
		{"GET", coll, OpRead, ActionList},
		{"POST", coll, OpWrite, ActionCreate},
		{"GET", item, OpRead, ActionView},
		{"PATCH", item, OpWrite, ActionUpdate},
		{"DELETE", item, OpWrite, ActionDelete},
	}
}

// What a Reporting API endpoint does (its audit operation is "report").
const (
	ActionReport          = "report"
	ActionReportDeletions = "reportDeletions"
	ActionReportSchema    = "reportSchema"
	ActionListReports     = "listReports"
)

// ReportIndexEndpoint lists the entities the caller may report on. Any
// valid token may call it: it lists only what the token may report on.
func ReportIndexEndpoint() Endpoint {
	return Endpoint{"GET", RouteReports, OpReport, ActionListReports}
}

// EntityReport is the route template of an entity's report:
// "/api/v1/reports/residents".
func EntityReport(plural string) string { return RouteReports + "/" + plural }

// ReportEndpoints are the Reporting API endpoints of an entity: every
// record in one response, the deletions since a watermark, and the
// columns of the report.
func ReportEndpoints(plural string) []Endpoint {
	base := EntityReport(plural)
	return []Endpoint{
		{"GET", base, OpReport, ActionReport},
		{"GET", base + "/deletions", OpReport, ActionReportDeletions},
		{"GET", base + "/schema", OpReport, ActionReportSchema},
	}
}

// reservedPlurals are the segments after /api/v1/ that name no entity: the
// platform routes' and the Reporting API's.
var reservedPlurals = []string{"healthcheck", "openapi.json", "reports"}

// ReservedPlural reports whether an entity may not use plural as its path
// segment.
func ReservedPlural(plural string) bool { return slices.Contains(reservedPlurals, plural) }
