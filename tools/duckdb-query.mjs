// Runs SQL statements in an in-memory DuckDB (through @duckdb/node-api,
// which ships its binary) and prints, for each statement, one line of JSON:
//   {"columns":[…],"types":[…],"rows":[[…],…]}
// Values are DuckDB's JSON forms: BIGINT as a string, DOUBLE as a number,
// DATE "2006-01-02", TIMESTAMP WITH TIME ZONE "2006-01-02 15:04:05.999999+00"
// (the session time zone is UTC), JSON and VARCHAR as strings.
// The report and parquet tests use it as an independent reader of exports.
// Usage: node tools/duckdb-query.mjs 'SELECT …' ['SELECT …' …]
import { DuckDBInstance } from '@duckdb/node-api';

const instance = await DuckDBInstance.create(':memory:');
const conn = await instance.connect();
await conn.run("SET TimeZone = 'UTC'");
for (const sql of process.argv.slice(2)) {
  const reader = await conn.runAndReadAll(sql);
  const out = {
    columns: reader.columnNames(),
    types: reader.columnTypes().map((t) => t.toString()),
    rows: reader.getRowsJson(),
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}
