package http_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/plinth-data/plinth"
	plinthhttp "github.com/plinth-data/plinth/http"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
	"github.com/plinth-data/plinth/sqlite"
)

// maskSpec has a natural key that is personal data (an NHS number), so
// ids in paths are personal too.
const maskSpec = `domain: patients
description: Patients.
owner: {serviceArea: Test, productOwner: t@example.org, cloudAccount: test}
sourceSystem: Test
entities:
  - name: patient
    plural: patients
    key: {name: nhsNumber, type: string, pii: personal}
    fields:
      - {name: firstName, type: string, required: true, maxLength: 40, pii: personal}
      - {name: lastName, type: string, required: true, maxLength: 40, pii: personal}
      - {name: email, type: string, format: email, pii: personal}
      - {name: religion, type: string, pii: special}
    filters:
      - {param: last_name, field: lastName, match: prefix}
      - {param: email, field: email, match: exact}
`

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// echoingStore fails as a careless driver would: its errors and panics
// echo the values they were given.
type echoingStore struct {
	plinth.Store
	mode  string
	armed bool // fail only once the server has started
}

func (s *echoingStore) Get(ctx context.Context, e *plinth.Entity, id any) (plinth.Record, error) {
	if !s.armed {
		return s.Store.Get(ctx, e, id)
	}
	if s.mode == "panic" {
		panic(fmt.Sprintf("cannot read %s %v", e.Name, id))
	}
	return plinth.Record{}, fmt.Errorf("sqlite: get %s %v: disk I/O error", e.Name, id)
}

func (s *echoingStore) List(ctx context.Context, e *plinth.Entity, q plinth.Query) (plinth.Page, error) {
	if !s.armed {
		return s.Store.List(ctx, e, q)
	}
	return plinth.Page{}, fmt.Errorf("list %s where %+v: %w", e.Name, q.Conditions, plinth.ErrUnavailable)
}

func (s *echoingStore) Write(ctx context.Context, fn func(plinth.Tx) error) error {
	if !s.armed {
		return s.Store.Write(ctx, fn)
	}
	// An insert fails with an error that names a value of the body alone,
	// unquoted and outside any DETAIL (both are masked whatever they
	// hold), so only the body's noted values can mask it; the rest fail
	// as a conflict.
	var inserting error
	_ = s.Store.Write(ctx, func(x plinth.Tx) error {
		inserting = fn(echoingTx{x})
		return errors.New("rolled back")
	})
	var echo *echoedInsert
	if errors.As(inserting, &echo) {
		return echo
	}
	return fmt.Errorf(`ERROR: conflict (SQLSTATE 23000) DETAIL: Key (nhs_number)=(9990000018) exists; first name "Zebulonia"`)
}

// echoingTx fails every insert with an echoedInsert.
type echoingTx struct{ plinth.Tx }

func (x echoingTx) Insert(ctx context.Context, e *plinth.Entity, data map[string]any) (plinth.Record, error) {
	return plinth.Record{}, &echoedInsert{religion: fmt.Sprint(data["religion"])}
}

type echoedInsert struct{ religion string }

func (e *echoedInsert) Error() string {
	return "sqlite: insert: CHECK constraint failed for " + e.religion
}

// personal values, each distinctive, posted and filtered for.
var personal = []string{"9990000018", "999 000 0018", "Zebulonia", "Quastlethwaite", "zebulonia.q@example.org", "Pastafarian Reformed", "Pastafarian Orthodox"}

