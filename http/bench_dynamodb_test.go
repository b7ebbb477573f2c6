package http_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
	"github.com/plinth-data/plinth/dynamodb"
)

// DynamoDB figures run against minidyn (or PLINTH_TEST_DYNAMODB): an
// in-memory emulator whose every Query walks its whole table, so its
// latencies are a functional stand-in, not DynamoDB's. The capacity units
// per API operation follow DynamoDB's pricing rules (reported by DynamoDB,
// or estimated from item sizes where the emulator reports none).

const ddbBenchResidents = 2000

var (
	ddbBenchOnce sync.Once
	ddbBenchAPI  *api
)

func ddbFixture(b *testing.B) *api {
	ddbBenchOnce.Do(func() {
		a := newAPI(&onceTB{TB: b, dir: b.TempDir()}, nil)
		e := a.entity("residents")
		g := datasafety.NewGenerator(42)
		for done := 0; done < ddbBenchResidents; done += 50 {
			if err := a.store.BulkInsert(context.Background(), e, g.Records(e, 50)); err != nil {
				b.Fatal(err)
			}
		}
		ddbBenchAPI = a
	})
	if ddbBenchAPI == nil {
		b.Fatal("fixture failed")
	}
	return ddbBenchAPI
}

// usage reports the DynamoDB calls and capacity units per API operation.
func usage(b *testing.B, a *api, run func()) {
	usageOf(b, a.store.(*dynamodb.Store), run)
}

func usageOf(b *testing.B, st *dynamodb.Store, run func()) {
	before := st.Calls()
	b.ResetTimer()
	run()
	b.StopTimer()
	var calls int64
	var rcu, wcu float64
	var ops []string
	for op, u := range st.Calls() {
		d := u.Calls - before[op].Calls
		if d == 0 {
			continue
		}
		calls += d
		rcu += u.ReadUnits - before[op].ReadUnits
		wcu += u.WriteUnits - before[op].WriteUnits
		ops = append(ops, fmt.Sprintf("%s×%.1f", op, float64(d)/float64(b.N)))
	}
	n := float64(b.N)
	b.ReportMetric(float64(calls)/n, "ddbcalls/op")
	b.ReportMetric(rcu/n, "RCU/op")
	b.ReportMetric(wcu/n, "WCU/op")
	b.Logf("per operation: %s", strings.Join(ops, " "))
}

func ddbGet(b *testing.B, a *api, path func(r *rand.Rand) string) {
	r := rand.New(rand.NewPCG(7, 1))
	usage(b, a, func() {
		for range b.N {
			res, err := http.Get(a.url + path(r))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Fatalf("status %d", res.StatusCode)
			}
		}
	})
}

func BenchmarkDynamoDBView(b *testing.B) {
	a := ddbFixture(b)
	ddbGet(b, a, func(r *rand.Rand) string { return fmt.Sprintf("/api/v1/residents/%d", 1+r.IntN(ddbBenchResidents)) })
}

func BenchmarkDynamoDBListFirstPage(b *testing.B) {
	a := ddbFixture(b)
	ddbGet(b, a, func(*rand.Rand) string { return "/api/v1/residents" })
}

func BenchmarkDynamoDBListFirstNamePrefix(b *testing.B) {
	a := ddbFixture(b)
	names := []string{"ja", "mar", "oli", "s"}
	ddbGet(b, a, func(r *rand.Rand) string { return "/api/v1/residents?first_name=" + names[r.IntN(len(names))] })
}

func BenchmarkDynamoDBListPostcode(b *testing.B) {
	a := ddbFixture(b)
	got := a.do("GET", "/api/v1/residents/1", "")
	addrs, _ := got.json(b)["addresses"].([]any)
	if len(addrs) == 0 {
		b.Skip("resident 1 has no address")
	}
	pc := addrs[0].(map[string]any)["postCode"].(string)
	ddbGet(b, a, func(*rand.Rand) string { return "/api/v1/residents?postcode=" + url.QueryEscape(pc) })
}

func BenchmarkDynamoDBListLastNameContains(b *testing.B) {
	a := ddbFixture(b)
	ddbGet(b, a, func(*rand.Rand) string { return "/api/v1/residents?last_name=son" })
}

// BenchmarkDynamoDBScan: the Reporting API's scan of every resident
// (Store.Scan: every shard read with consistent Queries and merged in key
// order), per whole scan of the fixture's records; ScanPrefetch with
// ?scan_prefetch=true (the shards read concurrently, a page ahead).
func BenchmarkDynamoDBScan(b *testing.B) {
	ddbScan(b, false)
}

func BenchmarkDynamoDBScanPrefetch(b *testing.B) {
	ddbScan(b, true)
}

func ddbScan(b *testing.B, prefetch bool) {
	a := ddbFixture(b)
	e := a.entity("residents")
	st := a.store.(*dynamodb.Store)
	if prefetch {
		o := st.Options()
		o.ScanPrefetch = true
		var err error
		if st, err = dynamodb.OpenOptions(context.Background(), o); err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		if err := st.Prepare(context.Background(), a.domains); err != nil {
			b.Fatal(err)
		}
	}
	usageOf(b, st, func() {
		for range b.N {
			n := 0
			if _, err := st.Scan(context.Background(), e, plinth.ScanQuery{}, func(plinth.Record) error { n++; return nil }); err != nil {
				b.Fatal(err)
			}
			if n < ddbBenchResidents {
				b.Fatalf("the scan sent %d records of %d", n, ddbBenchResidents)
			}
		}
	})
}

// BenchmarkDynamoDBWrites: create, update and delete through the API
// (each with its event and audit record in one TransactWriteItems).
func BenchmarkDynamoDBWrites(b *testing.B) {
	a := ddbFixture(b)
	body := `{"firstName":"Bench","lastName":"Mark","dateOfBirth":"1990-01-01"}`
	for _, op := range []string{"create", "update", "delete"} {
		b.Run(op, func(b *testing.B) {
			b.StopTimer()
			ids := make([]string, b.N)
			if op != "create" {
				for i := range ids {
					ids[i] = a.do("POST", "/api/v1/residents", body).header.Get("Location")
				}
			}
			b.StartTimer()
			usage(b, a, func() {
				for i := range b.N {
					var res response
					switch op {
					case "create":
						res = a.do("POST", "/api/v1/residents", body)
					case "update":
						res = a.do("PATCH", ids[i], `{"lastName":"Changed"}`, "If-Match", `"1"`)
					case "delete":
						res = a.do("DELETE", ids[i], "", "If-Match", `"1"`)
					}
					if res.status >= 300 {
						b.Fatalf("%s: %d %s", op, res.status, res.body)
					}
				}
			})
		})
	}
}
