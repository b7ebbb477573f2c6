// Package otel traces Plinth with OpenTelemetry, off unless configured: a
// span per HTTP request (otelhttp, W3C trace context accepted from the
// caller), child spans for the store calls the request makes (Store), and
// a span per batch the outbox relay publishes (Publisher), exported over
// OTLP/HTTP to a collector. Spans carry no record data: entity names,
// counts and the correlation id only.
package otel

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	gootel "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/plinth-data/plinth"
)

const scope = "github.com/plinth-data/plinth"

// Tracing is a running trace pipeline.
type Tracing struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
}

// Start exports spans to the OTLP/HTTP endpoint ("http://collector:4318";
// http means no TLS) as service, sampling every trace unless the caller's
// context says otherwise. Shutdown flushes.
func Start(ctx context.Context, endpoint, service, version string) (*Tracing, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("otelEndpoint %q: use http://host:4318 or https://host:4318", endpoint)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(endpoint + "/v1/traces")}
	if u.Path != "" && u.Path != "/" {
		opts = []otlptracehttp.Option{otlptracehttp.WithEndpointURL(endpoint)}
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otel: %w", err)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service), semconv.ServiceVersion(version))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)), sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	gootel.SetTracerProvider(tp)
	gootel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return &Tracing{provider: tp, tracer: tp.Tracer(scope)}, nil
}

// Shutdown exports what is buffered and stops.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.provider.Shutdown(ctx) }

// Handler traces each request h serves; the span is named by method (the
// route is not known outside the router) and carries the status and the
// x-correlation-id answered.
func (t *Tracing) Handler(h http.Handler) http.Handler {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The request's span goes with the events it writes (the outbox
		// keeps it), so the relay's publish links back to it.
		carrier := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(r.Context(), carrier)
		if tp := carrier.Get("traceparent"); tp != "" {
			r = r.WithContext(plinth.WithTraceParent(r.Context(), tp))
		}
		h.ServeHTTP(correlated{w, r.Context()}, r)
	})
	return otelhttp.NewHandler(inner, "plinth", otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "HTTP " + r.Method }))
}

// correlated adds the correlation id the API answers with to the span.
type correlated struct {
	http.ResponseWriter
	ctx context.Context
}

func (c correlated) WriteHeader(status int) {
	if id := c.Header().Get("x-correlation-id"); id != "" {
		trace.SpanFromContext(c.ctx).SetAttributes(attribute.String("plinth.correlation_id", id))
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c correlated) Write(p []byte) (int, error) { return c.ResponseWriter.Write(p) }

func (c correlated) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// span starts a child span of ctx's, linked to links, ended by the
// returned function with err's status.
func (t *Tracing) span(ctx context.Context, name string, kind trace.SpanKind, links []trace.Link, attrs ...attribute.KeyValue) (context.Context, func(error)) {
	ctx, s := t.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...), trace.WithLinks(links...))
	return ctx, func(err error) {
		if err != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, err.Error())
		}
		s.End()
	}
}

// Publisher traces each batch p publishes.
func (t *Tracing) Publisher(p plinth.Publisher) plinth.Publisher { return tracedPublisher{p, t} }

type tracedPublisher struct {
	plinth.Publisher
	t *Tracing
}

func (p tracedPublisher) Publish(ctx context.Context, entries []plinth.OutboxEntry) error {
	domain := ""
	if len(entries) > 0 {
		domain = entries[0].Domain
	}
	ctx, end := p.t.span(ctx, "relay publish", trace.SpanKindProducer, requestLinks(entries),
		attribute.Int("messaging.batch.message_count", len(entries)), attribute.String("plinth.domain", domain),
		attribute.StringSlice("plinth.correlation_ids", correlationIDs(entries)))
	err := p.Publisher.Publish(ctx, entries)
	end(err)
	return err
}

// requestLinks link a publish to the traced requests that wrote its
// events (OutboxEntry.Trace), at most 100: the publish is a trace of its
// own, since it happens later and for many requests.
func requestLinks(entries []plinth.OutboxEntry) []trace.Link {
	var links []trace.Link
	for _, e := range entries {
		if e.Trace == "" {
			continue
		}
		ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": e.Trace})
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			if links = append(links, trace.Link{SpanContext: sc}); len(links) == 100 {
				break
			}
		}
	}
	return links
}

// correlationIDs are the batch's requests, at most 100: the publish is a
// trace of its own (it happens later, for many requests), found from a
// request's trace by its correlation id.
func correlationIDs(entries []plinth.OutboxEntry) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range entries {
		var ev struct {
			CorrelationID string `json:"correlationId"`
		}
		if json.Unmarshal(e.Payload, &ev) != nil || ev.CorrelationID == "" || seen[ev.CorrelationID] {
			continue
		}
		seen[ev.CorrelationID] = true
		if out = append(out, ev.CorrelationID); len(out) == 100 {
			break
		}
	}
	return out
}
