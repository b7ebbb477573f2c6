package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
)

func loadDomains(t testing.TB) []*plinth.Domain { return plinthtest.Domains(t) }

func entity(t testing.TB, ds []*plinth.Domain, plural string) *plinth.Entity {
	return plinthtest.Entity(t, ds, plural)
}

// openStore opens a store on a fresh database, prepared for ds.
func openStore(t testing.TB, ds []*plinth.Domain) (*Store, string) {
	t.Helper()
	dbURL := pgtest.Database(t)
	s, err := Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if ds != nil {
		if err := s.Prepare(context.Background(), ds); err != nil {
			t.Fatal(err)
		}
	}
	return s, dbURL
}

// resident returns a valid, deterministic resident document, canonical.
func resident(t testing.TB, e *plinth.Entity, i int) map[string]any {
	first := []string{"Zoë", "Amara", "Oliver", "Łukasz", "Siobhán", "Mohammed", "Grace", "Chen", "Fatima", "Jack"}
	last := []string{"O'Brien", "Smith", "Nowak", "Okafor", "García", "Patel", "Jones", "Müller", "Kowalski", "Brown"}
	digits := fmt.Sprintf("%09d", 400000000+i*7%599999999)
	check, ok := plinth.NHSCheckDigit(digits)
	doc := map[string]any{
		"title":       []string{"Mr", "Ms", "Dr", "Mx"}[i%4],
		"firstName":   first[i%len(first)],
		"lastName":    last[(i/10)%len(last)] + fmt.Sprint(i%97),
		"dateOfBirth": time.Date(1930+i%80, time.Month(1+i%12), 1+i%28, 0, 0, 0, 0, time.UTC).Format(time.DateOnly),
		"gender":      []string{"F", "M", "I", "U"}[i%4],
		"restricted":  i%13 == 0,
		"ageContext":  []string{"A", "C", "B"}[i%3],
		"uprn":        fmt.Sprint(100000000 + i),
		"phoneNumbers": []any{
			map[string]any{"number": fmt.Sprintf("020 7946 %04d", i%10000), "type": "home"},
		},
		"addresses": []any{
			map[string]any{"addressLine1": fmt.Sprintf("%d Mare Street", 1+i%300), "postCode": fmt.Sprintf("E%d %dDY", 1+i%20, i%10),
				"startDate": "2020-01-01", "isContactAddress": true},
		},
	}
	if ok {
		doc["nhsNumber"] = digits + string(check)
	}
	if i%5 == 0 {
		doc["otherNames"] = []any{map[string]any{"firstName": "Jo", "lastName": "Bloggs"}}
	}
	data, err := e.Validate(doc, true)
	if err != nil {
		t.Fatalf("resident %d: %v", i, err)
	}
	return data
}

