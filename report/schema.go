package report

import (
	"encoding/csv"
	"io"

	"github.com/plinth-data/plinth"
)

// Column describes one column of a report, for BI tools to import
// (GET /api/v1/reports/{plural}/schema).
type Column struct {
	Name        string `json:"name"`
	Type        string `json:"type"`             // the spec's type: string, integer, number, boolean, date, datetime, uuid, object, array
	Format      string `json:"format,omitempty"` // the spec's format, such as nhsNumber or postcode
	PII         string `json:"pii"`              // none, personal or special
	Description string `json:"description,omitempty"`
}

// systemColumns describe the columns every record ends with.
var systemColumns = []Column{
	{Name: "version", Type: "integer", PII: string(plinth.PIINone), Description: "The record's version: 1 when created, one more with each change."},
	{Name: "createdAt", Type: "datetime", PII: string(plinth.PIINone), Description: "When the record was created (UTC)."},
	{Name: "updatedAt", Type: "datetime", PII: string(plinth.PIINone), Description: "When the record was last changed (UTC)."},
}

// Schema returns the columns of the entity's report, in report order:
// the same as Columns, with types, PII classes and descriptions.
func Schema(e *plinth.Entity) []Column {
	out := make([]Column, 0, len(e.Fields)+len(systemColumns))
	for _, f := range e.Fields {
		out = append(out, Column{Name: f.Name, Type: string(f.Type), Format: string(f.Format), PII: string(f.PII), Description: f.Description})
	}
	return append(out, systemColumns...)
}

// WriteSchemaCSV writes columns as CSV with a header row: name, type,
// format, pii, description.
func WriteSchemaCSV(w io.Writer, cols []Column) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"name", "type", "format", "pii", "description"})
	for _, c := range cols {
		_ = cw.Write([]string{c.Name, c.Type, c.Format, c.PII, c.Description})
	}
	cw.Flush()
	return cw.Error()
}
