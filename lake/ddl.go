package lake

import (
	"fmt"
	"sort"
	"strings"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/parquet"
)

// DDL formats.
const (
	FormatAthena = "athena"
	FormatTrino  = "trino"
	FormatDuckDB = "duckdb"
)

// TableName is the name of an entity's table of a dataset:
// {domain}_{plural}_{dataset}, hyphens as underscores.
func TableName(e *plinth.Entity, dataset string) string {
	return strings.ReplaceAll(e.Domain.Name+"_"+e.Plural+"_"+dataset, "-", "_")
}

// column is a column of a lake table with its type in the mapping's terms.
type column struct {
	name string
	kind string // string, bigint, double, boolean, date, timestamp
}

func kindOf(f *plinth.Field) string {
	switch f.Type {
	case plinth.TypeInteger:
		return "bigint"
	case plinth.TypeNumber:
		return "double"
	case plinth.TypeBoolean:
		return "boolean"
	case plinth.TypeDate:
		return "date"
	case plinth.TypeDateTime:
		return "timestamp"
	}
	return "string"
}

// recordColumns are the columns parquet.SchemaFor gives an entity.
func recordColumns(e *plinth.Entity, prefix string) []column {
	var out []column
	for _, f := range e.Fields {
		out = append(out, column{prefix + f.Name, kindOf(f)})
	}
	return append(out, column{prefix + "version", "bigint"}, column{prefix + "createdAt", "timestamp"}, column{prefix + "updatedAt", "timestamp"})
}

// eventColumns are the columns parquet.EventSchemaFor gives an entity.
func eventColumns(e *plinth.Entity) []column {
	kinds := map[string]string{"sequence": "bigint", "entityVersion": "bigint", "dateTime": "timestamp"}
	var out []column
	for _, c := range parquet.EventColumns {
		k := kinds[c]
		if k == "" {
			k = "string"
		}
		out = append(out, column{c, k})
	}
	return append(out, recordColumns(e, parquet.StatePrefix)...)
}

