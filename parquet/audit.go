package parquet

import (
	"bytes"
	"fmt"
	"io"
	"time"

	pq "github.com/parquet-go/parquet-go"
)

// AuditRow is an audit record as the lake archives it: the columns
// analysts filter on, and the record as stored (its canonical JSON, from
// which its hash is computed again) with its hashes.
type AuditRow struct {
	Sequence      int64     `parquet:"sequence"`
	Time          time.Time `parquet:"time,timestamp(microsecond)"`
	CorrelationID string    `parquet:"correlationId,optional"`
	Environment   string    `parquet:"environment,optional,dict"`
	Domain        string    `parquet:"domain,optional,dict"`
	Entity        string    `parquet:"entity,optional,dict"`
	Operation     string    `parquet:"operation,optional,dict"`
	Route         string    `parquet:"route,optional,dict"`
	UserSubject   string    `parquet:"userSubject,optional"`
	UserEmail     string    `parquet:"userEmail,optional"`
	Consumer      string    `parquet:"consumer,optional"`
	Decision      string    `parquet:"decision,optional,dict"`
	Status        int64     `parquet:"status"`
	RecordIDs     string    `parquet:"recordIds,optional"` // JSON array text
	Count         int64     `parquet:"count"`
	Record        string    `parquet:"record"` // the record's JSON
	PrevHash      string    `parquet:"prevHash,optional"`
	Hash          string    `parquet:"hash"`
}

// WriteAudit writes audit rows as one zstd file with footer metadata.
func WriteAudit(w io.Writer, rows []AuditRow, meta map[string]string) error {
	opts := []pq.WriterOption{pq.Compression(&pq.Zstd), pq.CreatedBy("plinth", "", "")}
	for k, v := range meta {
		opts = append(opts, pq.KeyValueMetadata(k, v))
	}
	pw := pq.NewGenericWriter[AuditRow](w, opts...)
	if _, err := pw.Write(rows); err != nil {
		return fmt.Errorf("parquet: %w", err)
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("parquet: %w", err)
	}
	return nil
}

// ReadAudit reads the rows of a file WriteAudit wrote.
func ReadAudit(file []byte) ([]AuditRow, error) {
	rows, err := pq.Read[AuditRow](bytes.NewReader(file), int64(len(file)))
	if err != nil {
		return nil, fmt.Errorf("parquet: %w", err)
	}
	return rows, nil
}
