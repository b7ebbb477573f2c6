package dynamodb_test

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/dynamodb"
	"github.com/plinth-data/plinth/plinthtest/ddbtest"
	"github.com/plinth-data/plinth/storetest"
)

// open returns a fresh store prepared for the domains.
func open(t testing.TB, ds []*plinth.Domain) *dynamodb.Store {
	t.Helper()
	s, err := dynamodb.Open(t.Context(), ddbtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Prepare(t.Context(), ds); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// capabilities are where the store differs from the storetest contract:
// DynamoDB has no snapshot reads, so Scan is not one snapshot.
// The flat-memory scan test loads fewer records: minidyn copies its whole
// table in every transaction, so 20,000 took a minute.
var capabilities = storetest.Capabilities{NoSnapshotScan: true, ScanMemoryRecords: 8000}

func TestContract(t *testing.T) {
	storetest.RunWith(t, capabilities, func(t *testing.T) plinth.Store { return open(t, storetest.Domains(t)) })
}

func TestOutboxContract(t *testing.T) {
	storetest.RunOutbox(t, func(t *testing.T) plinth.Store { return open(t, storetest.Domains(t)) })
}

func TestAuditContract(t *testing.T) {
	storetest.RunAudit(t, func(t *testing.T) plinth.Store { return open(t, storetest.Domains(t)) })
}

func TestAuditConcurrentWriters(t *testing.T) {
	storetest.RunAuditConcurrentWriters(t, func(t *testing.T) plinth.Store { return open(t, storetest.Domains(t)) })
}

func TestAccessContract(t *testing.T) {
	storetest.RunAccess(t, func(t *testing.T) plinth.AccessStore { return open(t, storetest.Domains(t)) })
}

// TestFilteredListsQueryIndexes counts the DynamoDB operations of lists:
// exact and prefix filters (top level and inside arrays) and the key are
// served by Query or GetItem on indexes, never by Scan; nor are unfiltered
// lists (a Query per shard).
func TestFilteredListsQueryIndexes(t *testing.T) {
	ds := storetest.Domains(t)
	s := open(t, ds)
	people := entity(t, ds, "people")
	for i, name := range []string{"Zoë", "Zola", "Adam", "Zoran"} {
		data, err := people.Validate(map[string]any{"firstName": name, "lastName": "Smith", "status": "active",
			"addresses": []any{map[string]any{"line1": fmt.Sprintf("%d Flat Road", i), "postCode": "E8 1DY"}}}, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(t.Context(), func(tx plinth.Tx) error { _, err := tx.Insert(t.Context(), people, data); return err }); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"status=active", 4}, {"first_name=zo", 3}, {"first_name=ZOR", 1}, {"postcode=E8+1DY", 4},
		{"address=2+fl", 1}, {"address=fla", 0}, {"person_id=2", 1}, {"", 4},
	} {
		values, _ := url.ParseQuery(tc.query)
		q, err := people.ParseQuery(values)
		if err != nil {
			t.Fatal(err)
		}
		before := s.Calls()
		page, err := s.List(t.Context(), people, q)
		if err != nil {
			t.Fatalf("?%s: %v", tc.query, err)
		}
		if len(page.Records) != tc.want {
			t.Errorf("?%s: %d records, want %d", tc.query, len(page.Records), tc.want)
		}
		after := s.Calls()
		if after["Scan"].Calls != before["Scan"].Calls {
			t.Errorf("?%s used Scan", tc.query)
		}
		if after["Query"].Calls+after["GetItem"].Calls == before["Query"].Calls+before["GetItem"].Calls {
			t.Errorf("?%s used neither Query nor GetItem", tc.query)
		}
	}
}

func entity(t testing.TB, ds []*plinth.Domain, plural string) *plinth.Entity {
	for _, e := range ds[0].Entities {
		if e.Plural == plural {
			return e
		}
	}
	t.Fatalf("no entity %s", plural)
	return nil
}

// TestLimitsAreEnforced: a record over DynamoDB's 400 KB item limit, and a
// write over its 100 items per transaction, are refused with a
// TooLargeError naming the limit, and nothing is written.
func TestLimitsAreEnforced(t *testing.T) {
	ds := storetest.Domains(t)
	s := open(t, ds)
	cats := entity(t, ds, "categories")
	big := map[string]any{"code": "big", "title": strings.Repeat("x", 410*1024)}
	err := s.Write(t.Context(), func(tx plinth.Tx) error { _, err := tx.Insert(t.Context(), cats, big); return err })
	var tl *plinth.TooLargeError
	if !errors.As(err, &tl) || !strings.Contains(tl.Limit, "400 KB") {
		t.Fatalf("a 410 KB record: %v; want a TooLargeError naming the 400 KB item limit", err)
	}
	err = s.Write(t.Context(), func(tx plinth.Tx) error {
		for i := range 120 {
			if _, err := tx.Insert(t.Context(), cats, map[string]any{"code": fmt.Sprintf("c%03d", i), "title": "t"}); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.As(err, &tl) || !strings.Contains(tl.Limit, "100 items per transaction") {
		t.Fatalf("a write of 120 records: %v; want a TooLargeError naming the transaction limit", err)
	}
	if !errors.Is(err, plinth.ErrTooLarge) {
		t.Errorf("TooLargeError does not match ErrTooLarge")
	}
	if n, err := s.Count(t.Context(), cats); err != nil || n != 0 {
		t.Errorf("after refused writes: %d categories (%v), want 0", n, err)
	}
}

// TestCheckRefusesMissingTables: with Check (staging, production) Prepare
// creates nothing and names what is missing; after the tables are created
// it passes. A store URL with another shard count than the tables is
// refused.
func TestCheckRefusesMissingTables(t *testing.T) {
	ds := storetest.Domains(t)
	o, err := dynamodb.ParseURL(ddbtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	o.Check = true
	s, err := dynamodb.OpenOptions(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Prepare(t.Context(), ds)
	if err == nil || !strings.Contains(err.Error(), "table "+o.Prefix+"store-test.people is missing") || !strings.Contains(err.Error(), "plinth schema apply") {
		t.Fatalf("check without tables: %v", err)
	}
	if _, err := s.Client().DescribeTable(t.Context(), &awsddb.DescribeTableInput{TableName: aws.String(o.Prefix + "plinth")}); err == nil {
		t.Fatal("check created the system table")
	}
	open := o
	open.Check = false
	created, err := dynamodb.OpenOptions(t.Context(), open)
	if err != nil {
		t.Fatal(err)
	}
	if err := created.Prepare(t.Context(), ds); err != nil {
		t.Fatal(err)
	}
	if err := s.Prepare(t.Context(), ds); err != nil {
		t.Fatalf("check after the tables were created: %v", err)
	}
	other := open
	other.Shards = 7
	s7, _ := dynamodb.OpenOptions(t.Context(), other)
	if err := s7.Prepare(t.Context(), ds); err == nil || !strings.Contains(err.Error(), "shards=4") {
		t.Errorf("another shard count: %v; want a refusal naming shards=4", err)
	}
}

func TestParseURL(t *testing.T) {
	for _, bad := range []string{"dynamodb://", "dynamodb://eu-west-2?shards=0", "dynamodb://eu-west-2?x=1", "dynamodb://eu-west-2?prefix=a/b", "postgres://x",
		"dynamodb://eu-west-2?clock_skew=-1ms", "dynamodb://eu-west-2?clock_skew=11s", "dynamodb://eu-west-2?clock_skew=100"} {
		if _, err := dynamodb.ParseURL(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	o, err := dynamodb.ParseURL("dynamodb://eu-west-2?endpoint=http://127.0.0.1:8000&prefix=dev-&shards=8")
	if err != nil || o.Region != "eu-west-2" || o.Endpoint != "http://127.0.0.1:8000" || o.Prefix != "dev-" || o.Shards != 8 || o.ClockSkew != dynamodb.DefaultClockSkew {
		t.Errorf("parsed %+v, %v", o, err)
	}
	if o, err := dynamodb.ParseURL("dynamodb://eu-west-2?clock_skew=20ms"); err != nil || o.ClockSkew != 20*time.Millisecond {
		t.Errorf("clock_skew=20ms: %+v, %v", o, err)
	}
}
