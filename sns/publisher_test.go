package sns_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/snstest"
	"github.com/plinth-data/plinth/sns"
)

// recorder sits between the publisher and the emulator and keeps the form
// of every Publish call, to see what would reach AWS.
type recorder struct {
	mu       sync.Mutex
	publish  []url.Values
	failNext int // answer this many Publish calls with a 500
}

func (r *recorder) proxy(t *testing.T, target string) string {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		form, _ := url.ParseQuery(string(body))
		if form.Get("Action") == "Publish" {
			r.mu.Lock()
			fail := r.failNext > 0
			if fail {
				r.failNext--
			} else {
				r.publish = append(r.publish, form)
			}
			r.mu.Unlock()
			if fail {
				w.Header().Set("Content-Type", "text/xml")
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprint(w, `<ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameter</Code><Message>injected</Message></Error><RequestId>x</RequestId></ErrorResponse>`)
				return
			}
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func entries(t *testing.T, e *plinth.Entity, n int) []plinth.OutboxEntry {
	var out []plinth.OutboxEntry
	for i := range n {
		id := int64(i%3 + 1) // three residents, several events each
		old := plinth.Record{Data: map[string]any{"mosaicId": id, "firstName": "Ada", "lastName": fmt.Sprint("L", i-3)}, Version: int64(i/3 + 0)}
		rec := plinth.Record{Data: map[string]any{"mosaicId": id, "firstName": "Ada", "lastName": fmt.Sprint("L", i)}, Version: int64(i/3 + 1)}
		kind, before := plinth.EventUpdated, &old
		if i < 3 {
			kind, before = plinth.EventCreated, nil
		}
		entry, _, ok := plinth.BuildEvent(e, kind, before, &rec, plinth.EventContext{Environment: "development", CorrelationID: fmt.Sprint("c-", i)})
		if !ok {
			t.Fatal("no event")
		}
		out = append(out, entry)
	}
	return out
}

// Events reach the domain's FIFO topic as the NATS envelope, grouped by
// entity id and deduplicated by event id; each entity's in order; the
// listener's SQS queue receives them.
func TestPublishToFIFOTopic(t *testing.T) {
	ds := plinthtest.Domains(t)
	topic := "plinth-development-residents.fifo"
	emu := snstest.Start(t, topic, "plinth-development-contacts.fifo")
	rec := &recorder{}
	endpoint := rec.proxy(t, emu.URL)
	ctx := context.Background()
	creds := credentials.NewStaticCredentialsProvider("test", "test", "")
	busURL := fmt.Sprintf("sns://%s/%s?endpoint=%s", snstest.Region, snstest.Account, url.QueryEscape(endpoint))
	pub, err := sns.Open(ctx, busURL, "development", ds, sns.Options{Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Check(ctx); err != nil {
		t.Fatalf("check: %v", err)
	}
	wantARN := "arn:aws:sns:eu-west-2:123456789012:" + topic
	if pub.TopicARN("residents") != wantARN {
		t.Fatalf("topic %s", pub.TopicARN("residents"))
	}

	batch := entries(t, plinthtest.Entity(t, ds, "residents"), 12)
	// The first attempt fails part-way; the relay publishes the whole
	// batch again.
	rec.failNext = 1
	if err := pub.Publish(ctx, batch); err == nil || !strings.Contains(err.Error(), wantARN) {
		t.Fatalf("injected failure: %v", err)
	}
	rec.mu.Lock()
	rec.publish = nil
	rec.mu.Unlock()
	if err := pub.Publish(ctx, batch); err != nil {
		t.Fatal(err)
	}

	byID := map[string]plinth.OutboxEntry{}
	for _, e := range batch {
		byID[e.EventID] = e
	}
	if len(rec.publish) != len(batch) {
		t.Fatalf("%d Publish calls for %d events", len(rec.publish), len(batch))
	}
	perGroup := map[string][]string{}
	for _, f := range rec.publish {
		e, ok := byID[f.Get("MessageDeduplicationId")]
		if !ok {
			t.Fatalf("deduplication id %q is no event id", f.Get("MessageDeduplicationId"))
		}
		var env struct{ EntityID string }
		json.Unmarshal(e.Payload, &env)
		if f.Get("MessageGroupId") != env.EntityID || f.Get("TopicArn") != wantARN || f.Get("Message") != string(e.Payload) {
			t.Fatalf("Publish %v for event %s of entity %s", f, e.EventID, env.EntityID)
		}
		perGroup[env.EntityID] = append(perGroup[env.EntityID], e.EventID)
	}
	for _, e := range batch {
		var env struct{ EntityID string }
		json.Unmarshal(e.Payload, &env)
		if perGroup[env.EntityID][0] != e.EventID {
			t.Fatalf("entity %s: events published out of order", env.EntityID)
		}
		perGroup[env.EntityID] = perGroup[env.EntityID][1:]
	}

	// What the listener's queue receives is the envelope, every event.
	// (goaws does not deduplicate, so the events the failed attempt got
	// through arrive twice there; SNS drops them by the deduplication id
	// checked above.)
	received := map[string]bool{}
	for _, m := range emu.Receive(t, snstest.Queue(topic)) {
		ev, err := plinth.DecodeEvent([]byte(m.Body))
		if err != nil || byID[ev.ID].EventID == "" || ev.SourceDomain != "residents" {
			t.Fatalf("message %.200s: %v", m.Body, err)
		}
		received[ev.ID] = true
	}
	if len(received) != len(batch) {
		t.Fatalf("the queue received %d of the %d events", len(received), len(batch))
	}
}

func TestMissingTopicAndBadURL(t *testing.T) {
	ds := plinthtest.Domains(t)
	emu := snstest.Start(t, "plinth-development-residents.fifo") // no contacts topic
	creds := credentials.NewStaticCredentialsProvider("test", "test", "")
	ctx := context.Background()
	pub, err := sns.Open(ctx, "sns://eu-west-2/123456789012?endpoint="+url.QueryEscape(emu.URL), "development", ds, sns.Options{Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Check(ctx); err == nil || !strings.Contains(err.Error(), "plinth-development-contacts.fifo does not exist") {
		t.Fatalf("check without the contacts topic: %v", err)
	}
	for _, bad := range []string{"sns://eu-west-2", "sns://eu-west-2/12345", "nats://eu-west-2/123456789012"} {
		if _, err := sns.Open(ctx, bad, "development", ds, sns.Options{Credentials: creds}); err == nil || !strings.Contains(err.Error(), "sns://REGION/ACCOUNT") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
