package dynamodb_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/dynamodb"
	"github.com/plinth-data/plinth/plinthtest/ddbtest"
	"github.com/plinth-data/plinth/storetest"
)

// openURL opens a store on url's tables, prepared for ds: two calls with
// one url are two processes sharing a store.
func openURL(t testing.TB, url string, ds []*plinth.Domain) *dynamodb.Store {
	t.Helper()
	s, err := dynamodb.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Prepare(t.Context(), ds); err != nil {
		t.Fatal(err)
	}
	return s
}

// twoProcesses opens two stores on one set of tables, as two processes
// would, the second with its clock lag behind; and returns the categories.
func twoProcesses(t *testing.T, lag time.Duration) (s1, s2 *dynamodb.Store, cats *plinth.Entity) {
	t.Helper()
	ds := storetest.Domains(t)
	url := ddbtest.URL(t)
	s1, s2 = openURL(t, url, ds), openURL(t, url, ds)
	dynamodb.SetClockOffset(s2, -lag)
	return s1, s2, entity(t, ds, "categories")
}

func newWriter(t testing.TB, s plinth.Store) *plinth.Writer {
	t.Helper()
	w, err := plinth.NewWriter(t.Context(), plinth.WriterConfig{Store: s, Environment: plinth.EnvDevelopment, Events: true, Audit: true})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func category(t testing.TB, e *plinth.Entity, code string) map[string]any {
	t.Helper()
	d, err := e.Validate(map[string]any{"code": code, "title": "title of " + code}, true)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// retitle updates a category through the write path, at whatever version
// it is, and returns the version it wrote.
func retitle(ctx context.Context, s plinth.Store, w *plinth.Writer, e *plinth.Entity, code string) (int64, error) {
	for {
		cur, err := s.Get(ctx, e, code)
		if err != nil {
			return 0, err
		}
		res, err := w.Update(ctx, e, code, cur.Version, func(r plinth.Record) (map[string]any, error) {
			d := maps.Clone(r.Data)
			d["title"] = fmt.Sprintf("%s at %d", code, r.Version+1)
			return d, nil
		}, plinth.Origin{})
		if errors.Is(err, plinth.ErrVersionConflict) {
			continue
		}
		return res.Record.Version, err
	}
}

// TestWritesToDifferentRecordsShareNoItem watches every item the write
// path's calls write — the in-flight registration, and every item of the
// TransactWriteItems, condition checks included — while it creates and
// then updates sixteen records one after another. The create and update
// of one record share the record's item; writes to different records
// share none (no change counter, no head item, no shared outbox or audit
// item), so they never wait for each other.
func TestWritesToDifferentRecordsShareNoItem(t *testing.T) {
	ds := storetest.Domains(t)
	s := open(t, ds)
	cats := entity(t, ds, "categories")
	w := newWriter(t, s)
	var (
		mu     sync.Mutex
		cur    []string
		writes [][]string // the items each write wrote: create and update of record i are writes 2i, 2i+1
		ops    = map[string]int{}
	)
	stop := dynamodb.WatchWrites(s, func(op string, items []string) {
		mu.Lock()
		defer mu.Unlock()
		cur = append(cur, items...)
		ops[op]++
	})
	defer stop()
	done := func() {
		mu.Lock()
		writes = append(writes, cur)
		cur = nil
		mu.Unlock()
	}
	const records = 16
	for i := range records {
		code := fmt.Sprintf("c%02d", i)
		if _, err := w.Create(t.Context(), cats, category(t, cats, code), plinth.Origin{}); err != nil {
			t.Fatal(err)
		}
		done()
		if _, err := retitle(t.Context(), s, w, cats, code); err != nil {
			t.Fatal(err)
		}
		done()
	}
	stop()
	by := map[string][]int{}
	for i, items := range writes {
		for _, it := range slices.Compact(slices.Sorted(slices.Values(items))) {
			by[it] = append(by[it], i)
		}
		if !hasItem(items, "categories ") || !hasItem(items, "outbox|") || !hasItem(items, "auditlog|") {
			t.Errorf("write %d did not write its record, outbox and audit log items: %q", i, items)
		}
	}
	for item, ws := range by {
		if len(ws) > 2 || len(ws) == 2 && ws[0]/2 != ws[1]/2 {
			t.Errorf("item %s is written by writes %v, to different records", item, ws)
		}
	}
	if ops["UpdateItem"] != 0 {
		t.Errorf("the writes made %d UpdateItem calls (a counter?)", ops["UpdateItem"])
	}
	t.Logf("%d writes, calls that write: %v", len(writes), ops)
}

func hasItem(items []string, part string) bool {
	for _, it := range items {
		if strings.Contains(it, part) {
			return true
		}
	}
	return false
}

// TestEventsInOrderPerRecord: two processes write to one store — the
// second with its clock 60 ms behind, within the allowed skew of 100 ms —
// with writers racing on the same two records and others on records of
// their own, while a relay publishes. Every record's events reach the
// relay exactly once and in the order of its versions (1, 2, 3 … with no
// gap and no repeat), and the audit chain of all the writes verifies.
func TestEventsInOrderPerRecord(t *testing.T) {
	s1, s2, cats := twoProcesses(t, 60*time.Millisecond)
	stores := []*dynamodb.Store{s1, s2}
	writers := []*plinth.Writer{newWriter(t, s1), newWriter(t, s2)}
	ctx := t.Context()
	hot := []string{"hot-a", "hot-b"}
	for _, code := range hot {
		if _, err := writers[0].Create(ctx, cats, category(t, cats, code), plinth.Origin{}); err != nil {
			t.Fatal(err)
		}
	}
	const racers, updates, own = 4, 10, 3
	var wg sync.WaitGroup
	errs := make(chan error, 2*racers)
	for g := range racers {
		wg.Add(2)
		s, w := stores[g%2], writers[g%2]
		go func() { // races on the hot records
			defer wg.Done()
			for i := range updates {
				if _, err := retitle(ctx, s, w, cats, hot[(g+i)%2]); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() { // records of its own: created, then updated
			defer wg.Done()
			for i := range own {
				code := fmt.Sprintf("own-%d-%d", g, i)
				if _, err := w.Create(ctx, cats, category(t, cats, code), plinth.Origin{}); err != nil {
					errs <- err
					return
				}
				for range 2 {
					if _, err := retitle(ctx, s, w, cats, code); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()
	want := len(hot) + racers*updates + racers*own*3 // events: creates and updates
	got := relayAll(t, s1, want, writing)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := 0
	for id, versions := range got {
		for i, v := range versions {
			if v != int64(i+1) {
				t.Errorf("%s: the relay got versions %v; want 1, 2, 3 … in order, each once", id, versions)
				break
			}
		}
		n += len(versions)
	}
	if n != want {
		t.Errorf("the relay got %d events; want %d", n, want)
	}
	if _, err := audit.ChainPending(ctx, s1); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(ctx, s1, nil)
	if err != nil || rep.Broken != nil || rep.Records != int64(want) || rep.Unchained != 0 {
		t.Errorf("audit chain: %d records, %d unchained, broken %v, %v; want %d intact", rep.Records, rep.Unchained, rep.Broken, err, want)
	}
}

// relayAll plays the relay until it has want events and the writers are
// done, and returns each entity's versions in the order it got them.
func relayAll(t *testing.T, s *dynamodb.Store, want int, writing <-chan struct{}) map[string][]int64 {
	t.Helper()
	got := map[string][]int64{}
	seen := map[string]bool{}
	deadline := time.Now().Add(2 * time.Minute)
	for n, done := 0, false; !done || n < want; {
		select {
		case <-writing:
			done = true
		default:
		}
		es, err := s.PendingEvents(t.Context(), 50)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, 0, len(es))
		for _, e := range es {
			var ev struct {
				EntityID      string `json:"entityId"`
				EntityVersion int64  `json:"entityVersion"`
			}
			if err := json.Unmarshal(e.Payload, &ev); err != nil {
				t.Fatal(err)
			}
			if seen[e.EventID] {
				t.Fatalf("event %s (%s version %d) came twice", e.EventID, ev.EntityID, ev.EntityVersion)
			}
			seen[e.EventID] = true
			got[ev.EntityID] = append(got[ev.EntityID], ev.EntityVersion)
			ids = append(ids, e.EventID)
			n++
		}
		if err := s.MarkEventsSent(t.Context(), ids); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay got %d events of %d", n, want)
		}
		if len(es) == 0 {
			time.Sleep(5 * time.Millisecond) // the relay's poll, not a wait for a condition
		}
	}
	return got
}

// TestWatermarkWithClockBehind: a change written, right after a scan, by
// a process whose clock is 60 ms behind the scanning one (within the
// allowed skew) is in the next incremental scan: the scan's bound waited
// out the skew, so the late clock's numbers are above its watermark.
func TestWatermarkWithClockBehind(t *testing.T) {
	s1, s2, cats := twoProcesses(t, 60*time.Millisecond)
	w2 := newWriter(t, s2)
	ctx := t.Context()
	for round := range 5 {
		mark, err := s1.Scan(ctx, cats, plinth.ScanQuery{}, func(plinth.Record) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		code := fmt.Sprintf("late-%d", round)
		if _, err := w2.Create(ctx, cats, category(t, cats, code), plinth.Origin{}); err != nil {
			t.Fatal(err)
		}
		var since []string
		if _, err := s1.Scan(ctx, cats, plinth.ScanQuery{Since: mark}, func(r plinth.Record) error {
			since = append(since, r.Data["code"].(string))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(since, []string{code}) {
			t.Fatalf("round %d: the scan since %s has %q; want [%s]", round, mark, since, code)
		}
	}
}

// TestRecreatedRecordEventsInOrder: a record deleted by one process and
// created again at once by another whose clock is 90 ms behind: the
// second write reads the deletion's number (the key's "gone" item) and
// takes a higher one, so the relay publishes created, deleted, created …
// in the order they happened.
func TestRecreatedRecordEventsInOrder(t *testing.T) {
	s1, s2, cats := twoProcesses(t, 90*time.Millisecond)
	ctx := t.Context()
	if _, err := s2.Count(ctx, cats); err != nil { // the client's first call takes longer
		t.Fatal(err)
	}
	var want []string
	for i, w := range []*plinth.Writer{newWriter(t, s1), newWriter(t, s2), newWriter(t, s1), newWriter(t, s2)} {
		data := category(t, cats, "phoenix")
		data["title"] = fmt.Sprint("life ", i)
		if _, err := w.Create(ctx, cats, data, plinth.Origin{}); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		if _, err := w.Delete(ctx, cats, "phoenix", 1, plinth.Origin{}); err != nil {
			t.Fatalf("delete %d: %v", i, err)
		}
		want = append(want, fmt.Sprint("Created life ", i), fmt.Sprint("Deleted life ", i))
	}
	var got []string
	for len(got) < len(want) {
		es, err := s1.PendingEvents(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			var ev struct {
				EventType string `json:"eventType"`
				EventData struct {
					OldData, NewData struct{ Title string }
				} `json:"eventData"`
			}
			if err := json.Unmarshal(e.Payload, &ev); err != nil {
				t.Fatal(err)
			}
			kind := strings.TrimSuffix(strings.TrimPrefix(ev.EventType, "Category"), "Event")
			got = append(got, kind+" "+ev.EventData.NewData.Title+ev.EventData.OldData.Title)
		}
		if len(es) == 0 {
			break
		}
		if err := s1.MarkEventsSent(ctx, eventIDs(es)); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("the relay got %q; want %q", got, want)
	}
	// Purging the tombstones purges the key's gone item with them.
	gone := func() int32 {
		out, err := s1.Client().Query(ctx, &awsddb.QueryInput{TableName: aws.String(s1.Options().Prefix + "plinth"),
			KeyConditionExpression:    aws.String("pk = :pk"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: "gone|" + s1.Options().Prefix + "store-test.categories"}}})
		if err != nil {
			t.Fatal(err)
		}
		return out.Count
	}
	if n := gone(); n != 1 {
		t.Fatalf("%d gone items after deleting one key; want 1", n)
	}
	if _, err := s1.PurgeTombstones(ctx, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := gone(); n != 0 {
		t.Errorf("%d gone items after purging the tombstones; want 0", n)
	}
}

func eventIDs(es []plinth.OutboxEntry) []string {
	var ids []string
	for _, e := range es {
		ids = append(ids, e.EventID)
	}
	return ids
}

// TestRelayHoldsAnEventWhileTheOneBeforeWaits: each event names the
// outbox item of its record's event before ("prev"); PendingEvents does
// not return an event while that one still waits outside the batch — the
// case of an earlier version committed by a host whose clock is further
// behind than the allowed skew. The test moves a record's first event
// above the bound by hand (where such a write would put it), and the
// second is held until the first is published.
func TestRelayHoldsAnEventWhileTheOneBeforeWaits(t *testing.T) {
	ds := storetest.Domains(t)
	s := open(t, ds)
	cats := entity(t, ds, "categories")
	w := newWriter(t, s)
	ctx := t.Context()
	if _, err := w.Create(ctx, cats, category(t, cats, "x"), plinth.Origin{}); err != nil {
		t.Fatal(err)
	}
	if _, err := retitle(ctx, s, w, cats, "x"); err != nil {
		t.Fatal(err)
	}
	sys := aws.String(s.Options().Prefix + "plinth")
	var items []map[string]types.AttributeValue
	for lane := range dynamodb.Lanes {
		out, err := s.Client().Query(ctx, &awsddb.QueryInput{TableName: sys, KeyConditionExpression: aws.String("pk = :pk"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: fmt.Sprint("outbox|", lane)}}})
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, out.Items...)
	}
	sk := func(it map[string]types.AttributeValue) string { return it["sk"].(*types.AttributeValueMemberS).Value }
	slices.SortFunc(items, func(a, b map[string]types.AttributeValue) int { return strings.Compare(sk(a), sk(b)) })
	if len(items) != 2 {
		t.Fatalf("%d outbox items; want 2", len(items))
	}
	first, second := items[0], items[1]
	if prev, _ := second["prev"].(*types.AttributeValueMemberS); prev == nil || prev.Value != sk(first) {
		t.Fatalf("the second event's prev is %v; want %s", second["prev"], sk(first))
	}
	// The first event, as a late write on a slow clock would have left it:
	// committed, waiting, but numbered above the bound.
	_, token, _ := strings.Cut(sk(first), "|")
	late := "9" + sk(first)[1:19] + "|" + token
	moved := maps.Clone(first)
	moved["sk"] = &types.AttributeValueMemberS{Value: late}
	id := first["id"].(*types.AttributeValueMemberS).Value
	for _, in := range []*awsddb.TransactWriteItemsInput{{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: sys, Item: moved}},
		{Delete: &types.Delete{TableName: sys, Key: map[string]types.AttributeValue{"pk": first["pk"], "sk": first["sk"]}}},
		{Update: &types.Update{TableName: sys, Key: map[string]types.AttributeValue{"pk": second["pk"], "sk": second["sk"]},
			UpdateExpression: aws.String("SET prev = :l"), ExpressionAttributeValues: map[string]types.AttributeValue{":l": moved["sk"]}}},
		{Update: &types.Update{TableName: sys, Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "event"}, "sk": &types.AttributeValueMemberS{Value: id}},
			UpdateExpression: aws.String("SET o = :l"), ExpressionAttributeValues: map[string]types.AttributeValue{":l": moved["sk"]}}},
	}}} {
		if _, err := s.Client().TransactWriteItems(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	if es, err := s.PendingEvents(ctx, 10); err != nil || len(es) != 0 {
		t.Fatalf("while the first event waits: PendingEvents returned %d events, %v; want none", len(es), err)
	}
	if err := s.MarkEventsSent(ctx, []string{id}); err != nil {
		t.Fatal(err)
	}
	es, err := s.PendingEvents(ctx, 10)
	if err != nil || len(es) != 1 || es[0].EventID != second["id"].(*types.AttributeValueMemberS).Value {
		t.Fatalf("once the first event is published: %d events, %v; want the second", len(es), err)
	}
}

// TestStoreWrittenBeforeLanes: a store written by the version with one
// change counter (its counter item, and an event and an audit record
// waiting in the partitions without lanes) keeps working: the waiting
// event is published and the record chained, before newer ones.
func TestStoreWrittenBeforeLanes(t *testing.T) {
	ds := storetest.Domains(t)
	url := ddbtest.URL(t)
	old := openURL(t, url, ds)
	ctx := t.Context()
	s := func(v string) *types.AttributeValueMemberS { return &types.AttributeValueMemberS{Value: v} }
	rec, _ := json.Marshal(plinth.NormalizeAudit(plinth.AuditRecord{Environment: "development", Operation: "view", Decision: "allow", Status: 200}))
	sys := aws.String(old.Options().Prefix + "plinth")
	for _, it := range []map[string]types.AttributeValue{
		{"pk": s("seq"), "sk": s("seq"), "n": &types.AttributeValueMemberN{Value: "2"}},
		{"pk": s("outbox"), "sk": s("0000000000000000001|00000"), "id": s("old-event"), "domain": s("store-test"),
			"subject": s("plinth.development.store-test.categories.created"), "payload": &types.AttributeValueMemberB{Value: []byte("p{}")}},
		{"pk": s("event"), "sk": s("old-event"), "o": s("0000000000000000001|00000")},
		{"pk": s("auditlog"), "sk": s("0000000000000000002|00000"), "r": s(string(rec))},
	} {
		if _, err := old.Client().PutItem(ctx, &awsddb.PutItemInput{TableName: sys, Item: it}); err != nil {
			t.Fatal(err)
		}
	}
	st := openURL(t, url, ds)
	cats := entity(t, ds, "categories")
	if _, err := newWriter(t, st).Create(ctx, cats, category(t, cats, "new"), plinth.Origin{}); err != nil {
		t.Fatal(err)
	}
	if n, err := st.CountUnchainedAudit(ctx); err != nil || n != 2 {
		t.Errorf("CountUnchainedAudit: %d, %v; want 2", n, err)
	}
	es, err := st.PendingEvents(ctx, 10)
	if err != nil || len(es) != 2 || es[0].EventID != "old-event" || string(es[0].Payload) != "{}" {
		t.Fatalf("PendingEvents: %d, %v; want the old event, then the new", len(es), err)
	}
	if err := st.MarkEventsSent(ctx, eventIDs(es)); err != nil {
		t.Fatal(err)
	}
	if es, err := st.PendingEvents(ctx, 10); err != nil || len(es) != 0 {
		t.Errorf("after marking both sent: %d pending, %v", len(es), err)
	}
	if n, err := audit.ChainPending(ctx, st); err != nil || n != 2 {
		t.Fatalf("chained %d, %v; want 2", n, err)
	}
	var ops []string
	if err := st.ScanAudit(ctx, 0, func(r plinth.AuditRecord) error { ops = append(ops, r.Operation); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ops, []string{"view", "create"}) {
		t.Errorf("the chain holds %q; want the old record first", ops)
	}
	if rep, err := audit.Verify(ctx, st, nil); err != nil || rep.Broken != nil || rep.Records != 2 {
		t.Errorf("verify: %+v, %v", rep, err)
	}
}

// TestChainingABacklogWaitsOnce: the chainer takes 49 records a step;
// the bound it took for the first step still covers the backlog, so the
// steps after it do not wait the clock skew again (else a backlog would
// chain at no more than 49 records per skew).
func TestChainingABacklogWaitsOnce(t *testing.T) {
	s := open(t, storetest.Domains(t))
	ctx := t.Context()
	for i := 0; i < 200; i += 40 {
		recs := make([]plinth.AuditRecord, 40)
		for j := range recs {
			recs[j] = plinth.AuditRecord{Environment: "development", Operation: "view", Decision: "allow", Status: 200, Count: i + j}
		}
		if _, err := s.AppendAudit(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	before := dynamodb.Bounds(s)
	if n, err := audit.ChainPending(ctx, s); err != nil || n != 200 {
		t.Fatalf("chained %d, %v; want 200", n, err)
	}
	// One bound for the backlog, one for the last, short step.
	if n := dynamodb.Bounds(s) - before; n > 2 {
		t.Errorf("chaining 200 records in steps of 49 took %d bounds; want at most 2", n)
	}
}