// TestPersonalDataNeverReachesLogs posts, reads and filters with
// distinctive personal values (including ones that fail: a duplicate
// natural key, a bad format, a value too long, store errors and a panic
// that echo them, and on PostgreSQL a trigger that raises them) and greps
// the JSON log for those values.
func TestPersonalDataNeverReachesLogs(t *testing.T) {
	ds := loadSpec(t, maskSpec)
	doc := `{"nhsNumber":"9990000018","firstName":"Zebulonia","lastName":"Quastlethwaite","email":"zebulonia.q@example.org","religion":"Pastafarian Reformed"}`
	requests := []struct{ method, path, body string }{
		{"POST", "/api/v1/patients", doc},
		{"POST", "/api/v1/patients", doc}, // the natural key again
		{"POST", "/api/v1/patients", strings.Replace(doc, "zebulonia.q@example.org", "Zebulonia at home", 1)},
		{"POST", "/api/v1/patients", strings.Replace(doc, "Quastlethwaite", strings.Repeat("Quastlethwaite", 4), 1)},
		{"GET", "/api/v1/patients/9990000018", ""},
		{"GET", "/api/v1/patients/999%200000018", ""},
		{"GET", "/api/v1/patients?last_name=Quastlethwaite", ""},
		{"GET", "/api/v1/patients?email=" + url.QueryEscape("zebulonia.q@example.org"), ""},
		{"GET", "/api/v1/patients?last_name=Zebulonia&colour=Quastlethwaite", ""},
		{"PATCH", "/api/v1/patients/9990000018", `{"religion":"Pastafarian Orthodox"}`},
		{"DELETE", "/api/v1/patients/9990000018", ""},
	}
	run := func(t *testing.T, st plinth.Store) string {
		var logs syncBuffer
		logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		srv := httptest.NewServer(mustServer(t, plinthhttp.Config{Store: st, Domains: ds, Logger: logger, Unprotected: true}))
		defer srv.Close()
		if es, ok := st.(*echoingStore); ok {
			es.armed = true
		}
		a := &api{t: t, url: srv.URL, store: st, domains: ds}
		for _, rq := range requests {
			var headers []string
			if rq.method == "PATCH" || rq.method == "DELETE" {
				headers = []string{"If-Match", `"1"`}
			}
			a.do(rq.method, rq.path, rq.body, headers...)
		}
		return logs.String()
	}
	check := func(t *testing.T, logs string, wantLines ...string) {
		t.Helper()
		for _, v := range personal {
			if strings.Contains(logs, v) || strings.Contains(logs, strings.ToUpper(v)) || strings.Contains(logs, strings.ToLower(v)) {
				t.Errorf("the log holds %q:\n%s", v, logs)
			}
		}
		for _, w := range wantLines {
			if !strings.Contains(logs, w) {
				t.Errorf("the log lacks %q (the test did not reach that path):\n%s", w, logs)
			}
		}
	}
	sqliteStore := func(t *testing.T) plinth.Store {
		st, err := sqlite.Open(context.Background(), t.TempDir()+"/plinth.db")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if err := st.Prepare(context.Background(), ds); err != nil {
			t.Fatal(err)
		}
		return st
	}
	t.Run("sqlite", func(t *testing.T) {
		check(t, run(t, sqliteStore(t)), `"route":"/api/v1/patients/{id}"`, `"status":409`, `"status":422`)
	})
	t.Run("echoing store", func(t *testing.T) {
		check(t, run(t, &echoingStore{Store: sqliteStore(t)}), "request failed", "storage unavailable", "DETAIL: ***", "CHECK constraint failed")
	})
	t.Run("panicking store", func(t *testing.T) {
		check(t, run(t, &echoingStore{Store: sqliteStore(t), mode: "panic"}), "panic while serving request")
	})
	t.Run("postgres", func(t *testing.T) {
		ctx := context.Background()
		dbURL := pgtest.Database(t)
		st, err := postgres.Open(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.Prepare(ctx, ds); err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		// Updates fail in a trigger whose message and detail quote the
		// values, as PostgreSQL's own errors may.
		if _, err := conn.Exec(ctx, `CREATE FUNCTION patients.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused % % of %', NEW.first_name, NEW.last_name, NEW.nhs_number
  USING DETAIL = format('Key (religion)=(%s)', NEW.religion); END $$;
CREATE TRIGGER refuse BEFORE UPDATE ON patients.patients FOR EACH ROW EXECUTE FUNCTION patients.refuse();`); err != nil {
			t.Fatal(err)
		}
		check(t, run(t, st), "request failed", `"status":409`)
	})
}

// TestMaskText checks what free text loses.
func TestMaskText(t *testing.T) {
	for in, want := range map[string]string{
		`ERROR: duplicate key value violates unique constraint "x" (SQLSTATE 23505) DETAIL: Key (nhs)=(999)`: `ERROR: duplicate key value violates unique constraint "***" (SQLSTATE ***) DETAIL: ***`,
		`invalid input syntax for type uuid: "Zebulonia"`:                                                    `invalid input syntax for type uuid: "***"`,
		`Key (last_name, first_name)=(Lee, Ann (Mrs)) already exists`:                                        `Key (last_name, first_name)=(***) already exists`,
		`mail ann.lee@example.org bounced; call 020 7946 0000`:                                               `mail *** bounced; call ***`,
		`bulk load 1000 records into residents.residents: version 2, not 1`:                                  `bulk load 1000 records into residents.residents: version 2, not 1`,
	} {
		if got := plinth.MaskText(in, nil); got != want {
			t.Errorf("MaskText(%q)\n = %q\nwant %q", in, got, want)
		}
	}
	if got := plinth.MaskText("sqlite: update patient Quastlethwaite: locked", []string{"Quastlethwaite"}); got != "sqlite: update patient ***: locked" {
		t.Errorf("secret not masked: %q", got)
	}
}