func TestRoundTrip(t *testing.T) {
	ds := loadDomains(t)
	s, _ := openStore(t, ds)
	ctx := context.Background()
	e := entity(t, ds, "residents")
	data := resident(t, e, 1)
	var rec plinth.Record
	err := s.Write(ctx, func(tx plinth.Tx) (err error) {
		rec, err = tx.Insert(ctx, e, data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	id := e.KeyOf(rec)
	if _, ok := id.(int64); !ok {
		t.Fatalf("key %v is %T, want int64", id, id)
	}
	got, err := s.Get(ctx, e, id)
	if err != nil {
		t.Fatal(err)
	}
	if string(e.MarshalRecord(got)) != string(e.MarshalRecord(rec)) {
		t.Fatalf("read back\n%s\nwant\n%s", e.MarshalRecord(got), e.MarshalRecord(rec))
	}
	// Filters.
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"first_name=zoe", 0}, {"first_name=AMA", 1}, {"last_name=BRIEN1", 1}, {"last_name=mith", 0}, {"last_name=%25", 0},
		{"postcode=E2+1DY", 1}, {"postcode=E2+2DY", 0}, {"date_of_birth_from=1900-01-01", 1}, {"date_of_birth_to=1900-01-01", 0},
		{"mosaic_id=" + plinth.KeyString(id), 1},
	} {
		q, err := e.ParseQuery(mustQuery(tc.query))
		if err != nil {
			t.Fatal(err)
		}
		page, err := s.List(ctx, e, q)
		if err != nil {
			t.Fatalf("%s: %v", tc.query, err)
		}
		if len(page.Records) != tc.want {
			t.Errorf("%s: %d records, want %d", tc.query, len(page.Records), tc.want)
		}
	}
}

func mustQuery(s string) url.Values {
	v, err := url.ParseQuery(s)
	if err != nil {
		panic(err)
	}
	return v
}

func TestOpenErrorNamesHostNotPassword(t *testing.T) {
	port := closedPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const password = "s3cr3t-Pa55word"
	_, err := Open(ctx, fmt.Sprintf("postgres://plinth:%s@127.0.0.1:%d/residents_db", password, port))
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
	msg := err.Error()
	for _, want := range []string{fmt.Sprintf("127.0.0.1:%d", port), `"residents_db"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %s", msg, want)
		}
	}
	if strings.Contains(msg, password) {
		t.Errorf("error %q shows the password", msg)
	}
	if !errors.Is(err, plinth.ErrUnavailable) {
		t.Errorf("error %q does not wrap ErrUnavailable", msg)
	}
	// A server that answers but refuses: the database does not exist.
	base := testURL(t)
	user := "postgres"
	if base.User != nil {
		user = base.User.Username()
	}
	base.User = url.UserPassword(user, password)
	base.Path = "/plinth_no_such_database"
	_, err = Open(ctx, base.String())
	if err == nil {
		t.Fatal("Open succeeded on a database that does not exist")
	}
	if msg := err.Error(); strings.Contains(msg, password) || !strings.Contains(msg, "plinth_no_such_database") {
		t.Errorf("error %q shows the password or does not name the database", msg)
	}
	// A URL that does not parse.
	_, err = Open(ctx, "postgres://plinth:"+password+"@127.0.0.1:notaport/db")
	if err == nil || strings.Contains(err.Error(), password) {
		t.Errorf("bad URL: error %v", err)
	}
}

func testURL(t testing.TB) *url.URL {
	base := os.Getenv(pgtest.URLEnv)
	if base == "" {
		base = pgtest.DefaultURL
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// proxy forwards a loopback port to the test server, and can be stopped
// (closing every connection) and started again on the same port.
type proxy struct {
	t      testing.TB
	target string
	addr   string
	mu     sync.Mutex
	l      net.Listener
	conns  []net.Conn
}

func newProxy(t testing.TB, target string) *proxy {
	p := &proxy{t: t, target: target}
	p.start("127.0.0.1:0")
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) start(addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.l, p.addr = l, l.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func TestUnavailableDuringOutage(t *testing.T) {
	ds := loadDomains(t)
	e := entity(t, ds, "residents")
	dbURL := pgtest.Database(t)
	u, _ := url.Parse(dbURL)
	p := newProxy(t, u.Host)
	u.Host = p.addr
	ctx := context.Background()
	s, err := Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Count(ctx, e); err != nil {
		t.Fatal(err)
	}

	// The database goes away: every kind of call says unavailable.
	p.stop()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = s.Count(cctx, e)
	if !errors.Is(err, plinth.ErrUnavailable) {
		t.Fatalf("Count during outage: %v, want ErrUnavailable", err)
	}
	if _, err := s.Get(cctx, e, int64(1)); !errors.Is(err, plinth.ErrUnavailable) {
		t.Fatalf("Get during outage: %v, want ErrUnavailable", err)
	}
	err = s.Write(cctx, func(tx plinth.Tx) error {
		_, err := tx.Insert(cctx, e, resident(t, e, 1))
		return err
	})
	if !errors.Is(err, plinth.ErrUnavailable) {
		t.Fatalf("Write during outage: %v, want ErrUnavailable", err)
	}
	if err := s.Ping(cctx); !errors.Is(err, plinth.ErrUnavailable) {
		t.Fatalf("Ping during outage: %v, want ErrUnavailable", err)
	}
	t.Logf("during the outage: %v", err)

	// It comes back: the pool recovers by itself.
	p.start(p.addr)
	var n int64
	plinthtest.Eventually(t, 10*time.Second, func() bool {
		n, err = s.Count(ctx, e)
		return err == nil
	}, "Count after the database came back: %v", plinthtest.Last(&err))
	if n != 0 {
		t.Fatalf("Count = %d, want 0", n)
	}
}

func TestTerminatedBackends(t *testing.T) {
	ds := loadDomains(t)
	e := entity(t, ds, "residents")
	s, dbURL := openStore(t, ds)
	ctx := context.Background()
	if err := s.BulkInsert(ctx, e, []map[string]any{resident(t, e, 1), resident(t, e, 2)}); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(dbURL)
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var killed int
	err = admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = $1 AND pid <> pg_backend_pid()`, strings.TrimPrefix(u.Path, "/")).Scan(&killed)
	if err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("no backend to terminate")
	}
	// The next call either reconnects or says unavailable; the one after
	// it works.
	if _, err := s.Count(ctx, e); err != nil && !errors.Is(err, plinth.ErrUnavailable) {
		t.Fatalf("Count after terminate: %v, want success or ErrUnavailable", err)
	}
	n, err := s.Count(ctx, e)
	if err != nil || n != 2 {
		t.Fatalf("Count = %d, %v; want 2", n, err)
	}
	// Terminated inside a transaction: the write says unavailable or works,
	// and never half-happens.
	err = s.Write(ctx, func(tx plinth.Tx) error {
		if _, err := tx.Insert(ctx, e, resident(t, e, 3)); err != nil {
			return err
		}
		_, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = $1 AND pid <> pg_backend_pid()`, strings.TrimPrefix(u.Path, "/"))
		return err
	})
	if err == nil || !errors.Is(err, plinth.ErrUnavailable) {
		t.Fatalf("Write whose connection was terminated: %v, want ErrUnavailable", err)
	}
	n, err = s.Count(ctx, e)
	if err != nil || n != 2 {
		t.Fatalf("Count = %d, %v; want 2", n, err)
	}
}
