package http_test

import (
	"context"
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/dynamodb"
	"github.com/plinth-data/plinth/plinthtest/ddbtest"
	"github.com/plinth-data/plinth/sqlite"
)

// fullStore is what the black-box tests need of a store.
type fullStore interface {
	plinth.Store
	plinth.AccessStore
	plinth.AuditStore
	plinth.OutboxStore
}

// onDynamoDB is the prefix of the tests TestOnDynamoDB runs again.
const onDynamoDB = "TestOnDynamoDB/"

// storeFor opens the store a black-box test runs on, prepared for ds:
// SQLite (dbPath is its file), or, for a test run by TestOnDynamoDB,
// DynamoDB (minidyn in-process, or PLINTH_TEST_DYNAMODB; dbPath "").
func storeFor(t testing.TB, ds []*plinth.Domain) (st fullStore, dbPath string) {
	t.Helper()
	ctx := context.Background()
	var err error
	if strings.HasPrefix(t.Name(), onDynamoDB) || strings.HasPrefix(t.Name(), "BenchmarkDynamoDB") {
		st, err = dynamodb.Open(ctx, ddbtest.URL(t))
	} else {
		dbPath = t.TempDir() + "/plinth.db"
		st, err = sqlite.Open(ctx, dbPath)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	return st, dbPath
}

// TestOnDynamoDB runs the black-box API tests again with a DynamoDB store:
// the API behaves the same on each engine. Not here: the tests that open
// the SQLite file themselves (TestAdminChangesCommitWithTheirAuditRecord breaks
// its audit table), and TestReportIsOneSnapshot (DynamoDB has no
// snapshot reads; docs/store-contract.md).
func TestOnDynamoDB(t *testing.T) {
	for name, fn := range map[string]func(*testing.T){
		"Ping":                                    TestPing,
		"CreateViewUpdateDelete":                  TestCreateViewUpdateDelete,
		"UUIDKeyedEntity":                         TestUUIDKeyedEntity,
		"BadInputIsRejectedAndNothingIsWritten":   TestBadInputIsRejectedAndNothingIsWritten,
		"FiltersWithCaseAndNonASCIINames":         TestFiltersWithCaseAndNonASCIINames,
		"PaginationWalkDuringWrites":              TestPaginationWalkDuringWrites,
		"ListDefaultsAndShape":                    TestListDefaultsAndShape,
		"WeakIfMatchNeverMatches":                 TestWeakIfMatchNeverMatches,
		"EveryCursorIsValidatedAlike":             TestEveryCursorIsValidatedAlike,
		"EveryRequestIsAuditedOnce":               TestEveryRequestIsAuditedOnce,
		"WritesProduceEvents":                     TestWritesProduceEvents,
		"GroupsDecideReadAndWrite":                TestGroupsDecideReadAndWrite,
		"ServiceTokenLifecycleThroughTheAdminAPI": TestServiceTokenLifecycleThroughTheAdminAPI,
		"AccessPolicyThroughTheAdminAPI":          TestAccessPolicyThroughTheAdminAPI,
		"NoRouteLeaksRecordsToWhoMayNotRead":      TestNoRouteLeaksRecordsToWhoMayNotRead,
		"ReportHasEveryRecordInEveryFormat":       TestReportHasEveryRecordInEveryFormat,
		"IncrementalReportsAndDeletions":          TestIncrementalReportsAndDeletions,
		"ReportRefusesBadRequestsBeforeAnyData":   TestReportRefusesBadRequestsBeforeAnyData,
	} {
		t.Run(name, fn)
	}
}
