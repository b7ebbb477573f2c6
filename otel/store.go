package otel

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/plinth-data/plinth"
)

// Store traces the calls made through it to st: point reads, pages,
// counts, writes, scans and deletions, each a child of the request's span.
// Everything else passes through. Give it where requests reach the store
// (the API's configuration), not where the store's own type matters.
func (t *Tracing) Store(st plinth.Store) plinth.Store { return tracedStore{st, t} }

type tracedStore struct {
	plinth.Store
	t *Tracing
}

func (s tracedStore) call(ctx context.Context, op string, e *plinth.Entity) (context.Context, func(error)) {
	attrs := []attribute.KeyValue{attribute.String("db.operation.name", op)}
	if e != nil {
		attrs = append(attrs, attribute.String("plinth.entity", e.Plural))
	}
	return s.t.span(ctx, "store "+op, trace.SpanKindClient, nil, attrs...)
}

func (s tracedStore) Get(ctx context.Context, e *plinth.Entity, id any) (plinth.Record, error) {
	ctx, end := s.call(ctx, "get", e)
	r, err := s.Store.Get(ctx, e, id)
	end(err)
	return r, err
}

func (s tracedStore) List(ctx context.Context, e *plinth.Entity, q plinth.Query) (plinth.Page, error) {
	ctx, end := s.call(ctx, "list", e)
	p, err := s.Store.List(ctx, e, q)
	end(err)
	return p, err
}

func (s tracedStore) Count(ctx context.Context, e *plinth.Entity) (int64, error) {
	ctx, end := s.call(ctx, "count", e)
	n, err := s.Store.Count(ctx, e)
	end(err)
	return n, err
}

func (s tracedStore) Write(ctx context.Context, fn func(plinth.Tx) error) error {
	ctx, end := s.call(ctx, "write", nil)
	err := s.Store.Write(ctx, fn)
	end(err)
	return err
}

func (s tracedStore) Scan(ctx context.Context, e *plinth.Entity, q plinth.ScanQuery, fn func(plinth.Record) error) (plinth.Watermark, error) {
	ctx, end := s.call(ctx, "scan", e)
	w, err := s.Store.Scan(ctx, e, q, fn)
	end(err)
	return w, err
}

func (s tracedStore) Deletions(ctx context.Context, e *plinth.Entity, since plinth.Watermark, fn func(plinth.Tombstone) error) (plinth.Watermark, error) {
	ctx, end := s.call(ctx, "deletions", e)
	w, err := s.Store.Deletions(ctx, e, since, fn)
	end(err)
	return w, err
}
