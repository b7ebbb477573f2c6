package legacy

import (
	"context"
	"fmt"
	"strings"
)

// Column is a column of a source table.
type Column struct {
	Name string // as the source spells it
	Type string // the source's data type, lower case ("varchar", "bigint", "date")
}

// TableInfo describes a source table.
type TableInfo struct {
	Name       string
	Columns    map[string]Column // by lower-case name
	Ordered    []string          // lower-case names in table order (binlog rows come by position)
	PrimaryKey []string          // lower-case names, in key order
}

// schemaPredicate limits information_schema to the connection's schema.
func (s *Source) schemaPredicate(alias string) string {
	switch s.Kind {
	case KindMariaDB, KindMySQL:
		return alias + "table_schema = DATABASE()"
	case KindSQLServer:
		return alias + "table_schema = SCHEMA_NAME()"
	}
	return alias + "table_schema = current_schema()"
}

// Tables lists the source's tables (lower-case names).
func (s *Source) Tables(ctx context.Context) (map[string]bool, error) {
	rows, err := s.DB.QueryContext(ctx, "SELECT table_name FROM information_schema.tables WHERE "+s.schemaPredicate(""))
	if err != nil {
		return nil, fmt.Errorf("listing the source's tables: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		out[strings.ToLower(name)] = true
	}
	return out, rows.Err()
}

// Schema describes every table of the source's schema, from
// information_schema (no data is read).
func (s *Source) Schema(ctx context.Context) (map[string]*TableInfo, error) {
	out := map[string]*TableInfo{}
	rows, err := s.DB.QueryContext(ctx, "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE "+
		s.schemaPredicate("")+" ORDER BY table_name, ordinal_position")
	if err != nil {
		return nil, fmt.Errorf("reading the source's columns: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var table, col, typ string
		if err := rows.Scan(&table, &col, &typ); err != nil {
			return nil, err
		}
		t := out[strings.ToLower(table)]
		if t == nil {
			t = &TableInfo{Name: table, Columns: map[string]Column{}}
			out[strings.ToLower(table)] = t
		}
		t.Columns[strings.ToLower(col)] = Column{Name: col, Type: strings.ToLower(typ)}
		t.Ordered = append(t.Ordered, strings.ToLower(col))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	pk, err := s.DB.QueryContext(ctx, `SELECT kcu.table_name, kcu.column_name
		FROM information_schema.table_constraints tc
		JOIN information_schema.key_column_usage kcu
		  ON tc.constraint_name = kcu.constraint_name AND tc.table_schema = kcu.table_schema AND tc.table_name = kcu.table_name
		WHERE tc.constraint_type = 'PRIMARY KEY' AND `+s.schemaPredicate("tc.")+`
		ORDER BY kcu.table_name, kcu.ordinal_position`)
	if err != nil {
		return nil, fmt.Errorf("reading the source's primary keys: %w", err)
	}
	defer pk.Close()
	for pk.Next() {
		var table, col string
		if err := pk.Scan(&table, &col); err != nil {
			return nil, err
		}
		if t := out[strings.ToLower(table)]; t != nil {
			t.PrimaryKey = append(t.PrimaryKey, strings.ToLower(col))
		}
	}
	return out, pk.Err()
}

// typeFamily groups source data types: "int", "float", "text", "date",
// "datetime", "bool", or "" for anything else.
func typeFamily(t string) string {
	switch {
	case strings.Contains(t, "int") || t == "bigserial" || t == "serial":
		return "int"
	case strings.Contains(t, "char") || strings.Contains(t, "text") || t == "uuid" || t == "enum" || t == "set" || t == "xml" || t == "json" || t == "jsonb":
		return "text"
	case t == "date":
		return "date"
	case strings.Contains(t, "timestamp") || strings.HasPrefix(t, "datetime") || t == "smalldatetime":
		return "datetime"
	case t == "boolean" || t == "bool" || t == "bit":
		return "bool"
	case t == "decimal" || t == "numeric" || strings.Contains(t, "float") || t == "double" || t == "double precision" || t == "real" || t == "money":
		return "float"
	}
	return ""
}

// ForeignKey is a declared foreign key: Columns of Table reference
// RefColumns of RefTable, pairwise in order.
type ForeignKey struct {
	Name                string
	Table, RefTable     string   // as the source spells them
	Columns, RefColumns []string // as the source spells them
}

// ForeignKeysQuery is the query that lists the foreign keys declared in the
// connection's schema, one row a column, in key order: constraint_name,
// table_name, column_name, referenced_table, referenced_column.
func ForeignKeysQuery(k Kind) string {
	switch k {
	case KindMariaDB, KindMySQL:
		return `SELECT constraint_name, table_name, column_name, referenced_table_name AS referenced_table, referenced_column_name AS referenced_column
		FROM information_schema.key_column_usage
		WHERE table_schema = DATABASE() AND referenced_table_name IS NOT NULL
		ORDER BY table_name, constraint_name, ordinal_position`
	case KindSQLServer:
		return `SELECT fk.name AS constraint_name, OBJECT_NAME(fk.parent_object_id) AS table_name, pc.name AS column_name,
		OBJECT_NAME(fk.referenced_object_id) AS referenced_table, rc.name AS referenced_column
		FROM sys.foreign_keys fk
		JOIN sys.foreign_key_columns fkc ON fkc.constraint_object_id = fk.object_id
		JOIN sys.columns pc ON pc.object_id = fkc.parent_object_id AND pc.column_id = fkc.parent_column_id
		JOIN sys.columns rc ON rc.object_id = fkc.referenced_object_id AND rc.column_id = fkc.referenced_column_id
		WHERE OBJECT_SCHEMA_NAME(fk.parent_object_id) = SCHEMA_NAME()
		ORDER BY OBJECT_NAME(fk.parent_object_id), fk.name, fkc.constraint_column_id`
	}
	// PostgreSQL: a foreign key's columns pair with its unique constraint's
	// by position_in_unique_constraint; the table ties the name down (two
	// tables' foreign keys may share a name).
	return `SELECT tc.constraint_name, tc.table_name, kcu.column_name, ccu.table_name AS referenced_table, ccu.column_name AS referenced_column
	FROM information_schema.table_constraints tc
	JOIN information_schema.key_column_usage kcu
	  ON kcu.constraint_schema = tc.constraint_schema AND kcu.constraint_name = tc.constraint_name AND kcu.table_name = tc.table_name
	JOIN information_schema.referential_constraints rc
	  ON rc.constraint_schema = tc.constraint_schema AND rc.constraint_name = tc.constraint_name
	JOIN information_schema.key_column_usage ccu
	  ON ccu.constraint_schema = rc.unique_constraint_schema AND ccu.constraint_name = rc.unique_constraint_name
	 AND ccu.ordinal_position = kcu.position_in_unique_constraint
	WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema()
	ORDER BY tc.table_name, tc.constraint_name, kcu.ordinal_position`
}

// ForeignKeys lists the foreign keys declared in the source's schema (no
// data is read).
func (s *Source) ForeignKeys(ctx context.Context) ([]ForeignKey, error) {
	rows, err := s.DB.QueryContext(ctx, ForeignKeysQuery(s.Kind))
	if err != nil {
		return nil, fmt.Errorf("reading the source's foreign keys: %w", err)
	}
	defer rows.Close()
	var out []ForeignKey
	seen := map[string]bool{}
	for rows.Next() {
		var name, table, col, refTable, refCol string
		if err := rows.Scan(&name, &table, &col, &refTable, &refCol); err != nil {
			return nil, err
		}
		if id := table + "\x00" + name + "\x00" + col; seen[id] {
			continue // a name two constraints share, met twice
		} else {
			seen[id] = true
		}
		if n := len(out); n > 0 && out[n-1].Table == table && out[n-1].Name == name {
			out[n-1].Columns = append(out[n-1].Columns, col)
			out[n-1].RefColumns = append(out[n-1].RefColumns, refCol)
			continue
		}
		out = append(out, ForeignKey{Name: name, Table: table, RefTable: refTable, Columns: []string{col}, RefColumns: []string{refCol}})
	}
	return out, rows.Err()
}
