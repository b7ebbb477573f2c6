package legacy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/brianvoe/gofakeit/v7"
)

// MarkerTable is the table a fixture database carries to say it holds
// dummy data only, so that migrating it into development is allowed.
const MarkerTable = "plinth_dummy_data"

// FixtureSystems lists the legacy systems plinth legacy fixture can make.
var FixtureSystems = []string{"case", "benefits", "housing"}

// fixtureSystem is a legacy system a fixture can make: its tables and a
// generator of the rows of root row i.
type fixtureSystem struct {
	tables []fixtureTable
	gen    func(seed uint64) func(id int64, rows map[string][][]any)
}

var fixtureSystems = map[string]fixtureSystem{
	"case":     {caseTables, func(seed uint64) func(int64, map[string][][]any) { return newCaseGen(seed).person }},
	"benefits": {benefitsTables, func(seed uint64) func(int64, map[string][][]any) { return newCaseGen(seed).claim }},
	"housing":  {housingTables, func(seed uint64) func(int64, map[string][][]any) { return newCaseGen(seed).tenancy }},
}

// FixtureOptions says what fixture to make.
type FixtureOptions struct {
	System string // "case"
	Rows   int    // root rows (persons)
	Seed   uint64
	// Replace drops the fixture's tables first; allowed only in a database
	// that already carries the dummy-data marker.
	Replace bool
	// Progress is told how many root rows were written so far.
	Progress func(n int)
}

type fixtureTable struct {
	name    string
	columns []string
	ddl     string // column definitions, portable between MariaDB and PostgreSQL
	index   string // column of a secondary index, if any
}

var caseTables = []fixtureTable{
	{name: "dm_persons", columns: []string{"person_id", "title", "first_name", "last_name", "full_name", "date_of_birth", "date_of_death", "gender", "nhs_id", "restricted", "nationality", "religion", "full_ethnicity_code", "first_language", "email_address", "context_flag", "marked_for_deletion"},
		ddl: `person_id BIGINT PRIMARY KEY, title VARCHAR(20), first_name VARCHAR(100), last_name VARCHAR(100), full_name VARCHAR(210),
		date_of_birth VARCHAR(30), date_of_death VARCHAR(30), gender VARCHAR(10), nhs_id VARCHAR(20), restricted CHAR(1),
		nationality VARCHAR(60), religion VARCHAR(60), full_ethnicity_code VARCHAR(10), first_language VARCHAR(60),
		email_address VARCHAR(200), context_flag CHAR(1), marked_for_deletion CHAR(1)`},
	{name: "dm_addresses", index: "person_id", columns: []string{"ref_addresses_people_id", "person_id", "start_date", "end_date", "address", "post_code", "unique_id", "is_contact_address", "is_display_address"},
		ddl: `ref_addresses_people_id BIGINT PRIMARY KEY, person_id BIGINT NOT NULL, start_date DATE, end_date DATE, address VARCHAR(300),
		post_code VARCHAR(12), unique_id BIGINT, is_contact_address CHAR(1), is_display_address CHAR(1)`},
	{name: "dm_telephone_numbers", index: "person_id", columns: []string{"telephone_number_id", "person_id", "telephone_number", "telephone_number_type"},
		ddl: `telephone_number_id BIGINT NOT NULL, person_id BIGINT NOT NULL, telephone_number VARCHAR(30), telephone_number_type VARCHAR(20),
		PRIMARY KEY (telephone_number_id, person_id)`},
}

// Fixture creates a synthetic legacy database of the system's shape in
// the source (MariaDB, MySQL or PostgreSQL), filled with dummy data with
// the mess real ones have, and the dummy-data marker.
func Fixture(ctx context.Context, src *Source, opts FixtureOptions) error {
	sys, ok := fixtureSystems[opts.System]
	if !ok {
		return fmt.Errorf("no fixture for system %q (known: %s)", opts.System, strings.Join(FixtureSystems, ", "))
	}
	if src.Kind == KindSQLServer {
		return errors.New("fixtures are made in MariaDB, MySQL or PostgreSQL")
	}
	if err := src.prepareFixture(ctx, sys.tables, opts.Replace); err != nil {
		return err
	}
	gen := sys.gen(opts.Seed)
	const batch = 500
	for start := 1; start <= opts.Rows; start += batch {
		rows := map[string][][]any{}
		for id := start; id < start+batch && id <= opts.Rows; id++ {
			gen(int64(id), rows)
		}
		for _, t := range sys.tables {
			if err := src.insertRows(ctx, t, rows[t.name]); err != nil {
				return err
			}
		}
		if opts.Progress != nil {
			opts.Progress(min(start+batch-1, opts.Rows))
		}
	}
	_, err := src.DB.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (system_name, root_rows, seed, made_at) VALUES (%s, %s, %s, %s)",
		MarkerTable, src.placeholder(1), src.placeholder(2), src.placeholder(3), src.placeholder(4)),
		opts.System, opts.Rows, int64(opts.Seed), time.Now().UTC().Format(time.RFC3339))
	return err
}

