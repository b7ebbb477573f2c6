// Package lake is Plinth's data lake: change events and snapshots landed as
// Hive-partitioned Parquet that Athena, Trino, Spark and DuckDB read as
// they are, in a local folder (Dir) or on S3 (package s3), both behind
// Target.
//
// # Layout
//
//	{domain}/{entity}/events/import_year=YYYY/import_month=MM/import_day=DD/import_date=YYYYMMDD/part-<first>-<last>.parquet
//	{domain}/{entity}/snapshot/import_date=YYYYMMDD/part-<run>-NNNNN.parquet and _manifest.json
//	_special/{domain}/{entity}/…   the special-category dataset of a domain that opts in
//	_audit/import_year=…/import_date=YYYYMMDD/part-<first>-<last>.parquet
//
// Event files hold the rows of parquet.EventSchemaFor (the envelope, the
// old and new data as JSON text, the state in the Reporting API's typed
// columns, prefixed state_); snapshot files those of parquet.SchemaFor.
// LakeEntity leaves the special-category fields, top-level and nested, out of both.
//
// # Exactly once
//
// A Lander reads one domain's stream from a Source (nats.BatchSource: a
// durable consumer that starts at its acknowledgement floor), writes each
// event into the open file of its partition (entity and UTC day of its
// dateTime), and lands the files (Target.Put: visible at once, durable on
// return) when the buffer is full or old enough; only then does it
// acknowledge the messages. An event whose sequence a file of its
// partition already holds is skipped: landedIndex lists each partition
// once and looks a sequence that falls in a file's range up in that
// file's sequence column, so the answer is exact after a crash, with new
// batch boundaries, after compaction and after redeliveries.
//
// # Schema evolution
//
// A new field is a new column in new files (readers union by name and see
// null in older files); a removed field stays in older files. A field whose
// Parquet type changes is refused (ErrSchema) when the lander starts.
//
// # Maintenance
//
// Snapshot writes an entity from one Store.Scan; Compact merges the small
// files of closed partitions (the merged file first, then the old ones go;
// an interrupted compaction is finished from the merged file's footer);
// Erase rewrites every file holding a record without it; AuditArchive
// keeps the audit chain, with hashes, for audit.VerifyWithArchive and
// audit.SearchAllWithArchive; DDL prints Athena, Trino and DuckDB table
// definitions.
package lake
