package plinth

import "context"

type traceKey struct{}

// WithTraceParent returns ctx carrying the W3C traceparent of the request
// being served (the tracing middleware sets it when tracing is on). The
// write path stores it with the request's events (OutboxEntry.Trace), so
// that the relay's publish can be linked to the request that wrote them.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	return context.WithValue(ctx, traceKey{}, traceparent)
}

// TraceParentFrom returns the traceparent WithTraceParent put in ctx, or "".
func TraceParentFrom(ctx context.Context) string {
	tp, _ := ctx.Value(traceKey{}).(string)
	return tp
}