// prepareFixture creates the tables, refusing to touch a database that
// holds them without the dummy-data marker (it may hold real data).
func (s *Source) prepareFixture(ctx context.Context, tables []fixtureTable, replace bool) error {
	dummy, err := s.IsDummy(ctx)
	if err != nil {
		return err
	}
	existing, err := s.Tables(ctx)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if !existing[t.name] {
			continue
		}
		if !replace || !dummy {
			return fmt.Errorf("the source already has a table %s; a fixture is made in an empty database (--replace drops the tables of an earlier fixture, one that carries the %s marker)", t.name, MarkerTable)
		}
	}
	if replace && dummy {
		for _, t := range append(tables, fixtureTable{name: MarkerTable}) {
			if _, err := s.DB.ExecContext(ctx, "DROP TABLE IF EXISTS "+s.quote(t.name)); err != nil {
				return err
			}
		}
	}
	stmts := []string{fmt.Sprintf("CREATE TABLE %s (system_name VARCHAR(20), root_rows BIGINT, seed BIGINT, made_at VARCHAR(40))", MarkerTable)}
	for _, t := range tables {
		ddl := t.ddl
		if s.Kind == KindPostgres {
			ddl = strings.ReplaceAll(strings.ReplaceAll(ddl, "DATETIME", "TIMESTAMP"), "`", `"`)
		}
		stmts = append(stmts, fmt.Sprintf("CREATE TABLE %s (%s)", t.name, ddl))
		if t.index != "" {
			stmts = append(stmts, fmt.Sprintf("CREATE INDEX %s_%s ON %s (%s)", t.name, t.index, t.name, t.index))
		}
	}
	for _, st := range stmts {
		if _, err := s.DB.ExecContext(ctx, st); err != nil {
			return fmt.Errorf("creating the fixture's tables: %w", err)
		}
	}
	return nil
}

func (s *Source) insertRows(ctx context.Context, t fixtureTable, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	var b strings.Builder
	cols := make([]string, len(t.columns))
	for i, c := range t.columns {
		cols[i] = s.quote(c)
	}
	fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", t.name, strings.Join(cols, ", "))
	args := make([]any, 0, len(rows)*len(t.columns))
	for i, r := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(")
		for j, v := range r {
			if j > 0 {
				b.WriteString(", ")
			}
			args = append(args, v)
			b.WriteString(s.placeholder(len(args)))
		}
		b.WriteString(")")
	}
	if _, err := s.DB.ExecContext(ctx, b.String(), args...); err != nil {
		return fmt.Errorf("filling %s: %w", t.name, err)
	}
	return nil
}

// IsDummy reports whether the source carries the dummy-data marker.
func (s *Source) IsDummy(ctx context.Context) (bool, error) {
	tables, err := s.Tables(ctx)
	if err != nil || !tables[MarkerTable] {
		return false, err
	}
	var n int
	err = s.DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.quote(MarkerTable)).Scan(&n)
	return n > 0, err
}

// caseGen makes the case system's rows, deterministically from a seed.
type caseGen struct {
	r                 *rand.Rand
	f                 *gofakeit.Faker
	nextAddr, nextTel int64
	// housing contact details
	nextContact, nextPhone, nextEmail int64
}

func newCaseGen(seed uint64) *caseGen {
	return &caseGen{r: rand.New(rand.NewPCG(seed, 0x5eed)), f: gofakeit.New(seed)}
}

var (
	titles     = []any{"Mr", "MRS", " ms", "Miss", "dr", "", nil}
	genders    = []any{"F", "M", "f", " m", "U", "I", "Female", nil}
	ethnicity  = []any{"A1", "A2", "a3", "B1", "B2", "C1", "C2", "C3", "D1", "D2", "E1", "Z9", "XX", nil}
	religions  = []any{"Christian", "MUSLIM", "jewish", "Hindu", "Sikh", "None", "", nil}
	languages  = []any{"English", "english ", "Turkish", "Bengali", "Polish", "YORUBA", nil}
	phoneTypes = []any{"Mobile", "HOME ", "work", "mobile", nil}
	postcodes  = []string{"E8 1DY", "e5 0pu", "N16 7UX", "E9 6SP", "n1 5ln", "E2  8HR", "E81DY"}
	streets    = []string{"Mare Street", "Amhurst Road", "Kingsland High Street", "Dalston Lane", "Morning Lane", "Stoke Newington Church Street"}
)

func (g *caseGen) pick(list []any) any { return list[g.r.IntN(len(list))] }

