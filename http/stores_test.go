package http_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/dynamodb"
	"github.com/plinth-data/plinth/plinthtest/ddbtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
	"github.com/plinth-data/plinth/sqlite"
	"github.com/plinth-data/plinth/storemux"
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
// DynamoDB (minidyn in-process, or PLINTH_TEST_DYNAMODB; dbPath ""), or,
// for one run by TestOnPostgreSQL, a new PostgreSQL database.
func storeFor(t testing.TB, ds []*plinth.Domain) (st fullStore, dbPath string) {
	t.Helper()
	ctx := context.Background()
	var err error
	switch {
	case strings.HasPrefix(t.Name(), onDynamoDB) || strings.HasPrefix(t.Name(), "BenchmarkDynamoDB"):
		st, err = dynamodb.Open(ctx, ddbtest.URL(t))
	case strings.HasPrefix(t.Name(), onPostgres):
		st, err = postgres.Open(ctx, pgtest.Database(t))
	case strings.HasPrefix(t.Name(), onMixed):
		// residents on DynamoDB, everything else on SQLite.
		lite, lerr := sqlite.Open(ctx, t.TempDir()+"/plinth.db")
		ddb, derr := dynamodb.Open(ctx, ddbtest.URL(t))
		if err = errors.Join(lerr, derr); err == nil {
			st = storemux.New(lite, map[string]plinth.Store{"residents": ddb})
		}
	default:
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

// onMixed is the prefix of the tests TestOnMixedStores runs again.
const onMixed = "TestOnMixedStores/"

// TestOnMixedStores runs black-box API tests with residents on DynamoDB and
// the rest (contacts, grants, policies, the read audit trail) on SQLite,
// behind the routing store plinth.yaml's stores: map makes. The audit
// records of resident writes live in the DynamoDB store's chain, the rest
// in SQLite's: the audit tests find them all, in order, through the merged
// trail (audit.Chains). Not here: the tests that read the events of
// resident writes through the default store — those live in the DynamoDB
// store's own outbox (README, "DynamoDB store").
func TestOnMixedStores(t *testing.T) {
	for name, fn := range map[string]func(*testing.T){
		"CreateViewUpdateDelete":                  TestCreateViewUpdateDelete,
		"BadInputIsRejectedAndNothingIsWritten":   TestBadInputIsRejectedAndNothingIsWritten,
		"FiltersWithCaseAndNonASCIINames":         TestFiltersWithCaseAndNonASCIINames,
		"PaginationWalkDuringWrites":              TestPaginationWalkDuringWrites,
		"ListDefaultsAndShape":                    TestListDefaultsAndShape,
		"GroupsDecideReadAndWrite":                TestGroupsDecideReadAndWrite,
		"AccessPolicyThroughTheAdminAPI":          TestAccessPolicyThroughTheAdminAPI,
		"ServiceTokenLifecycleThroughTheAdminAPI": TestServiceTokenLifecycleThroughTheAdminAPI,
		"NoRouteLeaksRecordsToWhoMayNotRead":      TestNoRouteLeaksRecordsToWhoMayNotRead,
		"ReportHasEveryRecordInEveryFormat":       TestReportHasEveryRecordInEveryFormat,
		"IncrementalReportsAndDeletions":          TestIncrementalReportsAndDeletions,
		"EveryRequestIsAuditedOnce":               TestEveryRequestIsAuditedOnce,
		"AuditSearchAPI":                          TestAuditSearchAPI,
		"EveryCursorIsValidatedAlike":             TestEveryCursorIsValidatedAlike,
	} {
		t.Run(name, fn)
	}
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
