package main

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/plinth-data/plinth/plinthtest"
)

// collector is an OTLP/HTTP trace receiver: it decodes what exporters
// send to /v1/traces.
type collector struct {
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "unexpected "+r.URL.Path+" "+r.Header.Get("Content-Type"), http.StatusBadRequest)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, _ := io.ReadAll(body)
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			c.spans = append(c.spans, ss.Spans...)
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (c *collector) find(name string, traceID []byte) *tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.spans {
		if s.Name == name && (traceID == nil || bytes.Equal(s.TraceId, traceID)) {
			return s
		}
	}
	return nil
}

// With otelEndpoint, a request's trace (continued from the caller's
// traceparent) holds the HTTP span and its store write as a child, and the
// relay's publish is traced too, linked to the request's span; all reach
// an OTLP/HTTP collector.
func TestServeSendsTraces(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	dir := t.TempDir()
	s := startServe(t, dir, "--demo-data=false", "--otel-endpoint", srv.URL)

	traceID, _ := hex.DecodeString("4bf92f3577b34da6a3ce929d0e0e4736")
	req, _ := http.NewRequest("POST", s.base+"/api/v1/residents", bytes.NewReader([]byte(`{"firstName":"Ada","lastName":"Lovelace"}`)))
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	req.Header.Set("x-correlation-id", "traced-create")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("create: %d", res.StatusCode)
	}

	var httpSpan, write, publish *tracepb.Span
	plinthtest.Eventually(t, 20*time.Second, func() bool {
		httpSpan, write, publish = col.find("HTTP POST", traceID), col.find("store write", traceID), col.find("relay publish", nil)
		return httpSpan != nil && write != nil && publish != nil
	}, "spans missing: http %v, write %v, publish %v", plinthtest.Last(&httpSpan), plinthtest.Last(&write), plinthtest.Last(&publish))
	parent, _ := hex.DecodeString("00f067aa0ba902b7")
	if !bytes.Equal(httpSpan.ParentSpanId, parent) || httpSpan.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("the HTTP span does not continue the caller's trace: parent %x kind %v", httpSpan.ParentSpanId, httpSpan.Kind)
	}
	if !bytes.Equal(write.ParentSpanId, httpSpan.SpanId) {
		t.Errorf("the store write is not a child of the request's span")
	}
	attrs := map[string]string{}
	for _, a := range httpSpan.Attributes {
		attrs[a.Key] = a.Value.GetStringValue()
	}
	if attrs["plinth.correlation_id"] != "traced-create" {
		t.Errorf("HTTP span attributes %v", attrs)
	}
	found := false
	for _, a := range publish.Attributes {
		for _, v := range a.Value.GetArrayValue().GetValues() {
			found = found || a.Key == "plinth.correlation_ids" && v.GetStringValue() == "traced-create"
		}
	}
	if !found {
		t.Errorf("the relay's publish span does not name the request's correlation id: %v", publish.Attributes)
	}
	// The publish is linked to the request that wrote its event (the
	// outbox kept the request's trace context): HTTP → store → relay.
	linked := false
	for _, l := range publish.Links {
		linked = linked || bytes.Equal(l.TraceId, traceID) && bytes.Equal(l.SpanId, httpSpan.SpanId)
	}
	if !linked {
		t.Errorf("the relay's publish span is not linked to the request's span: links %v", publish.Links)
	}
	s.stop(t)
}