// mess pads and re-cases a string the way hand-keyed legacy data is.
func (g *caseGen) mess(s string) string {
	switch g.r.IntN(6) {
	case 0:
		return "  " + s + " "
	case 1:
		return strings.ToUpper(s)
	case 2:
		return strings.ToLower(s)
	}
	return s
}

func (g *caseGen) person(id int64, rows map[string][][]any) {
	first, last := g.f.FirstName(), g.f.LastName()
	dob := time.Date(1925+g.r.IntN(95), time.Month(1+g.r.IntN(12)), 1+g.r.IntN(28), 0, 0, 0, 0, time.UTC)
	var dobText any
	switch g.r.IntN(4) {
	case 0:
		dobText = dob.Format("02/01/2006")
	case 1:
		dobText = dob.Format("2006-01-02 15:04:05")
	case 2:
		dobText = dob.Format("2006-01-02")
	default:
		if g.r.IntN(10) == 0 {
			dobText = nil
		} else {
			dobText = " " + dob.Format("02/01/2006")
		}
	}
	var death any
	if g.r.IntN(20) == 0 {
		death = dob.AddDate(60+g.r.IntN(30), 0, 0).Format("02/01/2006")
	} else if g.r.IntN(5) == 0 {
		death = ""
	}
	var email any
	if g.r.IntN(3) > 0 {
		email = g.mess(fmt.Sprintf("%s.%s%d@example.org", strings.ToLower(first), strings.ToLower(last), id))
	}
	deleted := any("N")
	switch g.r.IntN(30) {
	case 0:
		deleted = "Y"
	case 1, 2, 3:
		deleted = nil
	}
	rows["dm_persons"] = append(rows["dm_persons"], []any{id, g.pick(titles), g.mess(first), g.mess(last), first + " " + last,
		dobText, death, g.pick(genders), g.nhs(), g.pick([]any{"Y", "N", "n", nil}), g.pick([]any{"British", "irish", "Polish", "", nil}),
		g.pick(religions), g.pick(ethnicity), g.pick(languages), email, g.pick([]any{"A", "C", "b", nil}), deleted})
	g.addresses(id, rows)
	g.phones(id, rows)
}

func (g *caseGen) addresses(id int64, rows map[string][][]any) {
	n := 1 + g.r.IntN(3)
	start := time.Date(1990+g.r.IntN(20), time.Month(1+g.r.IntN(12)), 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		g.nextAddr++
		var end any
		next := start.AddDate(1+g.r.IntN(6), 0, 0)
		if i < n-1 { // historic rows carry their end date
			end = next
		}
		var uprn any
		if g.r.IntN(8) > 0 {
			uprn = int64(10000000000 + g.r.IntN(90000000))
		}
		addr := fmt.Sprintf("%d %s", 1+g.r.IntN(200), streets[g.r.IntN(len(streets))])
		if g.r.IntN(4) == 0 {
			addr = fmt.Sprintf("Flat %d, %s", 1+g.r.IntN(30), addr)
		}
		current := i == n-1
		rows["dm_addresses"] = append(rows["dm_addresses"], []any{g.nextAddr, id, start, end, g.mess(addr),
			postcodes[g.r.IntN(len(postcodes))], uprn, yn(current && g.r.IntN(2) == 0), yn(current)})
		start = next
	}
}

func (g *caseGen) phones(id int64, rows map[string][][]any) {
	n := g.r.IntN(3)
	var last []any
	for i := 0; i < n; i++ {
		g.nextTel++
		num := fmt.Sprintf("020 7%03d %04d", g.r.IntN(1000), g.r.IntN(10000))
		if g.r.IntN(3) == 0 {
			num = fmt.Sprintf("07%03d %06d", 700+g.r.IntN(300), g.r.IntN(1000000))
		}
		row := []any{g.nextTel, id, num, g.pick(phoneTypes)}
		if last != nil && g.r.IntN(3) == 0 { // the same number keyed twice
			row[2], row[3] = last[2], last[3]
		}
		rows["dm_telephone_numbers"] = append(rows["dm_telephone_numbers"], row)
		last = row
	}
}

func yn(b bool) string {
	if b {
		return "Y"
	}
	return "N"
}

// nhs makes a valid NHS number (mod 11 check digit), sometimes spaced,
// sometimes missing.
func (g *caseGen) nhs() any {
	if g.r.IntN(6) == 0 {
		return nil
	}
	for {
		d := make([]int, 9)
		sum := 0
		for i := range d {
			d[i] = g.r.IntN(10)
			sum += d[i] * (10 - i)
		}
		check := 11 - sum%11
		if check == 11 {
			check = 0
		}
		if check == 10 {
			continue
		}
		s := fmt.Sprintf("%d%d%d%d%d%d%d%d%d%d", d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], check)
		if g.r.IntN(3) == 0 {
			s = s[:3] + " " + s[3:6] + " " + s[6:]
		}
		return s
	}
}
