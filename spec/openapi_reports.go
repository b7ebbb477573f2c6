package spec

import (
	"fmt"

	"github.com/plinth-data/plinth"
)

// The Reporting API's part of the document: the index, and per entity the
// report, its deletions and its schema.

// reportTag groups the Reporting API's operations.
const reportTag = "reports"

// Media types of reports.
const (
	mediaCSV     = "text/csv"
	mediaNDJSON  = "application/x-ndjson"
	mediaParquet = "application/vnd.apache.parquet"
)

// reportIndex adds GET /api/v1/reports.
func (g *openAPIGen) reportIndex() error {
	if err := g.claim("operationId", "listReports", "the Reporting API"); err != nil {
		return err
	}
	g.schemas.set("ReportList", obj{
		{"type", "object"},
		{"description", "The entities the caller may report on."},
		{"properties", obj{{"reports", obj{{"type", "array"}, {"items", obj{
			{"type", "object"},
			{"properties", obj{
				{"entity", obj{{"type", "string"}, {"description", "The entity's plural, as in its routes."}}},
				{"domain", obj{{"type", "string"}}},
				{"description", obj{{"type", "string"}}},
				{"records", obj{{"type", "integer"}, {"description", "How many records the entity has now."}}},
				{"lastUpdated", obj{{"type", []string{"string", "null"}}, {"format", "date-time"},
					{"description", "When a record of the entity was last created, updated or deleted; null when it never was."}}},
				{"links", obj{{"type", "object"}, {"additionalProperties", obj{{"type", "string"}}},
					{"description", "The routes of the entity's report: data, schema, deletions."}}},
			}},
			{"required", []string{"entity", "domain", "records", "lastUpdated", "links"}},
		}}}}}},
		{"required", []string{"reports"}},
	})
	ops := map[string]any{plinth.ActionListReports: operation{
		Tags: []string{reportTag}, OperationID: "listReports", Summary: "List the reports you may use",
		Description: "Every entity the token may report on, with its record count, last update and the links to its report, schema and deletions. Any valid token may call it.",
		Parameters:  []any{paramRef("CorrelationId")},
		Responses: append(obj{{"200", response{Description: "The reports.",
			Headers: obj{{"x-correlation-id", headerRef("CorrelationId")}}, Content: jsonContent(schemaRef("ReportList"))}}},
			g.errs("401", "500", "503")...),
	}}
	return endpointPaths(&g.paths, []plinth.Endpoint{plinth.ReportIndexEndpoint()}, ops, "the Reporting API")
}