// DDL returns the table definitions of the lake at location (a folder
// for DuckDB; an s3:// URL for Athena and Trino) for the domains'
// entities: one table of events and one of snapshots each (and for
// domains in special, of their special-category datasets too). DuckDB
// also gets a macro {domain}_{plural}_as_of(day): the state of every
// record at the end of a day, from the latest snapshot up to that day and
// the events after it.
//
// has, when set, says whether a dataset's folder (an entity prefix and
// "events" or "snapshot") holds files yet: DuckDB binds a view when it is
// created, so its views are made only for datasets with files (a comment
// names the others), and the macro builds on what there is.
func DDL(ds []*plinth.Domain, format, location string, special []string, has func(prefix, dataset string) bool) (string, error) {
	location = strings.TrimSuffix(location, "/")
	if has == nil {
		has = func(string, string) bool { return true }
	}
	var b strings.Builder
	var gen func(b *strings.Builder, e *plinth.Entity, loc, name string) error
	switch format {
	case FormatAthena:
		gen = func(b *strings.Builder, e *plinth.Entity, loc, name string) error {
			return hiveDDL(b, e, loc, name, true)
		}
	case FormatTrino:
		gen = func(b *strings.Builder, e *plinth.Entity, loc, name string) error {
			return hiveDDL(b, e, loc, name, false)
		}
	case FormatDuckDB:
		gen = func(b *strings.Builder, e *plinth.Entity, loc, name string) error {
			prefix := EntityPrefix(e)
			if name != "" {
				prefix = SpecialPrefix(e)
			}
			return duckDDL(b, e, loc, name, has(prefix, DatasetEvents), has(prefix, DatasetSnapshot))
		}
	default:
		return "", fmt.Errorf("format %q: use athena, trino or duckdb", format)
	}
	sorted := append([]*plinth.Domain{}, ds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, d := range sorted {
		for _, e := range d.Entities {
			if err := gen(&b, LakeEntity(e), location+"/"+strings.TrimSuffix(EntityPrefix(e), "/"), ""); err != nil {
				return "", err
			}
			if se := SpecialEntity(e); se != nil && contains(special, d.Name) {
				if err := gen(&b, se, location+"/"+strings.TrimSuffix(SpecialPrefix(e), "/"), "special_"); err != nil {
					return "", err
				}
			}
		}
	}
	return b.String(), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var hiveTypes = map[bool]map[string]string{
	true:  {"string": "string", "bigint": "bigint", "double": "double", "boolean": "boolean", "date": "date", "timestamp": "timestamp"},
	false: {"string": "varchar", "bigint": "bigint", "double": "double", "boolean": "boolean", "date": "date", "timestamp": "timestamp(6)"},
}

// hiveDDL writes the Athena (Glue) or Trino (Hive connector) tables.
func hiveDDL(b *strings.Builder, e *plinth.Entity, loc, prefix string, athena bool) error {
	types := hiveTypes[athena]
	for _, ds := range []struct {
		name string
		cols []column
		ev   bool
	}{{DatasetEvents, eventColumns(e), true}, {DatasetSnapshot, recordColumns(e, ""), false}} {
		table := prefix + TableName(e, ds.name)
		if athena {
			fmt.Fprintf(b, "CREATE EXTERNAL TABLE IF NOT EXISTS `%s` (\n", table)
		} else {
			fmt.Fprintf(b, "CREATE TABLE IF NOT EXISTS %s (\n", table)
		}
		for i, c := range ds.cols {
			sep := ","
			if i == len(ds.cols)-1 && athena {
				sep = ""
			}
			if athena {
				fmt.Fprintf(b, "  `%s` %s%s\n", strings.ToLower(c.name), types[c.kind], sep)
			} else {
				fmt.Fprintf(b, "  \"%s\" %s%s\n", strings.ToLower(c.name), types[c.kind], sep)
			}
		}
		parts := []string{"import_date"}
		if ds.ev {
			parts = []string{"import_year", "import_month", "import_day", "import_date"}
		}
		path := loc + "/" + ds.name + "/"
		if athena {
			fmt.Fprintf(b, ")\nPARTITIONED BY (%s)\nSTORED AS PARQUET\nLOCATION '%s'\nTBLPROPERTIES (\n", strings.Join(mapStrings(parts, func(p string) string { return "`" + p + "` string" }), ", "), path)
			props := [][2]string{{"projection.enabled", "true"},
				{"projection.import_date.type", "date"}, {"projection.import_date.format", "yyyyMMdd"},
				{"projection.import_date.range", "20200101,NOW"}, {"projection.import_date.interval", "1"},
				{"projection.import_date.interval.unit", "DAYS"}}
			template := path + "import_date=${import_date}/"
			if ds.ev {
				props = append(props,
					[2]string{"projection.import_year.type", "integer"}, [2]string{"projection.import_year.range", "2020,2099"},
					[2]string{"projection.import_month.type", "integer"}, [2]string{"projection.import_month.range", "1,12"}, [2]string{"projection.import_month.digits", "2"},
					[2]string{"projection.import_day.type", "integer"}, [2]string{"projection.import_day.range", "1,31"}, [2]string{"projection.import_day.digits", "2"})
				template = path + "import_year=${import_year}/import_month=${import_month}/import_day=${import_day}/import_date=${import_date}/"
			}
			props = append(props, [2]string{"storage.location.template", template}, [2]string{"parquet.compression", "ZSTD"})
			for i, p := range props {
				sep := ","
				if i == len(props)-1 {
					sep = ""
				}
				fmt.Fprintf(b, "  '%s' = '%s'%s\n", p[0], p[1], sep)
			}
			b.WriteString(");\n\n")
			continue
		}
		for i, p := range parts {
			sep := ","
			if i == len(parts)-1 {
				sep = ""
			}
			fmt.Fprintf(b, "  \"%s\" varchar%s\n", p, sep)
		}
		fmt.Fprintf(b, ")\nWITH (\n  format = 'PARQUET',\n  external_location = '%s',\n  partitioned_by = ARRAY[%s]\n);\n",
			strings.Replace(path, "s3://", "s3a://", 1), strings.Join(mapStrings(parts, func(p string) string { return "'" + p + "'" }), ", "))
		fmt.Fprintf(b, "CALL system.sync_partition_metadata(CURRENT_SCHEMA, '%s', 'FULL');\n\n", table)
	}
	return nil
}

func mapStrings(in []string, f func(string) string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = f(s)
	}
	return out
}

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// duckDDL writes DuckDB views over read_parquet and the as-of macro, for
// the datasets that have files.
func duckDDL(b *strings.Builder, e *plinth.Entity, loc, prefix string, hasEvents, hasSnapshot bool) error {
	ev := prefix + TableName(e, DatasetEvents)
	snap := prefix + TableName(e, DatasetSnapshot)
	read := func(glob string) string {
		return "read_parquet(" + sqlString(glob) + ", hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"
	}
	if !hasEvents && !hasSnapshot {
		fmt.Fprintf(b, "-- %s, %s: no files yet\n\n", ev, snap)
		return nil
	}
	var fromSnap, fromEv []string
	for _, c := range recordColumns(e, "") {
		fromSnap = append(fromSnap, `"`+c.name+`"`)
		fromEv = append(fromEv, `"`+parquet.StatePrefix+c.name+`" AS "`+c.name+`"`)
	}
	var parts []string
	if hasSnapshot {
		fmt.Fprintf(b, "CREATE OR REPLACE VIEW %s AS SELECT * FROM %s;\n", snap, read(loc+"/"+DatasetSnapshot+"/*/*.parquet"))
		parts = append(parts, fmt.Sprintf(`  SELECT CAST("%s" AS VARCHAR) AS _entity_id, "version" AS _entity_version, false AS _deleted, %s FROM %s
  WHERE import_date = (SELECT max(import_date) FROM %s WHERE import_date <= strftime(CAST(day AS DATE), '%%Y%%m%%d'))`,
			e.Key.Name, strings.Join(fromSnap, ", "), snap, snap))
	} else {
		fmt.Fprintf(b, "-- %s: no files yet (plinth lake snapshot writes them)\n", snap)
	}
	if hasEvents {
		fmt.Fprintf(b, "CREATE OR REPLACE VIEW %s AS SELECT * FROM %s;\n", ev, read(loc+"/"+DatasetEvents+"/*/*/*/*/*.parquet"))
		parts = append(parts, fmt.Sprintf(`  SELECT entityId, entityVersion, eventType LIKE '%%DeletedEvent', %s FROM %s
  WHERE dateTime < CAST(day AS DATE) + INTERVAL 1 DAY`, strings.Join(fromEv, ", "), ev))
	} else {
		fmt.Fprintf(b, "-- %s: no files yet\n", ev)
	}
	fmt.Fprintf(b, `CREATE OR REPLACE MACRO %s_as_of(day) AS TABLE
SELECT * EXCLUDE (_entity_id, _entity_version, _deleted, _rank) FROM (
  SELECT *, row_number() OVER (PARTITION BY _entity_id ORDER BY _entity_version DESC) AS _rank FROM (
%s
  )
) WHERE _rank = 1 AND NOT _deleted;

`, prefix+strings.ReplaceAll(e.Domain.Name+"_"+e.Plural, "-", "_"), strings.Join(parts, "\n  UNION ALL\n"))
	return nil
}
