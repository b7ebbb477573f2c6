// Package ddbtest gives tests a DynamoDB endpoint: PLINTH_TEST_DYNAMODB
// when set (DynamoDB Local, AWS), else an in-process minidyn server
// (github.com/truora/minidyn) behind httptest, which the real
// aws-sdk-go-v2 client talks to over HTTP. Each call returns a store URL
// with a table prefix of its own, so tests never share tables.
//
// Where minidyn differs from DynamoDB (tests must not rely on either side):
// its global secondary indexes are updated synchronously (DynamoDB's are
// eventually consistent); it enforces neither the 400 KB item limit nor
// the 1 MB page limit; it reports no ConsumedCapacity; it orders sort keys
// as text (so the dynamodb store keeps every key attribute a string); a
// Query's ExclusiveStartKey must name an item that still exists (the store
// continues pages with a key condition instead); and its transactions roll
// back with table snapshots rather than item locks.
package ddbtest

import (
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/truora/minidyn/server"
)

var seq atomic.Int64

// URL returns a dynamodb:// store URL for one test, with a unique table
// prefix. The in-process server, when one is started, stops with the test.
func URL(t testing.TB) string {
	t.Helper()
	prefix := fmt.Sprintf("t%d-%d-", time.Now().UnixNano()%1e9, seq.Add(1))
	endpoint := os.Getenv("PLINTH_TEST_DYNAMODB")
	if endpoint == "" {
		srv := httptest.NewServer(server.NewServer())
		t.Cleanup(srv.Close)
		endpoint = srv.URL
	}
	endpoint = strings.TrimSuffix(endpoint, "/")
	return "dynamodb://us-east-1?endpoint=" + endpoint + "&prefix=" + prefix
}