// reports adds the Reporting API routes of one entity.
func (g *openAPIGen) reports(d *plinth.Domain, e *plinth.Entity) error {
	owner := fmt.Sprintf("entity %s of domain %s", e.Name, d.Name)
	plural := pascal(e.Plural)
	for _, id := range []string{"report" + plural, "report" + plural + "Deletions", "report" + plural + "Schema"} {
		if err := g.claim("operationId", id, owner); err != nil {
			return err
		}
	}
	name := pascal(e.Name)
	correlation := paramRef("CorrelationId")
	params := []any{correlation}
	for _, f := range e.Filters {
		params = append(params, filterParams(e, f)...)
	}
	params = append(params,
		parameter{Name: "format", In: "query", Schema: obj{{"type", "string"}, {"enum", []string{"csv", "ndjson", "json", "parquet"}}},
			Description: "The format; wins over Accept. Without either, CSV."},
		parameter{Name: "bom", In: "query", Schema: obj{{"type", "boolean"}},
			Description: "CSV only: start with a UTF-8 byte order mark, which Excel needs to read non-ASCII text."},
		parameter{Name: "since", In: "query", Schema: obj{{"type", "string"}},
			Description: "An incremental extract: only records created or changed since the report that returned this watermark (its `Plinth-Watermark` trailer). Never misses a change, even one that committed while that report ran; may repeat a record."},
		parameter{Name: "updated_since", In: "query", Schema: obj{{"type", "string"}, {"format", "date-time"}},
			Description: "Only records whose updatedAt is at or after this time. Wall-clock times can miss changes that commit late: use since for incremental refresh."},
	)
	stream := obj{{"type", "string"}}
	reportContent := obj{
		{mediaCSV, mediaType{Schema: obj{{"type", "string"}, {"description", "RFC 4180, a header row of the columns in spec order, nested values as JSON text, empty for null."}}}},
		{mediaNDJSON, mediaType{Schema: stream}},
		{mediaJSON, mediaType{Schema: obj{{"type", "array"}, {"items", schemaRef(name)}}}},
		{mediaParquet, mediaType{Schema: obj{{"type", "string"}, {"contentMediaType", mediaParquet}}}},
	}
	trailer := obj{{"description", "Names the trailers sent after the data: " + "`Plinth-Record-Count` (how many records) and `Plinth-Watermark` (pass as since= next time). A report that fails part-way ends without them, as a truncated transfer."},
		{"schema", obj{{"type", "string"}}}}
	ops := map[string]any{
		plinth.ActionReport: operation{
			Tags: []string{d.Name}, OperationID: "report" + plural,
			Summary: fmt.Sprintf("Every %s, in one response", humanName(e.Name)),
			Description: fmt.Sprintf("Streams every %s (with the list filters, every record that matches) in key order, every field, "+
				"from one read snapshot: a record changed during the export appears once, as before or after; records created after it started do not appear. "+
				"No row cap and no pages. gzip when Accept-Encoding allows.", humanName(e.Name)),
			Parameters: params,
			Responses: append(obj{{"200", response{
				Description: "The records, streamed.",
				Headers: obj{{"x-correlation-id", headerRef("CorrelationId")},
					{"Content-Disposition", obj{{"description", "attachment; filename=\"<plural>-<UTC time>.<extension>\""}, {"schema", obj{{"type", "string"}}}}},
					{"Trailer", trailer}},
				Content: reportContent,
			}}}, g.errs("400", "401", "403", "406", "500", "503")...),
		},
		plinth.ActionReportDeletions: operation{
			Tags: []string{d.Name}, OperationID: "report" + plural + "Deletions",
			Summary:     fmt.Sprintf("%s deleted since a report", humanName(e.Plural)),
			Description: "The keys and deletion times of the records deleted since the report that returned `since`, and the watermark to use next. Deletions are kept for a retention (35 days by default); an older watermark is 410.",
			Parameters: []any{correlation, parameter{Name: "since", In: "query", Required: true, Schema: obj{{"type", "string"}},
				Description: "The watermark of the last report or deletions answer."}},
			Responses: append(obj{{"200", response{Description: "The deletions.",
				Headers: obj{{"x-correlation-id", headerRef("CorrelationId")}},
				Content: jsonContent(obj{{"type", "object"}, {"properties", obj{
					{"deletions", obj{{"type", "array"}, {"items", obj{{"type", "object"}, {"properties", obj{
						{"id", obj{{"type", "string"}}}, {"deletedAt", obj{{"type", "string"}, {"format", "date-time"}}}}},
						{"required", []string{"id", "deletedAt"}}}}}},
					{"watermark", obj{{"type", "string"}}}}}, {"required", []string{"deletions", "watermark"}}}),
			}}}, g.errs("400", "401", "403", "410", "500", "503")...),
		},
		plinth.ActionReportSchema: operation{
			Tags: []string{d.Name}, OperationID: "report" + plural + "Schema",
			Summary:     fmt.Sprintf("The columns of the %s report", humanName(e.Plural)),
			Description: "Each column of the report in order, with its type, PII class and description, as JSON or CSV, for BI tools to import.",
			Parameters: []any{correlation, parameter{Name: "format", In: "query", Schema: obj{{"type", "string"}, {"enum", []string{"json", "csv"}}},
				Description: "json (the default) or csv; wins over Accept."}},
			Responses: append(obj{{"200", response{Description: "The columns.",
				Headers: obj{{"x-correlation-id", headerRef("CorrelationId")}},
				Content: obj{
					{mediaJSON, mediaType{Schema: obj{{"type", "object"}, {"properties", obj{
						{"entity", obj{{"type", "string"}}},
						{"columns", obj{{"type", "array"}, {"items", obj{{"type", "object"}, {"properties", obj{
							{"name", obj{{"type", "string"}}}, {"type", obj{{"type", "string"}}},
							{"pii", obj{{"type", "string"}, {"enum", []string{"none", "personal", "special"}}}},
							{"description", obj{{"type", "string"}}}}}}}}}}}}}},
					{mediaCSV, mediaType{Schema: obj{{"type", "string"}}}},
				},
			}}}, g.errs("401", "403", "406", "500", "503")...),
		},
	}
	return endpointPaths(&g.paths, plinth.ReportEndpoints(e.Plural), ops, owner)
}
